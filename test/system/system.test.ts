/**
 * SystemService over real servers: instances registering on one database, worker pools
 * stopped and started on every instance at once, the status with a dependency down.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, type CallOptions } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { HealthStatus, InstanceRole, ServiceKind, ServiceState, type Service } from '../../gen/yardmaster/v1/system_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { packageVersion } from '../../src/system/build-info.ts';
import { release, releases, runsUntilReleasedJobType } from '../support/job-types.ts';
import { eventually, expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { inject } from 'vitest';

const heartbeatMs = 200;
const method = (name: string) => `yardmaster.v1.SystemService.${name}`;

function withRequestId(): { id: string; options: CallOptions } {
  const id = `system-${randomHex(8)}`;
  return { id, options: { headers: { 'x-request-id': id } } };
}

function poolsOf(services: Service[], queue: string): Service[] {
  return services.filter((service) => service.kind === ServiceKind.WORKER_POOL && service.queue === queue);
}

function instancesOf(services: Service[]): Service[] {
  return services.filter((service) => service.kind === ServiceKind.INSTANCE);
}

describe('instances and worker pools on one database', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let adminA: YardmasterClient;
  let adminB: YardmasterClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    a = await startTestServer({ database, appOptions: { instanceHeartbeatMs: heartbeatMs } });
    b = await startTestServer({ database, appOptions: { instanceHeartbeatMs: heartbeatMs } });
    adminA = await a.adminClient();
    adminB = await b.adminClient();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
  });

  test('GetSystemStatus names the answering instance, its version and uptime, the dependency checks and both live instances', async () => {
    const status = await adminA.system.getSystemStatus({});
    expect(status.status).toBe(HealthStatus.OK);
    expect(status.instanceId).toBe(a.app.instanceId);
    expect(status.version).toBe(packageVersion());
    expect(Number(status.uptime!.seconds) * 1000 + status.uptime!.nanos / 1e6).toBeGreaterThan(0);
    expect(status.dependencies.map((dependency) => [dependency.name, dependency.status, dependency.detail])).toEqual([
      ['database', HealthStatus.OK, ''],
      ['object storage', HealthStatus.OK, ''],
      ['queue', HealthStatus.OK, ''],
      ['workers', HealthStatus.OK, ''],
    ]);
    expect(status.dependencies.every((dependency) => dependency.latency !== undefined && dependency.checkTime !== undefined)).toBe(true);
    expect(status.instances.map((instance) => instance.id)).toEqual([a.app.instanceId, b.app.instanceId]);
    const [first] = status.instances;
    expect(first).toMatchObject({ role: InstanceRole.ALL, pid: process.pid, version: packageVersion(), lost: false });
    expect(first!.host).not.toBe('');
    expect(timestampDate(first!.startTime!).getTime()).toBeLessThanOrEqual(Date.now());
    expect((await adminB.system.getSystemStatus({})).instanceId).toBe(b.app.instanceId);
  });

  test('ListServices shows both instances running and one pool per queue on each, with concurrency and jobs done', async () => {
    const { job } = await adminA.jobs.createJob({ type: 'noop' });
    await eventually(async () => expect((await adminA.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.SUCCEEDED), 10_000);
    const services = await eventually(async () => {
      const { services } = await adminA.system.listServices({});
      expect(poolsOf(services, 'noop').reduce((sum, pool) => sum + Number(pool.jobsDone), 0)).toBe(1);
      return services;
    }, 3000);
    expect(instancesOf(services).map((service) => [service.name, service.state])).toEqual([
      [`instance/${a.app.instanceId}`, ServiceState.RUNNING],
      [`instance/${b.app.instanceId}`, ServiceState.RUNNING],
    ]);
    const noopPools = poolsOf(services, 'noop');
    expect(noopPools.map((pool) => [pool.name, pool.instanceId, pool.state, pool.jobsRunning])).toEqual(
      [a.app.instanceId, b.app.instanceId].sort().map((id) => ['pool/noop', id, ServiceState.RUNNING, 0]),
    );
    expect(noopPools.every((pool) => pool.concurrency > 0 && pool.lastHeartbeatTime !== undefined)).toBe(true);
    expect(poolsOf(services, 'sleep')).toHaveLength(2);
  });

  test('StopService stops the shared pool on both instances (a job queued meanwhile stays queued, a later instance honours it); StartService resumes both; audited', async () => {
    const stop = withRequestId();
    await adminA.system.stopService({ name: 'pool/noop' }, stop.options);
    await eventually(async () => {
      const { services } = await adminB.system.listServices({});
      expect(poolsOf(services, 'noop').map((pool) => pool.state)).toEqual([ServiceState.STOPPED, ServiceState.STOPPED]);
    }, 3000);
    const { job } = await adminB.jobs.createJob({ type: 'noop' });
    await sleep(1500);
    expect((await adminA.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.QUEUED);
    expect(await a.query('select queue, stopped, updated_by from pool_controls')).toEqual([
      { queue: 'noop', stopped: true, updated_by: 'admin' },
    ]);

    const later = await startTestServer({ database, appOptions: { instanceHeartbeatMs: heartbeatMs } });
    try {
      const { services } = await adminA.system.listServices({});
      const laterPool = poolsOf(services, 'noop').find((pool) => pool.instanceId === later.app.instanceId);
      expect(laterPool?.state).toBe(ServiceState.STOPPED);
      await sleep(500);
      expect((await adminA.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.QUEUED);
    } finally {
      await later.close();
    }

    const start = withRequestId();
    await adminB.system.startService({ name: 'pool/noop' }, start.options);
    await eventually(async () => expect((await adminA.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.SUCCEEDED), 10_000);
    await eventually(async () => {
      const { services } = await adminA.system.listServices({});
      expect(poolsOf(services, 'noop').map((pool) => pool.state)).toEqual([ServiceState.RUNNING, ServiceState.RUNNING]);
    }, 3000);

    const audit = await a.query(
      'select action, target, outcome, actor_username from audit_events where request_id = any($1) order by created_at',
      [[stop.id, start.id]],
    );
    expect(audit).toEqual([
      { action: method('StopService'), target: 'pool/noop', outcome: 'success', actor_username: 'admin' },
      { action: method('StartService'), target: 'pool/noop', outcome: 'success', actor_username: 'admin' },
    ]);
  });

  test('RestartService restarts the pool on both instances, which keep running jobs', async () => {
    await adminA.system.restartService({ name: 'pool/noop' });
    expect(await a.query('select stopped, restarts from pool_controls where queue = $1', ['noop'])).toEqual([
      { stopped: false, restarts: 1 },
    ]);
    const { job } = await adminB.jobs.createJob({ type: 'noop' });
    await eventually(async () => expect((await adminA.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.SUCCEEDED), 10_000);
    const { services } = await adminA.system.listServices({});
    expect(poolsOf(services, 'noop').map((pool) => pool.state)).toEqual([ServiceState.RUNNING, ServiceState.RUNNING]);
  });

  test('names that are neither a pool nor a worker are InvalidArgument, an unknown queue NotFound, and nothing is written', async () => {
    for (const name of ['', `instance/${b.app.instanceId}`, 'noop']) {
      const error = await expectConnectError(adminA.system.stopService({ name }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['name']);
    }
    await expectConnectError(adminA.system.startService({ name: 'pool/no-such-queue' }), Code.NotFound);
    expect(await a.countRows('select count(*) as n from pool_controls where queue <> $1', ['noop'])).toBe(0);
  });

  test('a user gets PermissionDenied for every SystemService call, changes nothing, and the attempts to control are audited', async () => {
    const { user, client } = await a.createUser();
    await expectConnectError(client.system.getSystemStatus({}), Code.PermissionDenied);
    await expectConnectError(client.system.listServices({}), Code.PermissionDenied);
    const stop = withRequestId();
    await expectConnectError(client.system.stopService({ name: 'pool/sleep' }, stop.options), Code.PermissionDenied);
    await expectConnectError(client.system.startService({ name: 'pool/sleep' }), Code.PermissionDenied);
    await expectConnectError(client.system.restartService({ name: 'pool/sleep' }), Code.PermissionDenied);
    expect(await a.countRows('select count(*) as n from pool_controls where queue = $1', ['sleep'])).toBe(0);
    expect(
      await a.query('select actor_id, action, target, outcome, error_code from audit_events where request_id = $1', [stop.id]),
    ).toEqual([
      { actor_id: user.id, action: method('StopService'), target: 'pool/sleep', outcome: 'failure', error_code: 'permission_denied' },
    ]);
  });

  test('an instance that stops heartbeating shows as lost (unhealthy, not live) and housekeeping removes it an hour later', async () => {
    const ghost = '01900000-0000-7000-8000-00000000beef';
    await a.query(
      `insert into server_instances (id, role, host, pid, version, commit, started_at, heartbeat_at, pools)
       values ($1, 'worker', 'gone', 1, '0.0.1', '', now() - interval '2 minutes', now() - interval '1 minute', $2)`,
      [ghost, JSON.stringify([{ queue: 'noop', state: 'running', concurrency: 1, jobsRunning: 1, jobsDone: 0 }])],
    );
    const { services } = await adminA.system.listServices({});
    expect(services.find((service) => service.instanceId === ghost && service.kind === ServiceKind.INSTANCE)?.state).toBe(
      ServiceState.UNHEALTHY,
    );
    expect(poolsOf(services, 'noop').map((pool) => pool.instanceId)).not.toContain(ghost);
    expect((await adminA.system.getSystemStatus({})).instances.map((instance) => instance.id)).not.toContain(ghost);

    await a.app.runMaintenance();
    expect(await a.countRows('select count(*) as n from server_instances where id = $1', [ghost])).toBe(1);
    await a.query(`update server_instances set heartbeat_at = now() - interval '61 minutes' where id = $1`, [ghost]);
    await a.app.runMaintenance();
    expect(await a.countRows('select count(*) as n from server_instances where id = $1', [ghost])).toBe(0);
  });

  test('an instance that stops cleanly deregisters: it is listed no more', async () => {
    const third = await startTestServer({ database, appOptions: { instanceHeartbeatMs: heartbeatMs } });
    const id = third.app.instanceId;
    expect((await adminA.system.getSystemStatus({})).instances.map((instance) => instance.id)).toContain(id);
    await third.close();
    expect((await adminA.system.getSystemStatus({})).instances.map((instance) => instance.id)).not.toContain(id);
    expect((await adminA.system.listServices({})).services.filter((service) => service.instanceId === id)).toEqual([]);
    expect(await a.countRows('select count(*) as n from server_instances where id = $1', [id])).toBe(0);
  });
});

describe('a pool stopped while it runs a job', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ jobTypes: [runsUntilReleasedJobType], appOptions: { instanceHeartbeatMs: heartbeatMs } });
  });
  afterAll(() => server?.close());

  test('drains: the running job finishes (SUCCEEDED, not interrupted), then the pool shows STOPPED with the job counted', async () => {
    const admin = await server.adminClient();
    const name = 'pool/runs-until-released';
    const key = `drain-${randomHex()}`;
    const { job } = await admin.jobs.createJob({ type: 'runs-until-released', params: { key } });
    await eventually(async () => expect(releases.get(key)?.started).toBe(true), 10_000);
    await admin.system.stopService({ name });
    const draining = await eventually(async () => {
      const [pool] = poolsOf((await admin.system.listServices({})).services, 'runs-until-released');
      expect(pool?.state).toBe(ServiceState.DRAINING);
      return pool!;
    }, 3000);
    expect(draining.jobsRunning).toBe(1);
    expect((await admin.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.RUNNING);
    release(key);
    await eventually(async () => expect((await admin.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.SUCCEEDED), 10_000);
    await eventually(async () => {
      const [pool] = poolsOf((await admin.system.listServices({})).services, 'runs-until-released');
      expect([pool?.state, pool?.jobsRunning, pool?.jobsDone]).toEqual([ServiceState.STOPPED, 0, 1n]);
    }, 3000);
    expect((await admin.jobs.getJob({ id: job!.id })).job!.attempt).toBe(1);
  });

  test('after the drain time, a job still running goes back to its queue without counting the attempt, and runs again after StartService', async () => {
    const admin = await server.adminClient();
    await server.setSetting('jobs.pool_drain_time', '1s');
    const { job } = await admin.jobs.createJob({ type: 'sleep', params: { seconds: 30 } });
    const getJob = async () => (await admin.jobs.getJob({ id: job!.id })).job!;
    await eventually(async () => expect([(await getJob()).status, (await getJob()).attempt]).toEqual([JobStatus.RUNNING, 1]), 10_000);

    const stoppedAt = Date.now();
    await admin.system.stopService({ name: 'pool/sleep' });
    await eventually(async () => expect((await getJob()).status).toBe(JobStatus.QUEUED), 5000, 50);
    const handedBackAfterMs = Date.now() - stoppedAt;
    expect(handedBackAfterMs).toBeGreaterThanOrEqual(900);
    expect(handedBackAfterMs).toBeLessThan(5000);
    const requeued = await getJob();
    expect([requeued.attempt, requeued.error, requeued.finishTime, requeued.abandoned]).toEqual([0, undefined, undefined, false]);
    await eventually(async () => {
      const [pool] = poolsOf((await admin.system.listServices({})).services, 'sleep');
      expect([pool?.state, pool?.jobsRunning]).toEqual([ServiceState.STOPPED, 0]);
    }, 3000);
    // The pool stays stopped: the job waits in its queue.
    await sleep(1500);
    expect((await getJob()).status).toBe(JobStatus.QUEUED);

    await admin.system.startService({ name: 'pool/sleep' });
    await eventually(async () => expect([(await getJob()).status, (await getJob()).attempt]).toEqual([JobStatus.RUNNING, 1]), 10_000);
    await admin.jobs.cancelJob({ id: job!.id });
  });

  test('a start before the drain time is over cancels the hand-back: the running job keeps its attempt', async () => {
    const admin = await server.adminClient();
    await server.setSetting('jobs.pool_drain_time', '2s');
    const key = `kept-${randomHex()}`;
    // Stopped by the test above.
    await admin.system.startService({ name: 'pool/runs-until-released' });
    const { job } = await admin.jobs.createJob({ type: 'runs-until-released', params: { key } });
    await eventually(async () => expect(releases.get(key)?.started).toBe(true), 10_000);
    const { startTime } = (await admin.jobs.getJob({ id: job!.id })).job!;
    await admin.system.stopService({ name: 'pool/runs-until-released' });
    await sleep(500);
    await admin.system.startService({ name: 'pool/runs-until-released' });
    await sleep(2500);
    // The same attempt still runs: a hand-back would have queued the job again and run it anew (a later start time).
    const kept = (await admin.jobs.getJob({ id: job!.id })).job!;
    expect([kept.status, kept.attempt, kept.startTime]).toEqual([JobStatus.RUNNING, 1, startTime]);
    release(key);
    await eventually(async () => expect((await admin.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.SUCCEEDED), 10_000);
  });
});

describe('object storage going down', () => {
  let server: TestServer;
  let proxy: net.Server;
  const sockets = new Set<net.Socket>();
  let storageUp = true;

  beforeAll(async () => {
    const target = new URL(inject('s3Endpoint'));
    proxy = net.createServer((client) => {
      if (!storageUp) {
        client.destroy();
        return;
      }
      const upstream = net.connect(Number(target.port), target.hostname);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const forget = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on('error', forget).on('close', forget);
      upstream.on('error', forget).on('close', forget);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { port } = proxy.address() as net.AddressInfo;
    server = await startTestServer({ storageEndpoint: `http://127.0.0.1:${port}`, appOptions: { readinessIntervalMs: 200 } });
  });
  afterAll(async () => {
    await server?.close();
    proxy?.close();
  });

  test('GetSystemStatus reports object storage DOWN within a second, from the shared checks, and agrees with /readyz', async () => {
    const admin = await server.adminClient();
    expect((await admin.system.getSystemStatus({})).status).toBe(HealthStatus.OK);
    const checksBefore = server.app.readiness.checksRun;
    storageUp = false;
    for (const socket of sockets) socket.destroy();
    const downAt = Date.now();
    const status = await eventually(async () => {
      const reply = await admin.system.getSystemStatus({});
      expect(reply.status).toBe(HealthStatus.DOWN);
      return reply;
    }, 1000);
    expect(Date.now() - downAt).toBeLessThan(1000);
    const storage = status.dependencies.find((dependency) => dependency.name === 'object storage');
    expect(storage).toMatchObject({ status: HealthStatus.DOWN, detail: 'unreachable' });
    expect(status.dependencies.find((dependency) => dependency.name === 'database')?.status).toBe(HealthStatus.OK);
    // Readers share the scheduled checks: dozens of calls did not run dozens of checks.
    const started = Date.now();
    await Promise.all(Array.from({ length: 30 }, () => admin.system.getSystemStatus({})));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(server.app.readiness.checksRun - checksBefore).toBeLessThanOrEqual(Math.ceil((Date.now() - downAt) / 200) + 2);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
    storageUp = true;
    await eventually(async () => expect((await admin.system.getSystemStatus({})).status).toBe(HealthStatus.OK), 2000);
  });
});

describe('pool changes with the production heartbeat interval (10 s)', () => {
  let server: TestServer;
  let admin: YardmasterClient;

  beforeAll(async () => {
    server = await startTestServer();
    admin = await server.adminClient();
  });
  afterAll(() => server?.close());

  test('a stopped or started pool shows so in ListServices at once, not at the next periodic heartbeat', async () => {
    await admin.system.stopService({ name: 'pool/sleep' });
    await eventually(async () => {
      const { services } = await admin.system.listServices({});
      expect(poolsOf(services, 'sleep').map((pool) => pool.state)).toEqual([ServiceState.STOPPED]);
    }, 2000);
    await admin.system.startService({ name: 'pool/sleep' });
    await eventually(async () => {
      const { services } = await admin.system.listServices({});
      expect(poolsOf(services, 'sleep').map((pool) => pool.state)).toEqual([ServiceState.RUNNING]);
    }, 2000);
  });
});
