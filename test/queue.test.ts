/**
 * QueueService over a real server, a real PostgreSQL and pg-boss: live counts, the order
 * of queued jobs, pause and resume (persisted, honoured by the runner, surviving a
 * restart), clearing a queue, and the WatchQueues stream. Each check compares what the
 * API says with the `jobs`, `queue_states`, `audit_events` and `pgboss.job` tables.
 * Nothing is mocked: jobs run in the server's own runner (`noop`, `sleep`, and a
 * `until-released` test type whose jobs run until the test ends them).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, ConnectError, type CallOptions } from '@connectrpc/connect';
import { timestampDate, timestampFromDate, type Duration } from '@bufbuild/protobuf/wkt';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { JobStatus, type Job } from '../gen/yardmaster/v1/jobs_pb.ts';
import type { Queue, WatchQueuesResponse } from '../gen/yardmaster/v1/queue_pb.ts';
import { archiveJobType, checksumJobType, noopJobType, sleepJobType } from '../src/jobs/builtin-job-types.ts';
import { failOnce, release, releases, serialJobType, startOrder, untilReleasedJobType } from './support/job-types.ts';
import { eventually, expectConnectError, randomHex, violatedFields, within } from './support/assertions.ts';
import { createTestDatabase, type TestDatabase } from './support/test-database.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';


const heartbeatMs = 200;
const queueNames = ['archive', 'checksum', 'noop', 'serial', 'sleep', 'until-released'];
const method = (name: string) => `yardmaster.v1.QueueService.${name}`;

let database: TestDatabase;
let server: TestServer;
let admin: YardmasterClient;

beforeAll(async () => {
  database = await createTestDatabase();
  server = await startTestServer({ database, jobTypes: [untilReleasedJobType, serialJobType] });
  admin = await server.adminClient();
  await server.setSetting('jobs.stream_heartbeat_interval', `${heartbeatMs}ms`);
});

afterEach(async () => {
  // Every test starts with every queue running and nothing waiting or running.
  for (const stream of [...openStreams]) await stream.cancel();
  for (const queue of queueNames) await admin.queue.clearQueue({ queue, confirm: queue });
  await admin.queue.resumeQueue({ queue: '' });
  for (const [key, entry] of releases) {
    entry.release?.();
    releases.delete(key);
  }
  await eventually(async () => expect(await server.countRows(`select count(*) as n from jobs where status in ('queued', 'running')`)).toBe(0), 15_000, 50);
});

afterAll(async () => {
  await server?.close();
  await database?.drop();
});

function withRequestId(): { id: string; options: CallOptions } {
  const id = `queue-test-${randomHex(6)}`;
  return { id, options: { headers: { 'x-request-id': id } } };
}

interface AuditRow {
  actor_id: string | null;
  actor_username: string | null;
  action: string;
  target: string | null;
  outcome: string;
  error_code: string | null;
}

async function auditRows(requestId: string): Promise<AuditRow[]> {
  return server.query<AuditRow>('select actor_id, actor_username, action, target, outcome, error_code from audit_events where request_id = $1', [requestId]);
}

function queueOf(queues: Queue[], name: string): Queue {
  const queue = queues.find((candidate) => candidate.name === name);
  if (!queue) throw new Error(`no queue ${name} in ${queues.map((candidate) => candidate.name).join(', ')}`);
  return queue;
}

function ms(duration: Duration | undefined): number | undefined {
  return duration === undefined ? undefined : Number(duration.seconds) * 1000 + duration.nanos / 1_000_000;
}

async function createSleep(client: YardmasterClient, seconds: number, extra: { fail?: boolean; priority?: number } = {}): Promise<Job> {
  const { job } = await client.jobs.createJob({ type: 'sleep', params: { seconds, fail: extra.fail ?? false }, priority: extra.priority ?? 0 });
  return job!;
}

async function createNoop(client: YardmasterClient): Promise<Job> {
  return (await client.jobs.createJob({ type: 'noop', params: {} })).job!;
}

async function createUntilReleased(client: YardmasterClient, priority = 0): Promise<{ job: Job; key: string }> {
  const key = `until-released-${randomHex(6)}`;
  releases.set(key, { started: false, release: undefined });
  const { job } = await client.jobs.createJob({ type: 'until-released', params: { key }, priority });
  return { job: job!, key };
}

async function waitStarted(key: string, timeoutMs = 10_000): Promise<void> {
  await eventually(async () => expect(releases.get(key)?.started, `until-released job ${key} started`).toBe(true), timeoutMs, 20);
}

async function jobStatuses(ids: string[]): Promise<Record<string, string>> {
  const rows = await server.query<{ id: string; status: string }>('select id, status from jobs where id = any($1::uuid[])', [ids]);
  return Object.fromEntries(rows.map((row) => [row.id, row.status]));
}

async function waitStatus(ids: string[], status: string, timeoutMs = 10_000): Promise<void> {
  await eventually(
    async () => {
      const statuses = await jobStatuses(ids);
      expect(Object.values(statuses).filter((value) => value === status)).toHaveLength(ids.length);
    },
    timeoutMs,
    25,
  );
}

async function pgBossStates(ids: string[]): Promise<string[]> {
  const rows = await server.query<{ state: string }>(
    'select b.state from jobs j join pgboss.job b on b.id = j.queue_job_id and b.name = j.type where j.id = any($1::uuid[]) order by j.id',
    [ids],
  );
  return rows.map((row) => row.state);
}

/** The live counts as the jobs table has them. */
async function dbCounts(type: string): Promise<{ queued: number; running: number; succeeded: number; failed: number }> {
  const [row] = await server.query<{ queued: string; running: string; succeeded: string; failed: string }>(
    `select count(*) filter (where status = 'queued') as queued,
            count(*) filter (where status = 'running') as running,
            count(*) filter (where status = 'succeeded' and finished_at > now() - interval '1 hour') as succeeded,
            count(*) filter (where status = 'failed' and finished_at > now() - interval '1 hour') as failed
       from jobs where type = $1`,
    [type],
  );
  return { queued: Number(row!.queued), running: Number(row!.running), succeeded: Number(row!.succeeded), failed: Number(row!.failed) };
}

