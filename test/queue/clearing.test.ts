/**
 * QueueService ClearQueue, of one queue and of every queue.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  method,
  server,
  admin,
  withRequestId,
  auditRows,
  createSleep,
  createNoop,
  jobStatuses,
  waitStatus,
  pgBossStates,
  useQueueServer,
} from './support.ts';

useQueueServer();

// ---------------------------------------------------------------------------------------

describe('ClearQueue', () => {
  test('confirm must equal the queue name, or `all` for every queue (InvalidArgument on `confirm`); unknown queue NotFound; users PermissionDenied', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const job = await createSleep(client, 0);
    for (const confirm of ['', 'noop', 'Sleep', 'sleep ']) {
      const error = await expectConnectError(admin.queue.clearQueue({ queue: 'sleep', confirm }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['confirm']);
    }
    await expectConnectError(admin.queue.clearQueue({ queue: 'no-such-queue', confirm: 'no-such-queue' }), Code.NotFound);
    for (const confirm of ['', 'sleep', 'ALL', '*']) {
      const error = await expectConnectError(admin.queue.clearQueue({ queue: '', confirm }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['confirm']);
    }
    await expectConnectError(client.queue.clearQueue({ queue: 'sleep', confirm: 'sleep' }), Code.PermissionDenied);
    expect((await jobStatuses([job.id]))[job.id]).toBe('queued');
  });

  test('dry_run counts the queued jobs and changes nothing', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const jobs = [await createSleep(alice.client, 0), await createSleep(alice.client, 0), await createSleep(bob.client, 0)];
    const ids = jobs.map((job) => job.id);
    await server.app.sequencer.flush();
    const versionsBefore = await server.query<{ id: string; version: number; status: string }>(
      'select id, version, status from jobs where id = any($1::uuid[]) order by id',
      [ids],
    );
    const eventsBefore = await server.countRows('select count(*) as n from events where subject_id = any($1::uuid[])', [ids]);

    const dry = withRequestId();
    const { count } = await admin.queue.clearQueue({ queue: 'sleep', confirm: 'sleep', dryRun: true }, dry.options);
    expect(count).toBe(3n);
    expect((await admin.queue.clearQueue({ queue: 'noop', confirm: 'noop', dryRun: true })).count).toBe(0n);
    await server.app.sequencer.flush();
    expect(await server.query('select id, version, status from jobs where id = any($1::uuid[]) order by id', [ids])).toEqual(
      versionsBefore,
    );
    expect(await server.countRows('select count(*) as n from events where subject_id = any($1::uuid[])', [ids])).toBe(eventsBefore);
    expect(await pgBossStates(ids)).toEqual(['created', 'created', 'created']);
    expect(await auditRows(dry.id)).toMatchObject([{ action: method('ClearQueue'), target: 'sleep', outcome: 'success' }]);
  });

  test('a real clear cancels every queued job of that queue (and no other), returns the count, and is audited', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    // One sleep job running before the pause: it is not queued, so not cleared.
    const runningJob = await createSleep(alice.client, 1.5);
    await waitStatus([runningJob.id], 'running', 5000);
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await admin.queue.pauseQueue({ queue: 'noop' });
    const queued = [
      await createSleep(alice.client, 0),
      await createSleep(alice.client, 0, { priority: 9 }),
      await createSleep(bob.client, 0),
      await createSleep(bob.client, 0),
    ];
    const noops = [await createNoop(alice.client), await createNoop(bob.client)];
    const ids = queued.map((job) => job.id);

    const clear = withRequestId();
    const { count } = await admin.queue.clearQueue({ queue: 'sleep', confirm: 'sleep' }, clear.options);
    expect(count).toBe(4n);
    const rows = await server.query<{ id: string; status: string; cancel_reason: string | null; finished_at: Date | null }>(
      'select id, status, cancel_reason, finished_at from jobs where id = any($1::uuid[])',
      [ids],
    );
    expect(rows).toHaveLength(4);
    for (const row of rows) {
      expect(row.status).toBe('cancelled');
      expect(row.cancel_reason).toBeTruthy();
      expect(row.finished_at).not.toBeNull();
    }
    const { job: seen } = await bob.client.jobs.getJob({ id: queued[2]!.id });
    expect(seen?.status).toBe(JobStatus.CANCELLED);
    expect(seen?.cancelReason).not.toBe('');
    expect(seen?.finishTime).toBeDefined();
    expect(await pgBossStates(ids)).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled']);
    // Each cancellation is an event that streams see.
    await server.app.sequencer.flush();
    const events = await server.query<{ subject_id: string; status: string }>(
      `select subject_id, payload->>'status' as status from events where subject_id = any($1::uuid[]) and kind = 'job.updated'`,
      [ids],
    );
    expect(events.map((event) => event.status).sort()).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled']);
    // Another queue's jobs are untouched; the running job finishes.
    expect(await jobStatuses(noops.map((job) => job.id))).toEqual(Object.fromEntries(noops.map((job) => [job.id, 'queued'])));
    expect((await admin.queue.listQueuedJobs({ queue: 'sleep' })).jobs).toEqual([]);
    await waitStatus([runningJob.id], 'succeeded', 6000);

    const [adminRow] = await server.query<{ id: string }>(`select id from users where username = 'admin'`);
    expect(await auditRows(clear.id)).toEqual([
      {
        actor_id: adminRow!.id,
        actor_username: 'admin',
        action: method('ClearQueue'),
        target: 'sleep',
        outcome: 'success',
        error_code: null,
      },
    ]);

    // Nothing left to clear; after the resume the cleared jobs stay cancelled and the others run.
    expect((await admin.queue.clearQueue({ queue: 'sleep', confirm: 'sleep' })).count).toBe(0n);
    await admin.queue.resumeQueue({ queue: '' });
    await waitStatus(
      noops.map((job) => job.id),
      'succeeded',
      5000,
    );
    await sleep(1000);
    expect(Object.values(await jobStatuses(ids))).toEqual(['cancelled', 'cancelled', 'cancelled', 'cancelled']);
  });
});

// ---------------------------------------------------------------------------------------

describe('ClearQueue of every queue', () => {
  test('an empty queue with confirm `all` counts (dry run), then cancels the queued jobs of every queue, in pg-boss too, and is audited', async () => {
    const { client } = await server.createUser();
    const runningJob = await createSleep(client, 1);
    await waitStatus([runningJob.id], 'running', 5000);
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await admin.queue.pauseQueue({ queue: 'noop' });
    try {
      const queued = [await createSleep(client, 0), await createNoop(client), await createNoop(client)];
      const ids = queued.map((job) => job.id);
      const allQueued = await server.countRows(`select count(*) as n from jobs where status = 'queued'`);
      expect(allQueued).toBeGreaterThanOrEqual(3);
      expect((await admin.queue.clearQueue({ queue: '', confirm: 'all', dryRun: true })).count).toBe(BigInt(allQueued));
      expect(Object.values(await jobStatuses(ids))).toEqual(['queued', 'queued', 'queued']);

      const clear = withRequestId();
      expect((await admin.queue.clearQueue({ queue: '', confirm: 'all' }, clear.options)).count).toBe(BigInt(allQueued));
      expect(await server.countRows(`select count(*) as n from jobs where status = 'queued'`)).toBe(0);
      expect(await pgBossStates(ids)).toEqual(['cancelled', 'cancelled', 'cancelled']);
      expect(await auditRows(clear.id)).toMatchObject([{ action: method('ClearQueue'), outcome: 'success' }]);
    } finally {
      await admin.queue.resumeQueue({ queue: '' });
    }
    // A running job is not queued: it finishes.
    await waitStatus([runningJob.id], 'succeeded', 6000);
  });
});
