/**
 * SystemService and external workers over a real server: rows of `external_workers` and
 * `job_leases` written by SQL stand for workers (WorkerService's own tests run real ones),
 * listed by ListServices, controlled by Start/Stop/RestartService, and counted by the
 * `workers` check of GetSystemStatus.
 */
import { Code } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { HealthStatus, ServiceKind, ServiceState, type Service } from '../../gen/yardmaster/v1/system_pb.ts';
import { eventually, expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const method = (name: string) => `yardmaster.v1.SystemService.${name}`;

let server: TestServer;
let admin: YardmasterClient;

beforeAll(async () => {
  server = await startTestServer({ appOptions: { readinessIntervalMs: 200 } });
  admin = await server.adminClient();
});
afterAll(() => server?.close());

/** A worker row as WorkerService writes it, last seen `secondsAgo` ago. */
async function insertWorker(id: string, accountId: string, queues: string[], secondsAgo = 0): Promise<void> {
  await server.query(
    `insert into external_workers (id, account_id, queues, registered_at, last_seen_at)
     values ($1, $2, $3, now() - interval '2 hours', now() - make_interval(secs => $4))`,
    [id, accountId, JSON.stringify(queues), secondsAgo],
  );
}

/** An active lease of `workerId` on a new job of the declared type `queue`. */
async function insertLease(workerId: string, accountId: string, queue: string): Promise<string> {
  const { job } = await admin.jobs.createJob({ type: queue });
  await server.query(
    `insert into job_leases (id, job_id, attempt, worker_id, account_id, queue, queue_entry_id, lease_ms, claimed_at, expires_at, deadline_at)
     values (gen_random_uuid(), $1, 1, $2, $3, $4, gen_random_uuid(), 30000, now(), now() + interval '30 seconds', now() + interval '1 hour')`,
    [job!.id, workerId, accountId, queue],
  );
  return job!.id;
}

async function declareType(label: string): Promise<string> {
  const name = `${label}-${randomHex()}`;
  await admin.admin.createJobType({ jobType: { name, description: 'runs in an external worker' } });
  return name;
}

async function workerService(name: string): Promise<Service | undefined> {
  return (await admin.system.listServices({})).services.find((service) => service.name === name);
}

const workerRow = (id: string) =>
  server.query<{ stopped: boolean; restart_pending: boolean }>('select stopped, restart_pending from external_workers where id = $1', [id]);

describe('external workers in ListServices and under StartService, StopService and RestartService', () => {
  let queue: string;
  let account: { id: string; username: string };

  beforeAll(async () => {
    queue = await declareType('render');
    ({ user: account } = await server.createUser({ role: Role.WORKER }));
  });

  test('a live worker shows RUNNING with its account, queues, jobs held and last call; a quiet one UNHEALTHY; one gone for hours not at all', async () => {
    const live = `gpu-${randomHex()}`;
    const quiet = `quiet-${randomHex()}`;
    const gone = `gone-${randomHex()}`;
    await insertWorker(live, account.id, [queue, 'other']);
    await insertWorker(quiet, account.id, [queue], 300);
    await insertWorker(gone, account.id, [queue], 7200);
    await insertLease(live, account.id, queue);

    const { services } = await admin.system.listServices({});
    const service = services.find((candidate) => candidate.name === `worker/${live}`);
    expect(service).toMatchObject({
      kind: ServiceKind.EXTERNAL_WORKER,
      state: ServiceState.RUNNING,
      instanceId: '',
      accountId: account.id,
      accountUsername: account.username,
      queues: [queue, 'other'],
      jobsRunning: 1,
    });
    expect(Math.abs(timestampDate(service!.lastHeartbeatTime!).getTime() - Date.now())).toBeLessThan(5000);
    expect(services.find((candidate) => candidate.name === `worker/${quiet}`)).toMatchObject({
      state: ServiceState.UNHEALTHY,
      jobsRunning: 0,
    });
    expect(services.map((candidate) => candidate.name)).not.toContain(`worker/${gone}`);
    // Listed after the instances and pools, by name.
    const kinds = services.map((candidate) => candidate.kind);
    expect(kinds.indexOf(ServiceKind.EXTERNAL_WORKER)).toBeGreaterThan(kinds.lastIndexOf(ServiceKind.WORKER_POOL));
    const workerNames = services.filter((candidate) => candidate.kind === ServiceKind.EXTERNAL_WORKER).map((candidate) => candidate.name);
    expect(workerNames).toEqual([...workerNames].sort());
  });

  test('StopService marks the worker stopped: DRAINING while it holds a lease, STOPPED once it holds none; StartService lifts it; audited', async () => {
    const id = `drainer-${randomHex()}`;
    const name = `worker/${id}`;
    await insertWorker(id, account.id, [queue]);
    const jobId = await insertLease(id, account.id, queue);

    await admin.system.stopService({ name }, { headers: { 'x-request-id': `stop-${id}` } });
    expect(await workerRow(id)).toEqual([{ stopped: true, restart_pending: false }]);
    expect(await workerService(name)).toMatchObject({ state: ServiceState.DRAINING, jobsRunning: 1 });

    await server.query('update job_leases set ended_at = now() where job_id = $1', [jobId]);
    expect(await workerService(name)).toMatchObject({ state: ServiceState.STOPPED, jobsRunning: 0 });
    // A stopped worker that went quiet did as it was told: stopped, not unhealthy.
    await server.query(`update external_workers set last_seen_at = now() - interval '5 minutes' where id = $1`, [id]);
    expect((await workerService(name))?.state).toBe(ServiceState.STOPPED);

    await server.query('update external_workers set last_seen_at = now() where id = $1', [id]);
    await admin.system.startService({ name }, { headers: { 'x-request-id': `start-${id}` } });
    expect(await workerRow(id)).toEqual([{ stopped: false, restart_pending: false }]);
    expect((await workerService(name))?.state).toBe(ServiceState.RUNNING);

    expect(
      await server.query('select action, target, outcome from audit_events where request_id = any($1) order by created_at', [
        [`stop-${id}`, `start-${id}`],
      ]),
    ).toEqual([
      { action: method('StopService'), target: name, outcome: 'success' },
      { action: method('StartService'), target: name, outcome: 'success' },
    ]);
  });

  test('RestartService asks for a restart (once, through the next reply) and lifts a stop', async () => {
    const id = `restarter-${randomHex()}`;
    await insertWorker(id, account.id, [queue]);
    await server.query('update external_workers set stopped = true where id = $1', [id]);
    await admin.system.restartService({ name: `worker/${id}` });
    expect(await workerRow(id)).toEqual([{ stopped: false, restart_pending: true }]);
  });

  test('an unknown worker is NotFound and `worker/` alone InvalidArgument, for every action, and nothing is written', async () => {
    const snapshot = () => server.query('select id, stopped, restart_pending from external_workers order by id');
    const before = await snapshot();
    for (const call of [admin.system.startService, admin.system.stopService, admin.system.restartService]) {
      await expectConnectError(call({ name: 'worker/no-such-worker' }), Code.NotFound);
      const error = await expectConnectError(call({ name: 'worker/' }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['name']);
    }
    expect(await snapshot()).toEqual(before);
  });

  test('a user, or the worker account itself, gets PermissionDenied and changes nothing', async () => {
    const id = `guarded-${randomHex()}`;
    await insertWorker(id, account.id, [queue]);
    const { client: user } = await server.createUser();
    const { client: worker } = await server.createUser({ role: Role.WORKER });
    for (const client of [user, worker]) {
      await expectConnectError(client.system.stopService({ name: `worker/${id}` }), Code.PermissionDenied);
      await expectConnectError(client.system.restartService({ name: `worker/${id}` }), Code.PermissionDenied);
      await expectConnectError(client.system.listServices({}), Code.PermissionDenied);
    }
    expect(await workerRow(id)).toEqual([{ stopped: false, restart_pending: false }]);
  });

  test('housekeeping removes a worker not heard from for an hour', async () => {
    const id = `pruned-${randomHex()}`;
    await insertWorker(id, account.id, [queue], 50 * 60);
    await server.app.runMaintenance();
    expect(await server.countRows('select count(*) as n from external_workers where id = $1', [id])).toBe(1);
    await server.query(`update external_workers set last_seen_at = now() - interval '61 minutes' where id = $1`, [id]);
    await server.app.runMaintenance();
    expect(await server.countRows('select count(*) as n from external_workers where id = $1', [id])).toBe(0);
  });
});

describe('the workers check of GetSystemStatus', () => {
  const workersCheck = async () => {
    const status = await admin.system.getSystemStatus({});
    return { status: status.status, workers: status.dependencies.find((dependency) => dependency.name === 'workers') };
  };

  test('a queue with a ready job and no live worker is DEGRADED, named in the detail; a live worker for it makes it OK; /readyz stays 200', async () => {
    const { user: account } = await server.createUser({ role: Role.WORKER });
    const first = await declareType('transcode');
    const second = await declareType('unserved');
    await admin.jobs.createJob({ type: second });
    await admin.jobs.createJob({ type: first });
    const degraded = await eventually(async () => {
      const check = await workersCheck();
      expect(check.status).toBe(HealthStatus.DEGRADED);
      expect(check.workers).toMatchObject({
        status: HealthStatus.DEGRADED,
        detail: `no live worker for: ${[first, second].sort().join(', ')}`,
      });
      return check;
    }, 3000);
    expect(degraded.workers!.checkTime).toBeDefined();
    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(200);
    const ready = (await readyz.json()) as { dependencies: { name: string }[] };
    expect(ready.dependencies.map((dependency) => dependency.name)).not.toContain('workers');

    // A stopped worker, or one gone quiet, consumes nothing.
    await insertWorker(`stopped-${randomHex()}`, account.id, [first, second]);
    await server.query('update external_workers set stopped = true where queues ? $1', [first]);
    await insertWorker(`quiet-${randomHex()}`, account.id, [first, second], 300);
    await insertWorker(`live-${randomHex()}`, account.id, [first]);
    await eventually(async () => expect((await workersCheck()).workers?.detail).toBe(`no live worker for: ${second}`), 3000);

    // A paused queue needs no worker.
    await admin.queue.pauseQueue({ queue: second });
    await eventually(
      async () => expect(await workersCheck()).toMatchObject({ status: HealthStatus.OK, workers: { status: HealthStatus.OK, detail: '' } }),
      3000,
    );
  });
});