function countsOf(queue: Queue): { queued: number; running: number; succeeded: number; failed: number } {
  return { queued: Number(queue.queued), running: Number(queue.running), succeeded: Number(queue.succeededLastHour), failed: Number(queue.failedLastHour) };
}

async function queueStateRows(): Promise<Record<string, { paused: boolean; updated_by: string | null }>> {
  const rows = await server.query<{ name: string; paused: boolean; updated_by: string | null }>('select name, paused, updated_by from queue_states');
  return Object.fromEntries(rows.map((row) => [row.name, { paused: row.paused, updated_by: row.updated_by }]));
}

// Streams


const openStreams = new Set<QueueWatch>();

/** A WatchQueues stream read in the background, each message recorded with its arrival time. */
class QueueWatch {
  readonly items: WatchQueuesResponse[] = [];
  readonly arrivals: number[] = [];
  readonly ended: Promise<ConnectError | undefined>;
  #done = false;
  readonly #controller = new AbortController();

  constructor(client: YardmasterClient) {
    openStreams.add(this);
    this.ended = (async () => {
      try {
        for await (const item of client.queue.watchQueues({}, { signal: this.#controller.signal })) {
          this.items.push(item);
          this.arrivals.push(performance.now());
        }
        return undefined;
      } catch (error) {
        return ConnectError.from(error);
      } finally {
        this.#done = true;
        openStreams.delete(this);
      }
    })();
  }

  /** Waits for a message (arriving at or after index `from`) that satisfies `condition`; returns it with its arrival time. */
  async waitFor(condition: (message: WatchQueuesResponse) => boolean, what: string, from = 0, timeoutMs = 5000): Promise<{ message: WatchQueuesResponse; at: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.items.findIndex((message, position) => position >= from && condition(message));
      if (index >= 0) return { message: this.items[index]!, at: this.arrivals[index]! };
      if (this.#done) {
        const error = await this.ended;
        throw new Error(`the stream ended (${error ? `${Code[error.code]}: ${error.rawMessage}` : 'by itself'}) before ${what}`);
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${this.items.length} messages)`);
      await sleep(10);
    }
  }

  async cancel(): Promise<void> {
    this.#controller.abort();
    const outcome = await within(this.ended, 5000);
    expect(outcome, 'the cancelled stream did not end').not.toBe('timeout');
    if (outcome instanceof ConnectError) expect(Code[outcome.code], outcome.rawMessage).toBe(Code[Code.Canceled]);
  }
}

// ---------------------------------------------------------------------------------------

describe('ListQueues', () => {
  test('every queue (one per job type), sorted by name, with its description, concurrency and idle counts', async () => {
    const { client } = await server.createUser();
    const { queues } = await client.queue.listQueues({});
    expect(queues.map((queue) => queue.name)).toEqual(queueNames);
    const types = { archive: archiveJobType, checksum: checksumJobType, noop: noopJobType, serial: serialJobType, sleep: sleepJobType, 'until-released': untilReleasedJobType };
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
    await waitStatus(sleepers.map((job) => job.id), 'succeeded', 8000);
    const after = queueOf((await client.queue.listQueues({})).queues, 'sleep');
    expect(countsOf(after)).toEqual({ queued: 0, running: 0, succeeded: before.succeeded + 3, failed: before.failed + 1 });
    expect(countsOf(after)).toEqual(await dbCounts('sleep'));
    expect((await jobStatuses([failing.id]))[failing.id]).toBe('failed');
  });

  test('running counts the jobs in progress; the counts cover every user', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const before = countsOf(queueOf((await alice.client.queue.listQueues({})).queues, 'until-released'));
    const jobs = [await createUntilReleased(alice.client), await createUntilReleased(bob.client)];
    for (const { key } of jobs) await waitStarted(key);
    for (const client of [alice.client, bob.client, admin]) {
      const queue = queueOf((await client.queue.listQueues({})).queues, 'until-released');
      expect(countsOf(queue)).toEqual({ ...before, running: 2 });
    }
    for (const { key } of jobs) release(key);
    await waitStatus(jobs.map(({ job }) => job.id), 'succeeded');
    expect(countsOf(queueOf((await alice.client.queue.listQueues({})).queues, 'until-released'))).toEqual({ ...before, succeeded: before.succeeded + 2 });
  });
});

// ---------------------------------------------------------------------------------------

describe('GetQueueStatus', () => {
  test('totals are the sums over the queues; paused_globally and paused_queues follow the pauses', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'until-released' });
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await createUntilReleased(client);
    await createSleep(client, 1);
    await createSleep(client, 1);
    const [{ queues }, status] = [await client.queue.listQueues({}), await client.queue.getQueueStatus({})];
    const sum = (field: 'queued' | 'running' | 'succeededLastHour' | 'failedLastHour') => queues.reduce((total, queue) => total + queue[field], 0n);
    expect(status.totals?.queued).toBe(sum('queued'));
    expect(status.totals?.queued).toBe(3n);
    expect(status.totals?.running).toBe(sum('running'));
    expect(status.totals?.succeededLastHour).toBe(sum('succeededLastHour'));
    expect(status.totals?.failedLastHour).toBe(sum('failedLastHour'));
    expect(status.totals?.oldestQueuedAge).toBeDefined();
    expect(status.pausedGlobally).toBe(false);
    expect(status.pausedQueues).toEqual(['until-released', 'sleep']);

    await admin.queue.pauseQueue({ queue: '' });
    const global = await client.queue.getQueueStatus({});
    expect(global.pausedGlobally).toBe(true);
    // The queues paused on their own stay listed as such; every queue now reports paused.
    expect(global.pausedQueues).toEqual(['until-released', 'sleep']);
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
    await admin.queue.pauseQueue({ queue: 'until-released' });
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
      const { job } = await createUntilReleased(account.client, priority);
      created.push({ job, owner: account.user.id, index: created.length });
    }
    // Not queued in this queue: another queue's job, and a finished one.
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await createSleep(alice.client, 1);
    const runOrder = (entries: typeof created) => [...entries].sort((a, b) => b.job.priority - a.job.priority || a.index - b.index).map((entry) => entry.job.id);

    const aliceList = await alice.client.queue.listQueuedJobs({ queue: 'until-released' });
    expect(aliceList.jobs.map((job) => job.id)).toEqual(runOrder(created.filter((entry) => entry.owner === alice.user.id)));
    expect(aliceList.jobs.every((job) => job.status === JobStatus.QUEUED && job.type === 'until-released')).toBe(true);
    expect(aliceList.nextPageToken).toBe('');
    const bobList = await bob.client.queue.listQueuedJobs({ queue: 'until-released' });
    expect(bobList.jobs.map((job) => job.id)).toEqual(runOrder(created.filter((entry) => entry.owner === bob.user.id)));

    const adminList = await admin.queue.listQueuedJobs({ queue: 'until-released' });
    expect(adminList.jobs.map((job) => job.id)).toEqual(runOrder(created));
    // The same as the database orders the queue.
    const rows = await server.query<{ id: string }>(`select id from jobs where type = 'until-released' and status = 'queued' order by priority desc, created_at, id`);
    expect(adminList.jobs.map((job) => job.id)).toEqual(rows.map((row) => row.id));

    // Page by page, in the same order.
    const paged: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await admin.queue.listQueuedJobs({ queue: 'until-released', pageSize: 3, pageToken });
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
    const reordered = await alice.client.queue.listQueuedJobs({ queue: 'until-released' });
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
      expect((await client.queue.listQueuedJobs({ queue: '', pageToken: page.nextPageToken })).jobs.map((job) => job.id)).toEqual([routineNoop.id]);
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
      { actor_id: user.id, actor_username: user.username, action: method('PauseQueue'), target: 'sleep', outcome: 'failure', error_code: 'permission_denied' },
    ]);
  });

  test('while `sleep` is paused its new jobs stay queued (pg-boss entry `created`) and noop jobs still run; ResumeQueue runs them; both are persisted and audited', async () => {
    const { client } = await server.createUser();
    const pause = withRequestId();
    const paused = await admin.queue.pauseQueue({ queue: 'sleep' }, pause.options);
    expect(paused.pausedGlobally).toBe(false);
    expect(paused.queues.map((queue) => `${queue.name}:${queue.paused}`)).toEqual(['archive:false', 'checksum:false', 'noop:false', 'serial:false', 'sleep:true', 'until-released:false']);
    expect((await queueStateRows())['sleep']).toEqual({ paused: true, updated_by: 'admin' });
    const [state] = await server.query<{ updated_at: Date }>(`select updated_at from queue_states where name = 'sleep'`);
    expect(Date.now() - state!.updated_at.getTime()).toBeLessThan(10_000);

    const sleepers = [await createSleep(client, 0), await createSleep(client, 0)];
    const noops = [await createNoop(client), await createNoop(client)];
    await waitStatus(noops.map((job) => job.id), 'succeeded', 5000);
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
    expect((await queueStateRows())['sleep']).toEqual({ paused: false, updated_by: 'admin' });
    await waitStatus(sleepers.map((job) => job.id), 'succeeded', 8000);
    expect(await pgBossStates(sleepers.map((job) => job.id))).toEqual(['completed', 'completed']);

    const [adminRow] = await server.query<{ id: string }>(`select id from users where username = 'admin'`);
    expect(await auditRows(pause.id)).toEqual([
      { actor_id: adminRow!.id, actor_username: 'admin', action: method('PauseQueue'), target: 'sleep', outcome: 'success', error_code: null },
    ]);
    expect(await auditRows(resume.id)).toEqual([
      { actor_id: adminRow!.id, actor_username: 'admin', action: method('ResumeQueue'), target: 'sleep', outcome: 'success', error_code: null },
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
    expect(states['sleep']?.paused).toBe(true);

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
    expect(await auditRows(pause.id)).toMatchObject([{ action: method('PauseQueue'), target: 'no-such-queue', outcome: 'failure', error_code: 'not_found' }]);
  });

  test('jobs already running finish when their queue is paused', async () => {
    const { client } = await server.createUser();
    const sleeper = await createSleep(client, 1.5);
    const { job: scripted, key } = await createUntilReleased(client);
    await waitStatus([sleeper.id], 'running', 5000);
    await waitStarted(key);
    await admin.queue.pauseQueue({ queue: 'sleep' });
    await admin.queue.pauseQueue({ queue: 'until-released' });
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
    const [row] = await server.query<{ status: string; queue_job_id: string; version: number }>('select status, queue_job_id, version from jobs where id = $1', [job.id]);
    expect(row!.status).toBe('queued');
    // One queue entry, untouched, the one the job was created with.
    const entries = await server.query<{ id: string; state: string }>(`select id, state from pgboss.job where name = 'noop' and data->>'jobId' = $1`, [job.id]);
    expect(entries.length, `pg-boss entries of the paused noop job after 1.5 s`).toBe(1);
    expect(entries[0]).toEqual({ id: row!.queue_job_id, state: 'created' });
    await waitStatus([long.id], 'succeeded', 8000);
  });

  test('the pause is persisted in queue_states and survives a restart: a second instance on the same database reports it and runs none of its jobs', async () => {
    const { user, password, client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const second = await startTestServer({ database, jobTypes: [untilReleasedJobType, serialJobType] });
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
    const versionsBefore = await server.query<{ id: string; version: number; status: string }>('select id, version, status from jobs where id = any($1::uuid[]) order by id', [ids]);
    const eventsBefore = await server.countRows('select count(*) as n from events where subject_id = any($1::uuid[])', [ids]);

    const dry = withRequestId();
    const { count } = await admin.queue.clearQueue({ queue: 'sleep', confirm: 'sleep', dryRun: true }, dry.options);
    expect(count).toBe(3n);
    expect((await admin.queue.clearQueue({ queue: 'noop', confirm: 'noop', dryRun: true })).count).toBe(0n);
    await server.app.sequencer.flush();
    expect(await server.query('select id, version, status from jobs where id = any($1::uuid[]) order by id', [ids])).toEqual(versionsBefore);
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
    const queued = [await createSleep(alice.client, 0), await createSleep(alice.client, 0, { priority: 9 }), await createSleep(bob.client, 0), await createSleep(bob.client, 0)];
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
      { actor_id: adminRow!.id, actor_username: 'admin', action: method('ClearQueue'), target: 'sleep', outcome: 'success', error_code: null },
    ]);

    // Nothing left to clear; after the resume the cleared jobs stay cancelled and the others run.
    expect((await admin.queue.clearQueue({ queue: 'sleep', confirm: 'sleep' })).count).toBe(0n);
    await admin.queue.resumeQueue({ queue: '' });
    await waitStatus(noops.map((job) => job.id), 'succeeded', 5000);
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

describe('oldest queued age', () => {
  test('a job waiting for its run_after is not waiting yet; a due job counts from when it was queued', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'noop' });
    try {
      await admin.queue.clearQueue({ queue: 'noop', confirm: 'noop' });
      const later = (await client.jobs.createJob({ type: 'noop', params: {}, runAfter: timestampFromDate(new Date(Date.now() + 3_600_000)) })).job!;
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

describe('WatchQueues', () => {
  test('the first message holds the current counts; new jobs and pauses send new counts within a second', async () => {
    const { client } = await server.createUser();
    const stream = new QueueWatch(client);
    const { message: first } = await stream.waitFor(() => true, 'the first message');
    const listed = await client.queue.listQueues({});
    const comparable = (queues: Queue[]) => queues.map((queue) => ({ ...countsOf(queue), name: queue.name, paused: queue.paused, concurrency: queue.concurrency }));
    expect(comparable(first.queues)).toEqual(comparable(listed.queues));
    expect(first.pausedGlobally).toBe(false);
    expect(first.totals?.queued).toBe(0n);
    expect(first.time).toBeDefined();
    expect(Math.abs(timestampDate(first.time!).getTime() - Date.now())).toBeLessThan(5000);

    // A pause.
    let from = stream.items.length;
    let sent = performance.now();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const pausedMessage = await stream.waitFor((message) => queueOf(message.queues, 'sleep').paused, 'sleep paused', from, 3000);
    expect(pausedMessage.at - sent).toBeLessThan(1000);
    expect(pausedMessage.message.pausedGlobally).toBe(false);

    // New jobs.
    from = stream.items.length;
    sent = performance.now();
    await createSleep(client, 0);
    await createSleep(client, 0);
    const countedMessage = await stream.waitFor((message) => queueOf(message.queues, 'sleep').queued === 2n, 'two queued sleep jobs', from, 3000);
    expect(countedMessage.at - sent).toBeLessThan(1000);
    expect(countedMessage.message.totals?.queued).toBe(2n);
    expect(countedMessage.message.totals?.oldestQueuedAge).toBeDefined();
    expect(queueOf(countedMessage.message.queues, 'sleep').oldestQueuedAge).toBeDefined();

    // A global pause, then the resume: the jobs run and the counts follow.
    from = stream.items.length;
    await admin.queue.pauseQueue({ queue: '' });
    await stream.waitFor((message) => message.pausedGlobally && message.queues.every((queue) => queue.paused), 'the global pause', from, 3000);
    from = stream.items.length;
    await admin.queue.resumeQueue({ queue: '' });
    const done = await stream.waitFor(
      (message) => !message.pausedGlobally && queueOf(message.queues, 'sleep').queued === 0n && queueOf(message.queues, 'sleep').running === 0n && !queueOf(message.queues, 'sleep').paused,
      'the jobs to run',
      from,
      8000,
    );
    expect(queueOf(done.message.queues, 'sleep').succeededLastHour).toBeGreaterThanOrEqual(2n);
    expect(queueOf(done.message.queues, 'sleep').oldestQueuedAge).toBeUndefined();
  });

  test('when quiet, heartbeats repeat the same counts about every interval', async () => {
    const { client } = await server.createUser();
    const stream = new QueueWatch(client);
    await stream.waitFor(() => true, 'the first message');
    await sleep(2000);
    const messages = stream.items;
    expect(messages.length).toBeGreaterThanOrEqual(4);
    const counts = messages.map((message) => JSON.stringify(message.queues.map((queue) => [queue.name, countsOf(queue), queue.paused])));
    expect(new Set(counts).size).toBe(1);
    for (let index = 1; index < messages.length; index++) {
      expect(timestampDate(messages[index]!.time!).getTime()).toBeGreaterThan(timestampDate(messages[index - 1]!.time!).getTime());
    }
    // The heartbeat interval is the longest silence allowed: gaps close to it, never far above.
    const gaps = stream.arrivals.slice(1).map((at, index) => at - stream.arrivals[index]!);
    const sorted = [...gaps].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    expect(median, `gaps between quiet messages (interval ${heartbeatMs} ms): ${gaps.map((gap) => gap.toFixed(0)).join(', ')} ms`).toBeLessThan(heartbeatMs + 150);
  });

  test('over gRPC: the counts first, then changes', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const stream = new QueueWatch(grpc);
    const { message: first } = await stream.waitFor(() => true, 'the first message');
    expect(first.queues.map((queue) => queue.name)).toEqual(queueNames);
    const from = stream.items.length;
    await admin.queue.pauseQueue({ queue: 'until-released' });
    await createUntilReleased(grpc);
    await stream.waitFor((message) => queueOf(message.queues, 'until-released').paused && queueOf(message.queues, 'until-released').queued === 1n, 'the paused queue with one job', from, 3000);
    await stream.cancel();
    await expectConnectError(
      (async () => {
        for await (const message of server.client({ protocol: 'grpc' }).queue.watchQueues({})) return message;
        return undefined;
      })(),
      Code.Unauthenticated,
    );
  });
});

// ---------------------------------------------------------------------------------------

describe('workers', () => {
  test('workers_attached counts this instance on every queue it works (pg-boss refreshes its registry every 10 s)', async () => {
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
