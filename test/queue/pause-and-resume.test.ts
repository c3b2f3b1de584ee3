/**
 * QueueService PauseQueue and ResumeQueue: persisted, honoured by the runner, surviving a restart, audited.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, test } from 'vitest';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { release, serialJobType, runsUntilReleasedJobType } from '../support/job-types.ts';
import { eventually, expectConnectError } from '../support/assertions.ts';
import { startTestServer } from '../support/test-server.ts';
import {
  method,
  database,
  server,
  admin,
  withRequestId,
  auditRows,
  queueOf,
  createSleep,
  createNoop,
  createRunsUntilReleased,
  waitStarted,
  jobStatuses,
  waitStatus,
  pgBossStates,
  queueStateRows,
  useQueueServer,
} from './support.ts';

useQueueServer();

// ---------------------------------------------------------------------------------------

describe('PauseQueue and ResumeQueue', () => {
  test('admins only: a user gets PermissionDenied for Pause, Resume and Clear, nothing changes, and the attempts are audited', async () => {
    const { user, client } = await server.createUser();
    const pause = withRequestId();
    await expectConnectError(client.queue.pauseQueue({ queue: 'sleep' }, pause.options), Code.PermissionDenied);
    await expectConnectError(client.queue.pauseQueue({ queue: '' }), Code.PermissionDenied);
    await expectConnectError(client.queue.resumeQueue({ queue: 'sleep' }), Code.PermissionDenied);
    await expectConnectError(client.queue.clearQueue({ queue: 'sleep', confirm: 'sleep' }), Code.PermissionDenied);
    await expectConnectError(client.queue.clearQueue({ queue: 'sleep', confirm: 'sleep', dryRun: true }), Code.PermissionDenied);
    expect(Object.values(await queueStateRows()).filter((row) => row.paused)).toEqual([]);
    expect((await client.queue.getQueueStatus({})).pausedQueues).toEqual([]);
    expect(await auditRows(pause.id)).toEqual([
      {
        actor_id: user.id,
        actor_username: user.username,
        action: method('PauseQueue'),
        target: 'sleep',
        outcome: 'failure',
        error_code: 'permission_denied',
      },
    ]);
  });

  test('while `sleep` is paused its new jobs stay queued (pg-boss entry `created`) and noop jobs still run; ResumeQueue runs them; both are persisted and audited', async () => {
    const { client } = await server.createUser();
    const pause = withRequestId();
    const paused = await admin.queue.pauseQueue({ queue: 'sleep' }, pause.options);
    expect(paused.pausedGlobally).toBe(false);
    expect(paused.queues.map((queue) => `${queue.name}:${queue.paused}`)).toEqual([
      'archive:false',
      'checksum:false',
      'noop:false',
      'runs-until-released:false',
      'serial:false',
      'sleep:true',
    ]);
    expect((await queueStateRows()).sleep).toEqual({ paused: true, updated_by: 'admin' });
    const [state] = await server.query<{ updated_at: Date }>(`select updated_at from queue_states where name = 'sleep'`);
    expect(Date.now() - state!.updated_at.getTime()).toBeLessThan(10_000);

    const sleepers = [await createSleep(client, 0), await createSleep(client, 0)];
    const noops = [await createNoop(client), await createNoop(client)];
    await waitStatus(
      noops.map((job) => job.id),
      'succeeded',
      5000,
    );
    await sleep(1500);
    for (const job of sleepers) {
      const { job: current } = await client.jobs.getJob({ id: job.id });
      expect(current?.status).toBe(JobStatus.QUEUED);
      expect(current?.attempt).toBe(0);
      expect(current?.startTime).toBeUndefined();
    }
    expect(await jobStatuses(sleepers.map((job) => job.id))).toEqual(Object.fromEntries(sleepers.map((job) => [job.id, 'queued'])));
    expect(await pgBossStates(sleepers.map((job) => job.id))).toEqual(['created', 'created']);

    const resume = withRequestId();
    const resumed = await admin.queue.resumeQueue({ queue: 'sleep' }, resume.options);
    expect(resumed.pausedGlobally).toBe(false);
    expect(resumed.queues.every((queue) => !queue.paused)).toBe(true);
    expect((await queueStateRows()).sleep).toEqual({ paused: false, updated_by: 'admin' });
    await waitStatus(
      sleepers.map((job) => job.id),
      'succeeded',
      8000,
    );
    expect(await pgBossStates(sleepers.map((job) => job.id))).toEqual(['completed', 'completed']);

    const [adminRow] = await server.query<{ id: string }>(`select id from users where username = 'admin'`);
    expect(await auditRows(pause.id)).toEqual([
      {
        actor_id: adminRow!.id,
        actor_username: 'admin',
        action: method('PauseQueue'),
        target: 'sleep',
        outcome: 'success',
        error_code: null,
      },
    ]);
    expect(await auditRows(resume.id)).toEqual([
      {
        actor_id: adminRow!.id,
        actor_username: 'admin',
        action: method('ResumeQueue'),
        target: 'sleep',
        outcome: 'success',
        error_code: null,
      },
    ]);
  });

  test('an empty queue name pauses every queue; a per-queue resume does not lift it; ResumeQueue with an empty name lifts it and every per-queue pause', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const pauseAll = withRequestId();
    const paused = await admin.queue.pauseQueue({ queue: '' }, pauseAll.options);
    expect(paused.pausedGlobally).toBe(true);
    expect(paused.queues.every((queue) => queue.paused)).toBe(true);
    const states = await queueStateRows();
    expect(states['*']).toEqual({ paused: true, updated_by: 'admin' });
    expect(states.sleep?.paused).toBe(true);

    const noop = await createNoop(client);
    const sleeper = await createSleep(client, 0);
    // Resuming one queue leaves the global pause in force.
    const one = await admin.queue.resumeQueue({ queue: 'noop' });
    expect(one.pausedGlobally).toBe(true);
    expect(queueOf(one.queues, 'noop').paused).toBe(true);
    await sleep(1500);
    expect(await jobStatuses([noop.id, sleeper.id])).toEqual({ [noop.id]: 'queued', [sleeper.id]: 'queued' });
    expect(await pgBossStates([noop.id])).toEqual(['created']);

    const resumeAll = withRequestId();
    const resumed = await admin.queue.resumeQueue({ queue: '' }, resumeAll.options);
    expect(resumed.pausedGlobally).toBe(false);
    expect(resumed.queues.every((queue) => !queue.paused)).toBe(true);
    expect(Object.values(await queueStateRows()).every((row) => !row.paused)).toBe(true);
    const status = await client.queue.getQueueStatus({});
    expect(status.pausedGlobally).toBe(false);
    expect(status.pausedQueues).toEqual([]);
    await waitStatus([noop.id, sleeper.id], 'succeeded', 8000);

    const [pauseAudit] = await auditRows(pauseAll.id);
    expect(pauseAudit).toMatchObject({ action: method('PauseQueue'), outcome: 'success', actor_username: 'admin' });
    expect(pauseAudit!.target ?? '').toBe('');
    const [resumeAudit] = await auditRows(resumeAll.id);
    expect(resumeAudit).toMatchObject({ action: method('ResumeQueue'), outcome: 'success', actor_username: 'admin' });
    expect(resumeAudit!.target ?? '').toBe('');
  });

  test('an unknown queue is NotFound for Pause and Resume, and nothing is written', async () => {
    const before = await queueStateRows();
    const pause = withRequestId();
    await expectConnectError(admin.queue.pauseQueue({ queue: 'no-such-queue' }, pause.options), Code.NotFound);
    await expectConnectError(admin.queue.resumeQueue({ queue: 'no-such-queue' }), Code.NotFound);
    expect(await queueStateRows()).toEqual(before);
    expect(await auditRows(pause.id)).toMatchObject([
      { action: method('PauseQueue'), target: 'no-such-queue', outcome: 'failure', error_code: 'not_found' },
    ]);
  });

  test('jobs already running finish when their queue is paused', async () => {
    const { client } = await server.createUser();
    const sleeper = await createSleep(client, 1.5);
    const { job: scripted, key } = await createRunsUntilReleased(client);
    await waitStatus([sleeper.id], 'running', 5000);
    await waitStarted(key);
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await admin.queue.pauseQueue({ queue: 'runs-until-released' });
    release(key);
    await waitStatus([sleeper.id, scripted.id], 'succeeded', 6000);
    const { job } = await client.jobs.getJob({ id: sleeper.id });
    expect(job?.result).toEqual({ sleptSeconds: 1.5 });
    expect(job?.attempt).toBe(1);
    expect(timestampDate(job!.finishTime!).getTime() - timestampDate(job!.startTime!).getTime()).toBeGreaterThanOrEqual(1400);
    // And the queue stays paused for the next ones.
    const next = await createSleep(client, 0);
    await sleep(1000);
    expect((await jobStatuses([next.id]))[next.id]).toBe('queued');
  });

  test('a resume takes effect at once, even while a job of the paused queue is still running', async () => {
    const { client } = await server.createUser();
    const long = await createSleep(client, 4);
    await waitStatus([long.id], 'running', 5000);
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const next = await createSleep(client, 0);
    await sleep(300);
    expect((await jobStatuses([next.id]))[next.id]).toBe('queued');
    const resumedAt = Date.now();
    await admin.queue.resumeQueue({ queue: 'sleep' });
    // The new job runs right away; it does not wait for the long one to end.
    await waitStatus([next.id], 'succeeded', 8000);
    const waited = Date.now() - resumedAt;
    const statuses = await jobStatuses([long.id]);
    expect(waited, `the queued job ran ${waited} ms after the resume; the long job was ${statuses[long.id]} by then`).toBeLessThan(2000);
    expect(statuses[long.id]).toBe('running');
    await waitStatus([long.id], 'succeeded', 8000);
  });

  test('a queue paused while another paused queue still has a job running stays quiet: its jobs are not fetched and put back over and over', async () => {
    const { client } = await server.createUser();
    const long = await createSleep(client, 3);
    await waitStatus([long.id], 'running', 5000);
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await admin.queue.pauseQueue({ queue: 'noop' });
    const job = await createNoop(client);
    await sleep(1500);
    const [row] = await server.query<{ status: string; queue_job_id: string; version: number }>(
      'select status, queue_job_id, version from jobs where id = $1',
      [job.id],
    );
    expect(row!.status).toBe('queued');
    // One queue entry, untouched, the one the job was created with.
    const entries = await server.query<{ id: string; state: string }>(
      `select id, state from pgboss.job where name = 'noop' and data->>'jobId' = $1`,
      [job.id],
    );
    expect(entries.length, `pg-boss entries of the paused noop job after 1.5 s`).toBe(1);
    expect(entries[0]).toEqual({ id: row!.queue_job_id, state: 'created' });
    await waitStatus([long.id], 'succeeded', 8000);
  });

  test('the pause is persisted in queue_states and survives a restart: a second instance on the same database reports it and runs none of its jobs', async () => {
    const { user, password, client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const second = await startTestServer({ database, jobTypes: [runsUntilReleasedJobType, serialJobType] });
    try {
      const remote = await second.signIn(user.username, password);
      const status = await remote.queue.getQueueStatus({});
      expect(status.pausedQueues).toEqual(['sleep']);
      expect(status.pausedGlobally).toBe(false);
      expect(queueOf((await remote.queue.listQueues({})).queues, 'sleep').paused).toBe(true);

      // Neither instance starts the job.
      const job = (await remote.jobs.createJob({ type: 'sleep', params: { seconds: 0 } })).job!;
      const noop = (await remote.jobs.createJob({ type: 'noop', params: {} })).job!;
      await waitStatus([noop.id], 'succeeded', 5000);
      await sleep(1500);
      expect((await jobStatuses([job.id]))[job.id]).toBe('queued');

      // A resume on the second instance reaches the first.
      const remoteAdmin = await second.adminClient();
      await remoteAdmin.queue.resumeQueue({ queue: 'sleep' });
      await eventually(async () => expect((await client.queue.getQueueStatus({})).pausedQueues).toEqual([]), 3000, 50);
      await waitStatus([job.id], 'succeeded', 8000);
      // A global pause made on the first reaches the second too.
      await admin.queue.pauseQueue({ queue: '' });
      await eventually(async () => expect((await remote.queue.getQueueStatus({})).pausedGlobally).toBe(true), 3000, 50);
    } finally {
      await second.close();
    }
    await admin.queue.resumeQueue({ queue: '' });
    expect(Object.values(await queueStateRows()).every((row) => !row.paused)).toBe(true);
  });
});
