/**
 * QueueService ListQueues, GetQueueStatus, ListQueuedJobs, the oldest queued age and workers.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, test } from 'vitest';
import { JobStatus, type Job } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { archiveJobType, checksumJobType, noopJobType, sleepJobType } from '../../src/jobs/builtin-job-types.ts';
import { failOnce, release, serialJobType, startOrder, runsUntilReleasedJobType } from '../support/job-types.ts';
import { eventually, expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import {
  queueNames,
  server,
  admin,
  queueOf,
  ms,
  createSleep,
  createNoop,
  createRunsUntilReleased,
  waitStarted,
  jobStatuses,
  waitStatus,
  dbCounts,
  countsOf,
  useQueueServer,
} from './support.ts';

useQueueServer();

// ---------------------------------------------------------------------------------------

describe('ListQueues', () => {
  test('every queue (one per job type), sorted by name, with its description, concurrency and idle counts', async () => {
    const { client } = await server.createUser();
    const { queues } = await client.queue.listQueues({});
    expect(queues.map((queue) => queue.name)).toEqual(queueNames);
    const types = {
      archive: archiveJobType,
      checksum: checksumJobType,
      noop: noopJobType,
      'runs-until-released': runsUntilReleasedJobType,
      serial: serialJobType,
      sleep: sleepJobType,
    };
    for (const queue of queues) {
      const type = types[queue.name as keyof typeof types];
      expect(queue.description).toBe(type.description);
      expect(queue.concurrency).toBe(type.concurrency);
      expect(queue.paused).toBe(false);
      expect(Number(queue.queued)).toBe(0);
      expect(Number(queue.running)).toBe(0);
      expect(queue.oldestQueuedAge).toBeUndefined();
    }
    expect(queueOf(queues, 'noop').concurrency).toBe(50);
    expect(queueOf(queues, 'sleep').concurrency).toBe(20);
    // Admins see the same list; anonymous callers none.
    expect((await admin.queue.listQueues({})).queues.map((queue) => queue.name)).toEqual(queueNames);
    await expectConnectError(server.client().queue.listQueues({}), Code.Unauthenticated);
    await expectConnectError(server.client().queue.getQueueStatus({}), Code.Unauthenticated);
  });

  test('live counts follow the jobs: queued while paused (with the oldest age), running after the resume, then succeeded or failed', async () => {
    const { client } = await server.createUser();
    const before = countsOf(queueOf((await client.queue.listQueues({})).queues, 'sleep'));
    expect(before).toEqual(await dbCounts('sleep'));

    await admin.queue.pauseQueue({ queue: 'sleep' });
    const sleepers = [await createSleep(client, 2), await createSleep(client, 2), await createSleep(client, 2)];
    const failing = await createSleep(client, 0, { fail: true });
    await sleep(300);
    const paused = queueOf((await client.queue.listQueues({})).queues, 'sleep');
    expect(paused.paused).toBe(true);
    expect(countsOf(paused)).toEqual({ ...before, queued: 4 });
    expect(countsOf(paused)).toEqual(await dbCounts('sleep'));
    expect(ms(paused.oldestQueuedAge)).toBeGreaterThanOrEqual(250);
    expect(ms(paused.oldestQueuedAge)).toBeLessThan(10_000);
    const status = await client.queue.getQueueStatus({});
    expect(Number(status.totals?.queued)).toBe(4);
    expect(ms(status.totals?.oldestQueuedAge)).toBeGreaterThanOrEqual(ms(paused.oldestQueuedAge)!);

    await admin.queue.resumeQueue({ queue: 'sleep' });
    await eventually(
      async () => {
        const queue = queueOf((await client.queue.listQueues({})).queues, 'sleep');
        expect(countsOf(queue)).toEqual({ ...before, queued: 0, running: 3, failed: before.failed + 1 });
        expect(queue.oldestQueuedAge).toBeUndefined();
        expect(queue.paused).toBe(false);
      },
      3000,
      50,
    );
    expect((await dbCounts('sleep')).running).toBe(3);
    await waitStatus(
      sleepers.map((job) => job.id),
      'succeeded',
      8000,
    );
    const after = queueOf((await client.queue.listQueues({})).queues, 'sleep');
    expect(countsOf(after)).toEqual({ queued: 0, running: 0, succeeded: before.succeeded + 3, failed: before.failed + 1 });
    expect(countsOf(after)).toEqual(await dbCounts('sleep'));
    expect((await jobStatuses([failing.id]))[failing.id]).toBe('failed');
  });

  test('running counts the jobs in progress; the counts cover every user', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const before = countsOf(queueOf((await alice.client.queue.listQueues({})).queues, 'runs-until-released'));
    const jobs = [await createRunsUntilReleased(alice.client), await createRunsUntilReleased(bob.client)];
    for (const { key } of jobs) await waitStarted(key);
    for (const client of [alice.client, bob.client, admin]) {
      const queue = queueOf((await client.queue.listQueues({})).queues, 'runs-until-released');
      expect(countsOf(queue)).toEqual({ ...before, running: 2 });
    }
    for (const { key } of jobs) release(key);
    await waitStatus(
      jobs.map(({ job }) => job.id),
      'succeeded',
    );
    expect(countsOf(queueOf((await alice.client.queue.listQueues({})).queues, 'runs-until-released'))).toEqual({
      ...before,
      succeeded: before.succeeded + 2,
    });
  });
});

// ---------------------------------------------------------------------------------------

describe('GetQueueStatus', () => {
  test('totals are the sums over the queues; paused_globally and paused_queues follow the pauses', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'runs-until-released' });
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await createRunsUntilReleased(client);
    await createSleep(client, 1);
    await createSleep(client, 1);
    const [{ queues }, status] = [await client.queue.listQueues({}), await client.queue.getQueueStatus({})];
    const sum = (field: 'queued' | 'running' | 'succeededLastHour' | 'failedLastHour') =>
      queues.reduce((total, queue) => total + queue[field], 0n);
    expect(status.totals?.queued).toBe(sum('queued'));
    expect(status.totals?.queued).toBe(3n);
    expect(status.totals?.running).toBe(sum('running'));
    expect(status.totals?.succeededLastHour).toBe(sum('succeededLastHour'));
    expect(status.totals?.failedLastHour).toBe(sum('failedLastHour'));
    expect(status.totals?.oldestQueuedAge).toBeDefined();
    expect(status.pausedGlobally).toBe(false);
    expect(status.pausedQueues).toEqual(['runs-until-released', 'sleep']);

    await admin.queue.pauseQueue({ queue: '' });
    const global = await client.queue.getQueueStatus({});
    expect(global.pausedGlobally).toBe(true);
    // The queues paused on their own stay listed as such; every queue now reports paused.
    expect(global.pausedQueues).toEqual(['runs-until-released', 'sleep']);
    expect((await client.queue.listQueues({})).queues.every((queue) => queue.paused)).toBe(true);

    await admin.queue.resumeQueue({ queue: '' });
    const resumed = await client.queue.getQueueStatus({});
    expect(resumed.pausedGlobally).toBe(false);
    expect(resumed.pausedQueues).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------

describe('ListQueuedJobs', () => {
  test('queued jobs in run order (priority desc, then oldest first); users see their own, admins all; pages keep the order', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'runs-until-released' });
    const created: { job: Job; owner: string; index: number }[] = [];
    const plan: [typeof alice, number][] = [
      [alice, 0],
      [alice, 5],
      [bob, 7],
      [alice, -3],
      [alice, 5],
      [bob, 0],
      [alice, 10],
      [alice, 0],
    ];
    for (const [account, priority] of plan) {
      const { job } = await createRunsUntilReleased(account.client, priority);
      created.push({ job, owner: account.user.id, index: created.length });
    }
    // Not queued in this queue: another queue's job, and a finished one.
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await createSleep(alice.client, 1);
    const runOrder = (entries: typeof created) =>
      [...entries].sort((a, b) => b.job.priority - a.job.priority || a.index - b.index).map((entry) => entry.job.id);

    const aliceList = await alice.client.queue.listQueuedJobs({ queue: 'runs-until-released' });
    expect(aliceList.jobs.map((job) => job.id)).toEqual(runOrder(created.filter((entry) => entry.owner === alice.user.id)));
    expect(aliceList.jobs.every((job) => job.status === JobStatus.QUEUED && job.type === 'runs-until-released')).toBe(true);
    expect(aliceList.nextPageToken).toBe('');
    const bobList = await bob.client.queue.listQueuedJobs({ queue: 'runs-until-released' });
    expect(bobList.jobs.map((job) => job.id)).toEqual(runOrder(created.filter((entry) => entry.owner === bob.user.id)));

    const adminList = await admin.queue.listQueuedJobs({ queue: 'runs-until-released' });
    expect(adminList.jobs.map((job) => job.id)).toEqual(runOrder(created));
    // The same as the database orders the queue.
    const rows = await server.query<{ id: string }>(
      `select id from jobs where type = 'runs-until-released' and status = 'queued' order by priority desc, created_at, id`,
    );
    expect(adminList.jobs.map((job) => job.id)).toEqual(rows.map((row) => row.id));

    // Page by page, in the same order.
    const paged: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await admin.queue.listQueuedJobs({ queue: 'runs-until-released', pageSize: 3, pageToken });
      expect(page.jobs.length).toBeLessThanOrEqual(3);
      paged.push(...page.jobs.map((job) => job.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 10);
    expect(paged).toEqual(runOrder(created));
    expect(pages).toBe(3);

    // A new priority moves a job; a cancelled job leaves the list.
    const lowest = created.find((entry) => entry.job.priority === -3)!;
    await alice.client.jobs.updateJob({ job: { id: lowest.job.id, priority: 100 }, updateMask: { paths: ['priority'] } });
    const cancelled = created.find((entry) => entry.job.priority === 10)!;
    await alice.client.jobs.cancelJob({ id: cancelled.job.id });
    const reordered = await alice.client.queue.listQueuedJobs({ queue: 'runs-until-released' });
    expect(reordered.jobs[0]!.id).toBe(lowest.job.id);
    expect(reordered.jobs.map((job) => job.id)).not.toContain(cancelled.job.id);
    expect(reordered.jobs).toHaveLength(created.filter((entry) => entry.owner === alice.user.id).length - 1);

    // Running and finished jobs are not queued.
    expect((await alice.client.queue.listQueuedJobs({ queue: 'noop' })).jobs).toEqual([]);
  });

  test('the listed order is the order in which the jobs then run, also for a job queued again by RetryJob', async () => {
    const { client } = await server.createUser();
    const prefix = randomHex(4);
    const create = async (tag: string) => (await client.jobs.createJob({ type: 'serial', params: { tag: `${prefix}-${tag}` } })).job!;
    // A job that fails first, and is retried after others were queued.
    failOnce.add(`${prefix}-retried`);
    const retried = await create('retried');
    await waitStatus([retried.id], 'failed', 5000);
    await admin.queue.pauseQueue({ queue: 'serial' });
    const first = await create('first');
    const second = await create('second');
    await client.jobs.retryJob({ id: retried.id });
    const tags = new Map([
      [retried.id, `${prefix}-retried`],
      [first.id, `${prefix}-first`],
      [second.id, `${prefix}-second`],
    ]);
    const listed = (await client.queue.listQueuedJobs({ queue: 'serial' })).jobs.map((job) => tags.get(job.id));
    startOrder.length = 0;
    await admin.queue.resumeQueue({ queue: 'serial' });
    await waitStatus([retried.id, first.id, second.id], 'succeeded', 8000);
    expect(startOrder).toHaveLength(3);
    expect(listed, `ListQueuedJobs said ${listed.join(', ')}; the jobs ran ${startOrder.join(', ')}`).toEqual(startOrder);
  });

  test('an empty queue name lists the queued jobs of every queue in one run order', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await admin.queue.pauseQueue({ queue: 'noop' });
    try {
      const urgentNoop = (await client.jobs.createJob({ type: 'noop', params: {}, priority: 5 })).job!;
      const routineSleep = await createSleep(client, 0);
      const urgentSleep = await createSleep(client, 0, { priority: 5 });
      const routineNoop = await createNoop(client);
      const { jobs } = await client.queue.listQueuedJobs({ queue: '' });
      expect(jobs.map((job) => job.id)).toEqual([urgentNoop.id, urgentSleep.id, routineSleep.id, routineNoop.id]);
      const page = await client.queue.listQueuedJobs({ queue: '', pageSize: 3 });
      expect((await client.queue.listQueuedJobs({ queue: '', pageToken: page.nextPageToken })).jobs.map((job) => job.id)).toEqual([
        routineNoop.id,
      ]);
    } finally {
      await admin.queue.resumeQueue({ queue: '' });
    }
  });

  test('an unknown queue is NotFound; bad page tokens and sizes are InvalidArgument', async () => {
    const { client } = await server.createUser();
    await expectConnectError(client.queue.listQueuedJobs({ queue: 'no-such-queue' }), Code.NotFound);
    const badToken = await expectConnectError(client.queue.listQueuedJobs({ queue: 'sleep', pageToken: 'garbage' }), Code.InvalidArgument);
    expect(violatedFields(badToken)).toEqual(['page_token']);
    const negative = await expectConnectError(client.queue.listQueuedJobs({ queue: 'sleep', pageSize: -1 }), Code.InvalidArgument);
    expect(violatedFields(negative)).toEqual(['page_size']);
  });
});

describe('oldest queued age', () => {
  test('a job waiting for its run_after is not waiting yet; a due job counts from when it was queued', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'noop' });
    try {
      await admin.queue.clearQueue({ queue: 'noop', confirm: 'noop' });
      const later = (
        await client.jobs.createJob({ type: 'noop', params: {}, runAfter: timestampFromDate(new Date(Date.now() + 3_600_000)) })
      ).job!;
      await sleep(300);
      let noop = queueOf((await client.queue.listQueues({})).queues, 'noop');
      expect(Number(noop.queued)).toBe(1);
      expect(noop.oldestQueuedAge).toBeUndefined();
      await createNoop(client);
      await sleep(300);
      noop = queueOf((await client.queue.listQueues({})).queues, 'noop');
      expect(ms(noop.oldestQueuedAge)).toBeGreaterThanOrEqual(250);
      expect(ms(noop.oldestQueuedAge)).toBeLessThan(5000);
      await admin.queue.clearQueue({ queue: 'noop', confirm: 'noop' });
      expect((await jobStatuses([later.id]))[later.id]).toBe('cancelled');
    } finally {
      await admin.queue.resumeQueue({ queue: '' });
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('workers', () => {
  test('workers_attached counts this instance on every queue it works (its pool states, sent with each heartbeat)', async () => {
    const { client } = await server.createUser();
    await eventually(
      async () => {
        const { queues } = await client.queue.listQueues({});
        for (const queue of queues) expect(queue.workersAttached, queue.name).toBeGreaterThanOrEqual(1);
      },
      25_000,
      500,
    );
  }, 30_000);
});
