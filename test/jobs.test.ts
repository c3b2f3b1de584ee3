/**
 * JobsService over a real server, a real PostgreSQL and a real pg-boss: every test calls
 * the server as a client would (typed client, Connect unless said otherwise) and checks
 * the reply (status, Connect code, BadRequest fields, ErrorInfo reason) and what was or
 * was not written to `jobs`, `job_log_lines`, `events`, `audit_events` and pg-boss's
 * `pgboss.job`. Nothing is mocked.
 *
 * Besides the built-in `noop` and `sleep`, the server gets job types that the tests
 * control:
 * - `held`: never runs, because its queue is paused for the whole file (jobs stay QUEUED);
 * - `echo`: succeeds at once, with free-form text params (search, params size);
 * - `waiter`: runs until its signal aborts (cancellation of a running job);
 * - `stubborn`: ignores its signal (abandoned after a 300 ms grace);
 * - `deadline`: runs past its 300 ms timeout;
 * - `flaky`: fails its first `failures` runs (counted per `key`, across attempts and
 *   retries), or fails for good with a non-retryable JobFailure (`fatal`).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { setTimeout as sleep } from 'node:timers/promises';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { Role } from '../gen/yardmaster/v1/common_pb.ts';
import { JobEventKind, JobLogLevel, JobStatus, type CreateJobRequestSchema, type Job } from '../gen/yardmaster/v1/jobs_pb.ts';
import { heldJobType, echoJobType, waiterJobType, stubbornJobType, stubbornGraceMs, deadlineJobType, deadlineTimeoutMs, flakyJobType, flakyRuns } from './support/job-types.ts';
import { eventually, expectConnectError, randomHex, uniqueName, violatedFields } from './support/assertions.ts';
import { statusName } from './support/job-names.ts';
import { startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

// ---------------------------------------------------------------------------------------
// Server and helpers

let server: TestServer;
let admin: YardmasterClient;

beforeAll(async () => {
  server = await startTestServer({ jobTypes: [heldJobType, echoJobType, waiterJobType, stubbornJobType, deadlineJobType, flakyJobType] });
  admin = await server.adminClient();
  await admin.queue.pauseQueue({ queue: 'held' });
  // Let the runner stop its `held` worker before any held job exists.
  await sleep(300);
});

afterAll(() => server?.close());

/**
 * How long a due queue entry may wait for a worker: the runner polls every 2 s
 * (pollingIntervalSeconds in job-runner.ts), plus margin. Retries with no delay and jobs
 * whose run_after has come are picked up by that poll (no NOTIFY announces them).
 */
const pollSlackMs = 4000;


type CreateJobInit = MessageInitShape<typeof CreateJobRequestSchema>;

/** Polls GetJob until the job has `status`; returns it. On timeout, says where the job and its queue entries are. */
async function waitForStatus(client: YardmasterClient, id: string, status: JobStatus, timeoutMs = 8000): Promise<Job> {
  try {
    return await eventually(
      async () => {
        const { job } = await client.jobs.getJob({ id });
        expect(statusName(job!.status), `status of job ${id}`).toBe(statusName(status));
        return job!;
      },
      timeoutMs,
      25,
    );
  } catch (error) {
    const row = await jobRowOf(id);
    const entries = await queueEntriesOf(id);
    const described = entries.map((entry) => `${entry.state} (start_after ${new Date(entry.start_after).toISOString()}, retry_count ${entry.retry_count})`);
    throw new Error(
      `job ${id} (${row?.type}) is not ${statusName(status)} after ${timeoutMs} ms: it is ${row?.status}, attempt ${row?.attempt}; ` +
        `now ${new Date().toISOString()}; pg-boss entries: ${described.join(', ') || 'none'}`,
      { cause: error },
    );
  }
}

async function create(client: YardmasterClient, request: CreateJobInit & { type: string }): Promise<Job> {
  const { job } = await client.jobs.createJob(request);
  expect(job).toBeDefined();
  return job!;
}

interface QueueEntryRow {
  id: string;
  name: string;
  state: string;
  priority: number;
  retry_limit: number;
  retry_count: number;
  start_after: Date;
  data: { jobId: string };
}

/** pg-boss entries that carry the job, oldest first. */
const queueEntriesOf = (jobId: string) =>
  server.query<QueueEntryRow>(
    `select id, name, state, priority, retry_limit, retry_count, start_after, data from pgboss.job where data->>'jobId' = $1 order by created_on, id`,
    [jobId],
  );

interface JobRow {
  id: string;
  owner_id: string;
  type: string;
  name: string;
  status: string;
  priority: number;
  attempt: number;
  max_attempts: number;
  queue_job_id: string | null;
  request_id: string | null;
  created_at: Date;
}

const jobRowOf = async (jobId: string) => (await server.query<JobRow>('select * from jobs where id = $1', [jobId]))[0];

interface EventRow {
  id: string;
  sequence: string | null;
  kind: string;
  subject_id: string;
  owner_id: string;
  payload: Record<string, unknown>;
}

const eventsOf = (jobId: string) => server.query<EventRow>('select id, sequence, kind, subject_id, owner_id, payload from events where subject_id = $1 order by id', [jobId]);

/** What a rejected call must not have written for a fresh user. */
async function writes(ownerId: string) {
  return {
    jobs: await server.countRows('select count(*)::int as n from jobs where owner_id = $1', [ownerId]),
    events: await server.countRows('select count(*)::int as n from events where owner_id = $1', [ownerId]),
    // Entries of job queues only: pg-boss's own scheduled maintenance entries carry no job.
    queueEntries: await server.countRows(`select count(*)::int as n from pgboss.job where data->>'jobId' is not null`),
  };
}

/** All of the caller's jobs matching the request's filter, by id, over every page. */
async function listAll(client: YardmasterClient, request: Parameters<YardmasterClient['jobs']['listJobs']>[0]): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = '';
  for (let page = 0; page < 100; page++) {
    const reply = await client.jobs.listJobs({ ...request, pageToken });
    ids.push(...reply.jobs.map((job) => job.id));
    if (reply.nextPageToken === '') return ids;
    pageToken = reply.nextPageToken;
  }
  throw new Error('too many pages');
}

// ---------------------------------------------------------------------------------------

describe('CreateJob', () => {
  test('a noop job is queued, then runs to SUCCEEDED with its times, attempt and result', async () => {
    const { user, client } = await server.createUser();
    const created = await create(client, { type: 'noop', name: '  first noop  ', labels: { team: 'infra' } });
    expect(created.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/);
    expect(created.ownerId).toBe(user.id);
    expect(created.type).toBe('noop');
    expect(created.name).toBe('first noop');
    expect(created.labels).toEqual({ team: 'infra' });
    expect(created.status).toBe(JobStatus.QUEUED);
    expect(created.attempt).toBe(0);
    expect(created.maxAttempts).toBe(1);
    expect(created.createTime).toBeDefined();
    expect(created.startTime).toBeUndefined();
    expect(created.finishTime).toBeUndefined();
    expect(created.error).toBeUndefined();

    const done = await waitForStatus(client, created.id, JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(1);
    expect(done.progress?.percent).toBe(100);
    expect(done.result).toEqual({});
    expect(done.error).toBeUndefined();
    expect(timestampDate(done.startTime!).getTime()).toBeGreaterThanOrEqual(timestampDate(done.createTime!).getTime());
    expect(timestampDate(done.finishTime!).getTime()).toBeGreaterThanOrEqual(timestampDate(done.startTime!).getTime());
    const row = await jobRowOf(created.id);
    expect(row).toMatchObject({ status: 'succeeded', owner_id: user.id, type: 'noop', attempt: 1 });
    const entries = await queueEntriesOf(created.id);
    expect(entries.map((entry) => [entry.name, entry.state])).toEqual([['noop', 'completed']]);
  });

  test('an unknown or empty type is InvalidArgument naming `type`, and nothing is written', async () => {
    const { user, client } = await server.createUser();
    const before = await writes(user.id);
    const unknown = await expectConnectError(client.jobs.createJob({ type: 'no-such-type' }), Code.InvalidArgument);
    expect(violatedFields(unknown)).toEqual(['type']);
    const empty = await expectConnectError(client.jobs.createJob({ type: '' }), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['type']);
    expect(await writes(user.id)).toEqual(before);
  });

  test.each([
    ['missing seconds', {}, ['params.seconds']],
    ['negative seconds', { seconds: -1 }, ['params.seconds']],
    ['seconds as text', { seconds: 'x' }, ['params.seconds']],
    ['seconds above the maximum', { seconds: 3601 }, ['params.seconds']],
    ['fail as text', { seconds: 1, fail: 'yes' }, ['params.fail']],
    // The violation names the offending key, as for any other param.
    ['an extra unknown key', { seconds: 1, extra: true }, ['params.extra']],
  ])('sleep params with %s are InvalidArgument naming the param, and nothing is queued', async (_case, params, fields) => {
    const { user, client } = await server.createUser();
    const before = await writes(user.id);
    const error = await expectConnectError(client.jobs.createJob({ type: 'sleep', params }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(fields);
    expect(await writes(user.id)).toEqual(before);
    expect(before.jobs).toBe(0);
  });

  test('params larger than jobs.max_params_bytes are InvalidArgument naming `params`', async () => {
    const { user, client } = await server.createUser();
    await server.setSetting('jobs.max_params_bytes', 1024);
    try {
      const before = await writes(user.id);
      const tooBig = await expectConnectError(client.jobs.createJob({ type: 'echo', params: { message: 'x'.repeat(2000) } }), Code.InvalidArgument);
      expect(violatedFields(tooBig)).toEqual(['params']);
      // Too big is reported alone: the schema does not even look at it.
      const tooBigAndBad = await expectConnectError(client.jobs.createJob({ type: 'sleep', params: { seconds: -1, pad: 'x'.repeat(2000) } }), Code.InvalidArgument);
      expect(violatedFields(tooBigAndBad)).toEqual(['params']);
      expect(await writes(user.id)).toEqual(before);
      // Just under the limit is fine.
      await create(client, { type: 'echo', params: { message: 'x'.repeat(900) } });
    } finally {
      await server.setSetting('jobs.max_params_bytes', null);
    }
    // Back to the default (64 KiB).
    await create(client, { type: 'echo', params: { message: 'x'.repeat(2000) } });
  });

  test.each<[string, CreateJobInit, string[]]>([
    ['an upper-case label key', { labels: { Project: 'apollo' } }, ['labels.Project']],
    ['a label key starting with a dash', { labels: { '-x': 'y' } }, ['labels.-x']],
    ['33 labels', { labels: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }, ['labels']],
    ['a 300-character label value', { labels: { note: 'v'.repeat(300) } }, ['labels.note']],
    ['priority 101', { priority: 101 }, ['priority']],
    ['priority -101', { priority: -101 }, ['priority']],
    ['max_attempts 21', { maxAttempts: 21 }, ['max_attempts']],
    ['max_attempts -1', { maxAttempts: -1 }, ['max_attempts']],
    ['a 129-character request_id', { requestId: 'r'.repeat(129) }, ['request_id']],
    ['a 201-character name', { name: 'n'.repeat(201) }, ['name']],
    ['priority 101 and max_attempts 21 together', { priority: 101, maxAttempts: 21 }, ['priority', 'max_attempts']],
  ])('%s is InvalidArgument naming the field, and nothing is written', async (_case, fields, expected) => {
    const { user, client } = await server.createUser();
    const before = await writes(user.id);
    const error = await expectConnectError(client.jobs.createJob({ type: 'noop', ...fields }), Code.InvalidArgument);
    expect(violatedFields(error).sort()).toEqual([...expected].sort());
    expect(await writes(user.id)).toEqual(before);
  });

  test('limits are inclusive: 32 labels, a 256-character value, priority ±100, 20 attempts, a 128-character request_id', async () => {
    const { client } = await server.createUser();
    const labels = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, i === 0 ? 'v'.repeat(256) : 'v']));
    const job = await create(client, { type: 'held', labels, priority: 100, maxAttempts: 20, requestId: 'r'.repeat(128), name: 'n'.repeat(200) });
    expect(Object.keys(job.labels)).toHaveLength(32);
    expect(job.priority).toBe(100);
    expect(job.maxAttempts).toBe(20);
    expect((await create(client, { type: 'held', priority: -100 })).priority).toBe(-100);
  });

  test('input_file_ids must suit the job type: none for noop, and only the caller\'s available files for checksum', async () => {
    const { user, client } = await server.createUser();
    const before = await writes(user.id);
    const unknownFile = '01a20540-c425-76c3-9669-8051ead8987d';
    const forNoop = await expectConnectError(client.jobs.createJob({ type: 'noop', inputFileIds: [unknownFile] }), Code.InvalidArgument);
    expect(violatedFields(forNoop)).toEqual(['input_file_ids']);
    const missing = await expectConnectError(client.jobs.createJob({ type: 'checksum', inputFileIds: [unknownFile, 'not-a-uuid'] }), Code.InvalidArgument);
    expect(violatedFields(missing)).toEqual(['input_file_ids[0]', 'input_file_ids[1]']);
    const none = await expectConnectError(client.jobs.createJob({ type: 'checksum' }), Code.InvalidArgument);
    expect(violatedFields(none)).toEqual(['input_file_ids']);
    expect(await writes(user.id)).toEqual(before);
  });

  test('max_attempts 0 means the type default; a given value is kept and becomes the queue entry retry limit', async () => {
    const { client } = await server.createUser();
    const byDefault = await create(client, { type: 'held' });
    expect(byDefault.maxAttempts).toBe(2);
    const chosen = await create(client, { type: 'held', maxAttempts: 7, priority: 4 });
    expect(chosen.maxAttempts).toBe(7);
    const [entry] = await queueEntriesOf(chosen.id);
    expect(entry).toMatchObject({ name: 'held', state: 'created', retry_limit: 6, priority: 4 });
    const [defaultEntry] = await queueEntriesOf(byDefault.id);
    expect(defaultEntry!.retry_limit).toBe(1);
  });

  test('a worker account cannot submit jobs, and a call without credentials is Unauthenticated', async () => {
    const { client: worker } = await server.createUser({ role: Role.WORKER });
    await expectConnectError(worker.jobs.createJob({ type: 'noop' }), Code.PermissionDenied);
    await expectConnectError(server.client().jobs.createJob({ type: 'noop' }), Code.Unauthenticated);
    await expectConnectError(server.client().jobs.listJobs({}), Code.Unauthenticated);
  });
});

describe('WatchJob', () => {
  test('WatchJob sends the current state, then every change, and ends after the final state', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'waiter' });
    const seen: { status: JobStatus; kind: JobEventKind; cancelRequested: boolean }[] = [];
    let cancelSent = false;
    for await (const message of client.jobs.watchJob({ id: job.id }, { signal: AbortSignal.timeout(10_000) })) {
      if (message.kind === JobEventKind.HEARTBEAT) continue;
      seen.push({ status: message.job!.status, kind: message.kind, cancelRequested: message.job!.cancelRequested });
      if (message.job!.status === JobStatus.RUNNING && !cancelSent) {
        cancelSent = true;
        await client.jobs.cancelJob({ id: job.id });
      }
    }
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.at(-1)!.status).toBe(JobStatus.CANCELLED);
    expect(seen.map((state) => state.status)).toContain(JobStatus.RUNNING);
    // Never back to an earlier status.
    const order: JobStatus[] = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLED];
    const ranks = seen.map((state) => order.indexOf(state.status));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));

    // On a finished job: one message, then the end.
    const replay: JobStatus[] = [];
    for await (const message of client.jobs.watchJob({ id: job.id }, { signal: AbortSignal.timeout(5000) })) replay.push(message.job!.status);
    expect(replay).toEqual([JobStatus.CANCELLED]);
  });
});

describe('transactional enqueue and BatchCreateJobs', () => {
  test('every created job has exactly one pg-boss entry in its queue, whose id is jobs.queue_job_id', async () => {
    const { user, client } = await server.createUser();
    await create(client, { type: 'noop' });
    await create(client, { type: 'sleep', params: { seconds: 0 } });
    await create(client, { type: 'held', priority: 7 });
    await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 0 }, maxAttempts: 5 });
    const { jobs } = await client.jobs.batchCreateJobs({
      requests: [
        { type: 'held', name: 'b1' },
        { type: 'echo', name: 'b2', params: { message: 'hi' } },
        { type: 'held', name: 'b3', priority: -3 },
      ],
    });
    expect(jobs.map((job) => job.name)).toEqual(['b1', 'b2', 'b3']);
    const rows = await server.query<{ id: string; type: string; priority: number; max_attempts: number; queue_job_id: string; entries: number; entry_name: string | null; entry_priority: number | null; entry_retry_limit: number | null }>(
      `select j.id, j.type, j.priority, j.max_attempts, j.queue_job_id,
              (select count(*)::int from pgboss.job b where b.data->>'jobId' = j.id::text) as entries,
              e.name as entry_name, e.priority as entry_priority, e.retry_limit as entry_retry_limit
         from jobs j left join pgboss.job e on e.id = j.queue_job_id
        where j.owner_id = $1`,
      [user.id],
    );
    expect(rows).toHaveLength(7);
    for (const row of rows) {
      expect(row.queue_job_id, `queue entry of ${row.type} job`).not.toBeNull();
      expect(row.entries, `queue entries of ${row.type} job`).toBe(1);
      expect(row.entry_name).toBe(row.type);
      expect(row.entry_priority).toBe(row.priority);
      expect(row.entry_retry_limit).toBe(row.max_attempts - 1);
    }
    const created = await server.countRows(`select count(*)::int as n from events where owner_id = $1 and kind = 'job.created'`, [user.id]);
    expect(created).toBe(7);
  });

  test('a batch whose third request is bad creates nothing and names `requests[2].…`', async () => {
    const { user, client } = await server.createUser();
    const before = await writes(user.id);
    const error = await expectConnectError(
      client.jobs.batchCreateJobs({
        requests: [
          { type: 'held', name: 'first' },
          { type: 'noop', name: 'second' },
          { type: 'sleep', params: { seconds: -1 } },
        ],
      }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['requests[2].params.seconds']);
    const badType = await expectConnectError(client.jobs.batchCreateJobs({ requests: [{ type: 'noop' }, { type: 'nope' }] }), Code.InvalidArgument);
    expect(violatedFields(badType)).toEqual(['requests[1].type']);
    const badLabel = await expectConnectError(client.jobs.batchCreateJobs({ requests: [{ type: 'noop', labels: { Bad: 'x' } }] }), Code.InvalidArgument);
    expect(violatedFields(badLabel)).toEqual(['requests[0].labels.Bad']);
    const empty = await expectConnectError(client.jobs.batchCreateJobs({ requests: [] }), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['requests']);
    expect(await writes(user.id)).toEqual(before);
  });

  test('a batch that fails inside its transaction leaves neither job rows, events nor queue entries', async () => {
    const { user, client } = await server.createUser();
    // Fault injection in this test's own database: the third job's insert fails at commit,
    // after the first two jobs have been inserted and sent to pg-boss in the same transaction.
    const poison = `poison-${randomHex()}`;
    const fn = `reject_${randomHex()}`;
    await server.query(`create function ${fn}() returns trigger language plpgsql as $$
      begin if new.name = '${poison}' then raise exception 'poisoned job'; end if; return new; end $$`);
    await server.query(`create trigger ${fn} before insert on jobs for each row execute function ${fn}()`);
    try {
      const before = await writes(user.id);
      const error = await expectConnectError(
        client.jobs.batchCreateJobs({
          requests: [
            { type: 'noop', name: 'first' },
            { type: 'held', name: 'second' },
            { type: 'noop', name: poison },
          ],
        }),
        Code.Internal,
      );
      expect(error.rawMessage).not.toMatch(/insert|poison|select|jobs/i);
      expect(await writes(user.id)).toEqual(before);
      // Nothing was queued for the first two either (they would have run by now).
      await sleep(300);
      expect(await writes(user.id)).toEqual(before);
      expect(await server.countRows(`select count(*)::int as n from pgboss.job where created_on > now() - interval '1 minute' and name = 'noop' and data->>'jobId' not in (select id::text from jobs)`)).toBe(0);
    } finally {
      await server.query(`drop trigger if exists ${fn} on jobs`);
      await server.query(`drop function if exists ${fn}()`);
    }
    // The same batch without the poison goes through whole.
    const { jobs } = await client.jobs.batchCreateJobs({ requests: [{ type: 'noop', name: 'first' }, { type: 'held', name: 'second' }] });
    expect(jobs).toHaveLength(2);
    for (const job of jobs) expect(await queueEntriesOf(job.id)).toHaveLength(1);
  });
});

describe('idempotency (request_id)', () => {
  test('the same request_id twice returns the first job and writes one row and one queue entry', async () => {
    const { user, client } = await server.createUser();
    const requestId = uniqueName('req');
    const first = await create(client, { type: 'held', name: 'original', requestId });
    const again = await create(client, { type: 'held', name: 'a retry of the call', requestId });
    expect(again.id).toBe(first.id);
    expect(again.name).toBe('original');
    expect(await server.countRows('select count(*)::int as n from jobs where owner_id = $1', [user.id])).toBe(1);
    expect(await queueEntriesOf(first.id)).toHaveLength(1);
    expect(await server.countRows(`select count(*)::int as n from events where subject_id = $1 and kind = 'job.created'`, [first.id])).toBe(1);

    // Within a batch too.
    const { jobs } = await client.jobs.batchCreateJobs({ requests: [{ type: 'held', requestId }, { type: 'held', name: 'new one' }] });
    expect(jobs[0]!.id).toBe(first.id);
    expect(jobs[1]!.id).not.toBe(first.id);
    expect(await server.countRows('select count(*)::int as n from jobs where owner_id = $1', [user.id])).toBe(2);
  });

  test('concurrent calls with the same request_id all get the one job', async () => {
    const { user, client } = await server.createUser();
    const requestId = uniqueName('race');
    const replies = await Promise.all(Array.from({ length: 5 }, () => client.jobs.createJob({ type: 'held', requestId })));
    const ids = new Set(replies.map((reply) => reply.job!.id));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    expect(await server.countRows('select count(*)::int as n from jobs where owner_id = $1', [user.id])).toBe(1);
    expect(await queueEntriesOf(id!)).toHaveLength(1);
  });

  test('another caller with the same request_id gets a job of its own', async () => {
    const one = await server.createUser();
    const two = await server.createUser();
    const requestId = uniqueName('shared');
    const first = await create(one.client, { type: 'held', requestId });
    const second = await create(two.client, { type: 'held', requestId });
    expect(second.id).not.toBe(first.id);
    expect(second.ownerId).toBe(two.user.id);
    expect(await server.countRows('select count(*)::int as n from jobs where request_id = $1', [requestId])).toBe(2);
  });

  test('after the 24 hour window the same request_id creates a new job', async () => {
    const { user, client } = await server.createUser();
    const requestId = uniqueName('old');
    const first = await create(client, { type: 'held', requestId });
    await server.query(`update jobs set created_at = now() - interval '25 hours' where id = $1`, [first.id]);
    const second = await create(client, { type: 'held', requestId });
    expect(second.id).not.toBe(first.id);
    expect(await server.countRows('select count(*)::int as n from jobs where owner_id = $1', [user.id])).toBe(2);
    expect((await jobRowOf(first.id))!.request_id).toBeNull();
    expect((await jobRowOf(second.id))!.request_id).toBe(requestId);
    expect(await queueEntriesOf(second.id)).toHaveLength(1);
    // Inside its window the new one is what the key now returns.
    expect((await create(client, { type: 'held', requestId })).id).toBe(second.id);
  });
});

describe('scheduling', () => {
  test('a job with run_after in the future stays QUEUED until then, then runs', async () => {
    const { client } = await server.createUser();
    const runAfter = new Date(Date.now() + 1500);
    const job = await create(client, { type: 'noop', runAfter: timestampFromDate(runAfter) });
    expect(job.status).toBe(JobStatus.QUEUED);
    expect(timestampDate(job.runAfter!).getTime()).toBe(runAfter.getTime());
    const [entry] = await queueEntriesOf(job.id);
    expect(new Date(entry!.start_after).getTime()).toBe(runAfter.getTime());

    await sleep(Math.max(0, runAfter.getTime() - Date.now() - 300));
    const early = (await client.jobs.getJob({ id: job.id })).job!;
    expect(early.status).toBe(JobStatus.QUEUED);
    expect(early.attempt).toBe(0);
    expect(early.startTime).toBeUndefined();

    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED, Math.max(0, runAfter.getTime() - Date.now()) + pollSlackMs);
    expect(timestampDate(done.startTime!).getTime()).toBeGreaterThanOrEqual(runAfter.getTime());
  });

  test('ListQueuedJobs of a paused queue orders by priority, then age', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const ids: string[] = [];
    try {
      const a = await create(client, { type: 'sleep', params: { seconds: 0 }, priority: 0 });
      const b = await create(client, { type: 'sleep', params: { seconds: 0 }, priority: 5 });
      const c = await create(client, { type: 'sleep', params: { seconds: 0 }, priority: 5 });
      const d = await create(client, { type: 'sleep', params: { seconds: 0 }, priority: -1 });
      ids.push(a.id, b.id, c.id, d.id);
      const { jobs } = await client.queue.listQueuedJobs({ queue: 'sleep' });
      expect(jobs.map((job) => job.id)).toEqual([b.id, c.id, a.id, d.id]);
      for (const job of [a, b, c, d]) {
        const entries = await queueEntriesOf(job.id);
        expect(entries.at(-1)!.priority).toBe(job.priority);
      }
    } finally {
      for (const id of ids) await client.jobs.cancelJob({ id }).catch(() => undefined);
      await admin.queue.resumeQueue({ queue: 'sleep' });
    }
  });
});

describe('GetJob and ListJobs', () => {
  let owner: TestUser;
  let other: TestUser;
  /** A: held, B: held, C: held, D: echo (SUCCEEDED), created in this order. */
  let a: Job;
  let b: Job;
  let c: Job;
  let d: Job;
  let othersJob: Job;

  beforeAll(async () => {
    owner = await server.createUser();
    other = await server.createUser();
    a = await create(owner.client, { type: 'held', name: 'Nightly Backup', labels: { project: 'apollo', tier: 'gold' }, priority: 1 });
    await sleep(5);
    b = await create(owner.client, { type: 'held', name: 'nightly report', labels: { project: 'gemini' }, priority: 3 });
    await sleep(5);
    c = await create(owner.client, { type: 'held', name: 'cleanup', params: { note: 'Zebra Crossing' }, priority: 3 });
    await sleep(5);
    d = await create(owner.client, { type: 'echo', name: 'echo run', labels: { project: 'apollo' }, params: { message: 'Mercury' }, priority: -2 });
    othersJob = await create(other.client, { type: 'held', name: 'Nightly Backup', labels: { project: 'apollo' } });
    await waitForStatus(owner.client, d.id, JobStatus.SUCCEEDED);
  });

  const ids = (...jobs: Job[]) => jobs.map((job) => job.id);
  const list = (request: Parameters<YardmasterClient['jobs']['listJobs']>[0], client = owner.client) => listAll(client, { pageSize: 1000, ...request });

  test('GetJob returns the caller own job; a bad id is InvalidArgument; an unknown one NotFound', async () => {
    const { job } = await owner.client.jobs.getJob({ id: a.id });
    expect(job).toMatchObject({ id: a.id, name: 'Nightly Backup', priority: 1, labels: { project: 'apollo', tier: 'gold' }, status: JobStatus.QUEUED });
    const bad = await expectConnectError(owner.client.jobs.getJob({ id: 'not-a-uuid' }), Code.InvalidArgument);
    expect(violatedFields(bad)).toEqual(['id']);
    const empty = await expectConnectError(owner.client.jobs.getJob({ id: '' }), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['id']);
    await expectConnectError(owner.client.jobs.getJob({ id: '01a20540-c425-76c3-9669-8051ead8987d' }), Code.NotFound);
  });

  test('a user never sees another user job: GetJob is NotFound, exactly as for a job that does not exist', async () => {
    const foreign = await expectConnectError(other.client.jobs.getJob({ id: a.id }), Code.NotFound);
    const missing = await expectConnectError(other.client.jobs.getJob({ id: '01a20540-c425-76c3-9669-8051ead8987d' }), Code.NotFound);
    expect(foreign.rawMessage).toBe(missing.rawMessage);
    await expectConnectError(owner.client.jobs.getJob({ id: othersJob.id }), Code.NotFound);
  });

  test('ListJobs lists only the caller jobs; filter.owner_id of someone else is InvalidArgument', async () => {
    expect(await list({})).toEqual(ids(d, c, b, a));
    expect(await list({}, other.client)).toEqual(ids(othersJob));
    expect(await list({ filter: { ownerId: owner.user.id } })).toEqual(ids(d, c, b, a));
    const foreign = await expectConnectError(owner.client.jobs.listJobs({ filter: { ownerId: other.user.id } }), Code.InvalidArgument);
    expect(violatedFields(foreign)).toEqual(['filter.owner_id']);
    const notUuid = await expectConnectError(owner.client.jobs.listJobs({ filter: { ownerId: 'someone' } }), Code.InvalidArgument);
    expect(violatedFields(notUuid)).toEqual(['filter.owner_id']);
  });

  test('an admin sees every job and can filter by owner_id', async () => {
    expect((await admin.jobs.getJob({ id: a.id })).job!.ownerId).toBe(owner.user.id);
    const all = await list({}, admin);
    expect(all).toEqual(expect.arrayContaining([...ids(a, b, c, d), othersJob.id]));
    expect(await list({ filter: { ownerId: owner.user.id } }, admin)).toEqual(ids(d, c, b, a));
    expect(await list({ filter: { ownerId: other.user.id } }, admin)).toEqual(ids(othersJob));
  });

  test('filters: statuses, types, labels, created range', async () => {
    expect(await list({ filter: { statuses: [JobStatus.SUCCEEDED] } })).toEqual(ids(d));
    expect(await list({ filter: { statuses: [JobStatus.QUEUED] } })).toEqual(ids(c, b, a));
    expect(await list({ filter: { statuses: [JobStatus.QUEUED, JobStatus.SUCCEEDED] } })).toEqual(ids(d, c, b, a));
    expect(await list({ filter: { statuses: [JobStatus.FAILED] } })).toEqual([]);
    expect(await list({ filter: { types: ['echo'] } })).toEqual(ids(d));
    expect(await list({ filter: { types: ['held', 'echo'] } })).toEqual(ids(d, c, b, a));
    expect(await list({ filter: { types: ['noop'] } })).toEqual([]);
    expect(await list({ filter: { labels: { project: 'apollo' } } })).toEqual(ids(d, a));
    expect(await list({ filter: { labels: { project: 'apollo', tier: 'gold' } } })).toEqual(ids(a));
    expect(await list({ filter: { labels: { project: 'gemini', tier: 'gold' } } })).toEqual([]);
    expect(await list({ filter: { createdAfter: b.createTime } })).toEqual(ids(d, c, b));
    expect(await list({ filter: { createdBefore: b.createTime } })).toEqual(ids(a));
    expect(await list({ filter: { createdAfter: b.createTime, createdBefore: d.createTime } })).toEqual(ids(c, b));
    expect(await list({ filter: { statuses: [JobStatus.QUEUED], labels: { project: 'apollo' } } })).toEqual(ids(a));
  });

  test('search matches every word in name, label values and params values, case-insensitively', async () => {
    expect(await list({ filter: { search: 'nightly' } })).toEqual(ids(b, a));
    expect(await list({ filter: { search: 'NIGHTLY' } })).toEqual(ids(b, a));
    expect(await list({ filter: { search: 'nightly APOLLO' } })).toEqual(ids(a));
    expect(await list({ filter: { search: 'gemini' } })).toEqual(ids(b));
    expect(await list({ filter: { search: 'zebra' } })).toEqual(ids(c));
    expect(await list({ filter: { search: '  crossing   ZEBRA ' } })).toEqual(ids(c));
    expect(await list({ filter: { search: 'mercury' } })).toEqual(ids(d));
    expect(await list({ filter: { search: 'gold backup' } })).toEqual(ids(a));
    expect(await list({ filter: { search: 'nightly zebra' } })).toEqual([]);
    expect(await list({ filter: { search: 'back' } })).toEqual(ids(a));
    expect(await list({ filter: { search: '%' } })).toEqual([]);
    // The other user's "Nightly Backup" is never found.
    expect(await list({ filter: { search: 'nightly backup' } })).toEqual(ids(a));
  });

  test('order_by: create_time desc (default), create_time, priority desc; anything else is InvalidArgument', async () => {
    expect(await list({})).toEqual(ids(d, c, b, a));
    expect(await list({ orderBy: 'create_time desc' })).toEqual(ids(d, c, b, a));
    expect(await list({ orderBy: 'create_time' })).toEqual(ids(a, b, c, d));
    expect(await list({ orderBy: 'priority desc' })).toEqual(ids(b, c, a, d));
    for (const orderBy of ['priority', 'name', 'create_time; drop table jobs']) {
      const error = await expectConnectError(owner.client.jobs.listJobs({ orderBy }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['order_by']);
    }
  });

  test('keyset pages of 2 visit every job exactly once, in every order', async () => {
    const user = await server.createUser();
    for (const priority of [0, 4, -1, 4, 2]) await create(user.client, { type: 'held', priority });
    for (const orderBy of ['', 'create_time', 'priority desc']) {
      const whole = (await user.client.jobs.listJobs({ pageSize: 1000, orderBy })).jobs.map((job) => job.id);
      expect(whole).toHaveLength(5);
      const paged: string[] = [];
      const sizes: number[] = [];
      let pageToken = '';
      do {
        const reply = await user.client.jobs.listJobs({ pageSize: 2, orderBy, pageToken });
        paged.push(...reply.jobs.map((job) => job.id));
        sizes.push(reply.jobs.length);
        pageToken = reply.nextPageToken;
      } while (pageToken !== '' && sizes.length < 10);
      expect(sizes, `pages for order "${orderBy}"`).toEqual([2, 2, 1]);
      expect(paged).toEqual(whole);
      expect(new Set(paged).size).toBe(5);
    }
  });

  test('changing the filter or the order between pages is InvalidArgument `page_token`', async () => {
    const first = await owner.client.jobs.listJobs({ pageSize: 2, filter: { types: ['held'] } });
    expect(first.nextPageToken).not.toBe('');
    const otherFilter = await expectConnectError(owner.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['echo'] } }), Code.InvalidArgument);
    expect(violatedFields(otherFilter)).toEqual(['page_token']);
    const otherOrder = await expectConnectError(owner.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['held'] }, orderBy: 'priority desc' }), Code.InvalidArgument);
    expect(violatedFields(otherOrder)).toEqual(['page_token']);
    const garbage = await expectConnectError(owner.client.jobs.listJobs({ pageToken: 'not-a-token' }), Code.InvalidArgument);
    expect(violatedFields(garbage)).toEqual(['page_token']);
    // Another user cannot use the owner's token either.
    const stolen = await expectConnectError(other.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['held'] } }), Code.InvalidArgument);
    expect(violatedFields(stolen)).toEqual(['page_token']);
    // The same filter continues.
    const second = await owner.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['held'] } });
    expect(second.jobs.map((job) => job.id)).toEqual(ids(a));
    const negative = await expectConnectError(owner.client.jobs.listJobs({ pageSize: -1 }), Code.InvalidArgument);
    expect(violatedFields(negative)).toEqual(['page_size']);
  });
});

describe('UpdateJob', () => {
  test('name and labels change as the mask says; fields outside the mask stay; search finds the new name', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'held', name: 'before rename', labels: { a: '1' }, priority: 1 });
    const { job: updated } = await client.jobs.updateJob({
      job: { id: job.id, name: 'Renamed Quokka', labels: { b: '2' }, priority: 50 },
      updateMask: { paths: ['name', 'labels'] },
    });
    expect(updated).toMatchObject({ id: job.id, name: 'Renamed Quokka', labels: { b: '2' }, priority: 1, status: JobStatus.QUEUED });
    expect((await client.jobs.getJob({ id: job.id })).job).toMatchObject({ name: 'Renamed Quokka', labels: { b: '2' }, priority: 1 });
    expect(timestampDate(updated!.updateTime!).getTime()).toBeGreaterThanOrEqual(timestampDate(job.updateTime!).getTime());
    expect((await client.jobs.listJobs({ filter: { search: 'quokka' } })).jobs.map((found) => found.id)).toEqual([job.id]);
    expect((await client.jobs.listJobs({ filter: { search: 'rename' } })).jobs.map((found) => found.id)).toEqual([job.id]);
    expect((await client.jobs.listJobs({ filter: { search: 'before' } })).jobs).toEqual([]);
    expect((await client.jobs.listJobs({ filter: { labels: { b: '2' } } })).jobs.map((found) => found.id)).toEqual([job.id]);
    expect((await client.jobs.listJobs({ filter: { labels: { a: '1' } } })).jobs).toEqual([]);
    expect((await jobRowOf(job.id))!.priority).toBe(1);

    const events = await eventsOf(job.id);
    expect(events.map((event) => event.kind)).toEqual(['job.created', 'job.updated']);
    expect(events[1]!.payload).toMatchObject({ name: 'Renamed Quokka', labels: { b: '2' }, version: 2 });

    const audited = await server.query<{ target: string; outcome: string }>(`select target, outcome from audit_events where action = $1 and target = $2`, [
      'yardmaster.v1.JobsService.UpdateJob',
      job.id,
    ]);
    expect(audited).toEqual([{ target: job.id, outcome: 'success' }]);
  });

  test('the priority changes while QUEUED, in the pg-boss entry too; on a finished job it is FailedPrecondition JOB_NOT_QUEUED', async () => {
    const { client } = await server.createUser();
    const queued = await create(client, { type: 'held', priority: 1 });
    const { job: raised } = await client.jobs.updateJob({ job: { id: queued.id, priority: 9 }, updateMask: { paths: ['priority'] } });
    expect(raised!.priority).toBe(9);
    expect((await jobRowOf(queued.id))!.priority).toBe(9);
    const entries = await queueEntriesOf(queued.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ id: (await jobRowOf(queued.id))!.queue_job_id, priority: 9, state: 'created' });

    const finished = await create(client, { type: 'noop', priority: 1 });
    await waitForStatus(client, finished.id, JobStatus.SUCCEEDED);
    await expectConnectError(client.jobs.updateJob({ job: { id: finished.id, priority: 5 }, updateMask: { paths: ['priority'] } }), Code.FailedPrecondition, 'JOB_NOT_QUEUED');
    await expectConnectError(
      client.jobs.updateJob({ job: { id: finished.id, priority: 5, name: 'x' }, updateMask: { paths: ['name', 'priority'] } }),
      Code.FailedPrecondition,
      'JOB_NOT_QUEUED',
    );
    const after = (await client.jobs.getJob({ id: finished.id })).job!;
    expect(after.priority).toBe(1);
    expect(after.name).toBe('');
    // Name and labels of a finished job can still change.
    const { job: renamed } = await client.jobs.updateJob({ job: { id: finished.id, name: 'done already' }, updateMask: { paths: ['name'] } });
    expect(renamed!.name).toBe('done already');
    expect(renamed!.status).toBe(JobStatus.SUCCEEDED);
  });

  test('an empty mask, an unknown or immutable path, or bad values are InvalidArgument, and nothing changes', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'held', name: 'stays' });
    const empty = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, name: 'x' } }), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['update_mask']);
    const emptyPaths = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, name: 'x' }, updateMask: { paths: [] } }), Code.InvalidArgument);
    expect(violatedFields(emptyPaths)).toEqual(['update_mask']);
    for (const path of ['status', 'type', 'owner_id', 'nonsense']) {
      const error = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, name: 'x' }, updateMask: { paths: ['name', path] } }), Code.InvalidArgument);
      expect(violatedFields(error), path).toEqual(['update_mask']);
    }
    const badLabel = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, labels: { Bad: 'x' } }, updateMask: { paths: ['labels'] } }), Code.InvalidArgument);
    expect(violatedFields(badLabel)).toEqual(['job.labels.Bad']);
    const badPriority = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, priority: 200 }, updateMask: { paths: ['priority'] } }), Code.InvalidArgument);
    expect(violatedFields(badPriority)).toEqual(['job.priority']);
    const longName = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, name: 'n'.repeat(201) }, updateMask: { paths: ['name'] } }), Code.InvalidArgument);
    expect(violatedFields(longName)).toEqual(['job.name']);
    const noId = await expectConnectError(client.jobs.updateJob({ job: { name: 'x' }, updateMask: { paths: ['name'] } }), Code.InvalidArgument);
    expect(violatedFields(noId)).toEqual(['job.id']);
    expect((await client.jobs.getJob({ id: job.id })).job!.name).toBe('stays');
    expect((await eventsOf(job.id)).map((event) => event.kind)).toEqual(['job.created']);
  });

  test('another user job is NotFound and stays unchanged', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const job = await create(owner.client, { type: 'held', name: 'mine', priority: 2 });
    await expectConnectError(other.client.jobs.updateJob({ job: { id: job.id, name: 'stolen' }, updateMask: { paths: ['name'] } }), Code.NotFound);
    await expectConnectError(other.client.jobs.updateJob({ job: { id: job.id, priority: 9 }, updateMask: { paths: ['priority'] } }), Code.NotFound);
    const row = await jobRowOf(job.id);
    expect(row).toMatchObject({ name: 'mine', priority: 2 });
    expect((await queueEntriesOf(job.id))[0]!.priority).toBe(2);
    // An admin may.
    const { job: byAdmin } = await admin.jobs.updateJob({ job: { id: job.id, name: 'renamed by admin' }, updateMask: { paths: ['name'] } });
    expect(byAdmin!.name).toBe('renamed by admin');
  });
});

describe('CancelJob', () => {
  test('a queued job is CANCELLED at once and its pg-boss entry is cancelled; the call is audited', async () => {
    const { user, client } = await server.createUser();
    const job = await create(client, { type: 'held' });
    const { job: cancelled } = await client.jobs.cancelJob({ id: job.id, reason: 'changed my mind' });
    expect(cancelled).toMatchObject({ status: JobStatus.CANCELLED, cancelReason: 'changed my mind', cancelRequested: false, abandoned: false, attempt: 0 });
    expect(cancelled!.finishTime).toBeDefined();
    expect((await jobRowOf(job.id))!.status).toBe('cancelled');
    expect((await queueEntriesOf(job.id)).map((entry) => entry.state)).toEqual(['cancelled']);
    const audited = await server.query<{ actor_id: string; target: string; outcome: string }>(
      'select actor_id, target, outcome from audit_events where action = $1 and target = $2',
      ['yardmaster.v1.JobsService.CancelJob', job.id],
    );
    expect(audited).toEqual([{ actor_id: user.id, target: job.id, outcome: 'success' }]);
    const last = (await eventsOf(job.id)).at(-1)!;
    expect(last.kind).toBe('job.updated');
    expect(last.payload).toMatchObject({ status: 'cancelled', cancelReason: 'changed my mind' });
  });

  test('a running job gets cancel_requested in the reply and ends CANCELLED within its grace', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'waiter' });
    await waitForStatus(client, job.id, JobStatus.RUNNING);
    const started = Date.now();
    const { job: requested } = await client.jobs.cancelJob({ id: job.id, reason: 'stop it' });
    expect(requested).toMatchObject({ status: JobStatus.RUNNING, cancelRequested: true, cancelReason: 'stop it' });
    const ended = await waitForStatus(client, job.id, JobStatus.CANCELLED, 2000 + 1000);
    expect(Date.now() - started).toBeLessThan(2000 + 1000);
    expect(ended).toMatchObject({ abandoned: false, cancelReason: 'stop it', attempt: 1 });
    expect(ended.finishTime).toBeDefined();
    expect(ended.error).toBeUndefined();
    await eventually(async () => expect((await queueEntriesOf(job.id)).map((entry) => entry.state)).toEqual(['completed']), 3000);
    // A second cancel of the now finished job.
    await expectConnectError(client.jobs.cancelJob({ id: job.id }), Code.FailedPrecondition, 'JOB_FINISHED');
  });

  test('a handler that ignores its signal ends CANCELLED with abandoned=true after the grace', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'stubborn' });
    await waitForStatus(client, job.id, JobStatus.RUNNING);
    const started = Date.now();
    const { job: requested } = await client.jobs.cancelJob({ id: job.id });
    expect(requested!.cancelRequested).toBe(true);
    const ended = await waitForStatus(client, job.id, JobStatus.CANCELLED, 2500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(stubbornGraceMs - 50);
    expect(ended.abandoned).toBe(true);
    expect(ended.result).toBeUndefined();
  });

  test('cancelling a finished job is FailedPrecondition JOB_FINISHED; another user job is NotFound', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const done = await create(owner.client, { type: 'noop' });
    await waitForStatus(owner.client, done.id, JobStatus.SUCCEEDED);
    await expectConnectError(owner.client.jobs.cancelJob({ id: done.id }), Code.FailedPrecondition, 'JOB_FINISHED');
    const queued = await create(owner.client, { type: 'held' });
    await expectConnectError(other.client.jobs.cancelJob({ id: queued.id }), Code.NotFound);
    expect((await jobRowOf(queued.id))!.status).toBe('queued');
    expect((await queueEntriesOf(queued.id))[0]!.state).toBe('created');
    const tooLong = await expectConnectError(owner.client.jobs.cancelJob({ id: queued.id, reason: 'r'.repeat(501) }), Code.InvalidArgument);
    expect(violatedFields(tooLong)).toEqual(['reason']);
    const failures = await server.query<{ outcome: string; error_code: string }>('select outcome, error_code from audit_events where action = $1 and target = $2 and actor_id = $3', [
      'yardmaster.v1.JobsService.CancelJob',
      queued.id,
      other.user.id,
    ]);
    expect(failures).toEqual([{ outcome: 'failure', error_code: expect.stringMatching(/not_found/i) }]);
    // An admin may cancel anyone's job.
    expect((await admin.jobs.cancelJob({ id: queued.id })).job!.status).toBe(JobStatus.CANCELLED);
  });
});

describe('failures and retries', () => {
  test('a handler that fails twice then succeeds ends SUCCEEDED on attempt 3 with the error cleared; its log lines carry their attempts', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 2 } });
    expect(job.maxAttempts).toBe(3);
    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED, 2 * pollSlackMs + 2000);
    expect(done.attempt).toBe(3);
    expect(done.error).toBeUndefined();
    expect(done.result).toEqual({ runs: 3 });
    const entries = await queueEntriesOf(job.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ state: 'completed', retry_count: 2 });
    // Each failed attempt was recorded, then cleared by the success.
    const events = await eventsOf(job.id);
    expect(events.map((event) => `${event.payload['status']}#${event.payload['attempt']}`)).toEqual(['queued#0', 'running#1', 'queued#1', 'running#2', 'queued#2', 'running#3', 'succeeded#3']);
    for (const index of [2, 4]) expect(events[index]!.payload).toMatchObject({ errorCode: 'HANDLER_ERROR', errorMessage: `flaky failure on attempt ${index / 2}` });
    expect(events.at(-1)!.payload).toMatchObject({ errorCode: null, errorMessage: null });
    // One log line per attempt, numbered without gaps.
    const { lines } = await client.jobs.listJobLogs({ id: job.id });
    expect(lines.map((line) => [Number(line.sequence), line.attempt, line.message])).toEqual([
      [1, 1, 'attempt 1'],
      [2, 2, 'attempt 2'],
      [3, 3, 'attempt 3'],
    ]);
  });

  test('a handler that always fails ends FAILED with attempt == max_attempts, HANDLER_ERROR and the thrown message', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 99 } });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED, 2 * pollSlackMs + 2000);
    expect(failed.attempt).toBe(3);
    expect(failed.maxAttempts).toBe(3);
    expect(failed.error).toMatchObject({ code: 'HANDLER_ERROR', message: 'flaky failure on attempt 3' });
    expect(failed.finishTime).toBeDefined();
    expect(failed.result).toBeUndefined();
    const entries = await queueEntriesOf(job.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.state).toBe('failed');
  });

  test('max_attempts chosen at creation bounds the attempts', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 99 }, maxAttempts: 1 });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED);
    expect(failed).toMatchObject({ attempt: 1, maxAttempts: 1 });
    expect(failed.error?.message).toBe('flaky failure on attempt 1');
  });

  test('JobFailure with retryable: false fails at once on attempt 1 even with attempts left', async () => {
    const { client } = await server.createUser();
    const key = uniqueName('k');
    const job = await create(client, { type: 'flaky', params: { key, failures: 0, fatal: true } });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED);
    expect(failed).toMatchObject({ attempt: 1, maxAttempts: 3 });
    expect(failed.error).toMatchObject({ code: 'INVALID_INPUT', message: 'the input can never work' });
    await sleep(300);
    expect(flakyRuns.get(key)).toBe(1);
    expect((await client.jobs.getJob({ id: job.id })).job!.attempt).toBe(1);
    const [entry] = await queueEntriesOf(job.id);
    expect(entry!.state).toBe('failed');
    expect(entry!.retry_count).toBe(0);
  });

  test('a handler running past its timeout fails with DEADLINE_EXCEEDED', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'deadline' });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED, 5000);
    expect(failed.attempt).toBe(1);
    expect(failed.error?.code).toBe('DEADLINE_EXCEEDED');
    expect(failed.abandoned).toBe(false);
    const ranMs = timestampDate(failed.finishTime!).getTime() - timestampDate(failed.startTime!).getTime();
    expect(ranMs).toBeGreaterThanOrEqual(deadlineTimeoutMs - 20);
  });
});

describe('RetryJob', () => {
  test('a FAILED job is QUEUED again with attempt reset and error cleared, under a new queue entry, and runs again', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 1 }, maxAttempts: 1 });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED);
    expect(failed.error).toBeDefined();
    const oldEntry = (await jobRowOf(job.id))!.queue_job_id;

    const { job: retried } = await client.jobs.retryJob({ id: job.id });
    expect(retried).toMatchObject({ status: JobStatus.QUEUED, attempt: 0, maxAttempts: 1, cancelRequested: false, abandoned: false });
    expect(retried!.error).toBeUndefined();
    expect(retried!.finishTime).toBeUndefined();
    expect(retried!.startTime).toBeUndefined();
    const newEntry = (await jobRowOf(job.id))!.queue_job_id;
    expect(newEntry).not.toBe(oldEntry);
    const entries = await queueEntriesOf(job.id);
    expect(entries.map((entry) => entry.id)).toEqual([oldEntry, newEntry]);
    expect(entries[1]).toMatchObject({ name: 'flaky', retry_limit: 0 });

    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(1);
    expect(done.error).toBeUndefined();
    expect(done.result).toEqual({ runs: 2 });
  });

  test('a CANCELLED job runs again', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'waiter' });
    await waitForStatus(client, job.id, JobStatus.RUNNING);
    await client.jobs.cancelJob({ id: job.id, reason: 'first run' });
    await waitForStatus(client, job.id, JobStatus.CANCELLED, 4000);
    const oldEntry = (await jobRowOf(job.id))!.queue_job_id;

    const { job: retried } = await client.jobs.retryJob({ id: job.id });
    expect(retried).toMatchObject({ status: JobStatus.QUEUED, attempt: 0, cancelRequested: false, cancelReason: '' });
    const running = await waitForStatus(client, job.id, JobStatus.RUNNING);
    expect(running.attempt).toBe(1);
    expect(running.finishTime).toBeUndefined();
    const row = await jobRowOf(job.id);
    expect(row!.queue_job_id).not.toBe(oldEntry);
    expect((await queueEntriesOf(job.id)).find((entry) => entry.id === row!.queue_job_id)?.state).toBe('active');

    await client.jobs.cancelJob({ id: job.id });
    await waitForStatus(client, job.id, JobStatus.CANCELLED, 4000);
  });

  test('a queued held job can be cancelled, then retried into its queue again', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'held' });
    await client.jobs.cancelJob({ id: job.id });
    const { job: retried } = await client.jobs.retryJob({ id: job.id });
    expect(retried!.status).toBe(JobStatus.QUEUED);
    const entries = await queueEntriesOf(job.id);
    expect(entries.map((entry) => entry.state)).toEqual(['cancelled', 'created']);
    expect(entries[1]!.id).toBe((await jobRowOf(job.id))!.queue_job_id);
  });

  test('retrying a SUCCEEDED, QUEUED or RUNNING job is FailedPrecondition JOB_NOT_RETRYABLE; another user job is NotFound', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const done = await create(owner.client, { type: 'noop' });
    await waitForStatus(owner.client, done.id, JobStatus.SUCCEEDED);
    await expectConnectError(owner.client.jobs.retryJob({ id: done.id }), Code.FailedPrecondition, 'JOB_NOT_RETRYABLE');
    const queued = await create(owner.client, { type: 'held' });
    await expectConnectError(owner.client.jobs.retryJob({ id: queued.id }), Code.FailedPrecondition, 'JOB_NOT_RETRYABLE');
    expect(await queueEntriesOf(queued.id)).toHaveLength(1);
    const running = await create(owner.client, { type: 'waiter' });
    await waitForStatus(owner.client, running.id, JobStatus.RUNNING);
    await expectConnectError(owner.client.jobs.retryJob({ id: running.id }), Code.FailedPrecondition, 'JOB_NOT_RETRYABLE');
    await owner.client.jobs.cancelJob({ id: running.id });

    const failed = await create(owner.client, { type: 'flaky', params: { key: uniqueName('k'), failures: 0, fatal: true } });
    await waitForStatus(owner.client, failed.id, JobStatus.FAILED);
    await expectConnectError(other.client.jobs.retryJob({ id: failed.id }), Code.NotFound);
    expect((await jobRowOf(failed.id))!.status).toBe('failed');
    await waitForStatus(owner.client, running.id, JobStatus.CANCELLED, 4000);
  });
});

describe('DeleteJob', () => {
  test('a finished job is deleted with its log lines, and a job.deleted event is recorded', async () => {
    const { user, client } = await server.createUser();
    const job = await create(client, { type: 'sleep', params: { seconds: 0 } });
    await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    expect(await server.countRows('select count(*)::int as n from job_log_lines where job_id = $1', [job.id])).toBeGreaterThan(0);

    await client.jobs.deleteJob({ id: job.id });
    await expectConnectError(client.jobs.getJob({ id: job.id }), Code.NotFound);
    expect(await jobRowOf(job.id)).toBeUndefined();
    expect(await server.countRows('select count(*)::int as n from job_log_lines where job_id = $1', [job.id])).toBe(0);
    expect(await queueEntriesOf(job.id)).toEqual([]);
    const deleted = (await eventsOf(job.id)).filter((event) => event.kind === 'job.deleted');
    expect(deleted).toHaveLength(1);
    expect(deleted[0]).toMatchObject({ owner_id: user.id, subject_id: job.id });
    expect(deleted[0]!.payload).toMatchObject({ id: job.id, status: 'succeeded' });
    expect((await client.jobs.listJobs({})).jobs).toEqual([]);
    await expectConnectError(client.jobs.deleteJob({ id: job.id }), Code.NotFound);
    expect(
      await server.countRows('select count(*)::int as n from audit_events where action = $1 and target = $2 and outcome = $3', ['yardmaster.v1.JobsService.DeleteJob', job.id, 'success']),
    ).toBe(1);
  });

  test('a QUEUED or RUNNING job is FailedPrecondition JOB_NOT_FINISHED; another user job is NotFound', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const queued = await create(owner.client, { type: 'held' });
    await expectConnectError(owner.client.jobs.deleteJob({ id: queued.id }), Code.FailedPrecondition, 'JOB_NOT_FINISHED');
    const running = await create(owner.client, { type: 'waiter' });
    await waitForStatus(owner.client, running.id, JobStatus.RUNNING);
    await expectConnectError(owner.client.jobs.deleteJob({ id: running.id }), Code.FailedPrecondition, 'JOB_NOT_FINISHED');
    await owner.client.jobs.cancelJob({ id: running.id });
    await waitForStatus(owner.client, running.id, JobStatus.CANCELLED, 4000);
    await expectConnectError(other.client.jobs.deleteJob({ id: running.id }), Code.NotFound);
    expect(await jobRowOf(queued.id)).toBeDefined();
    expect(await jobRowOf(running.id)).toBeDefined();
    expect(await server.countRows(`select count(*)::int as n from events where kind = 'job.deleted' and subject_id in ($1, $2)`, [queued.id, running.id])).toBe(0);
    // A cancelled job can be deleted.
    await owner.client.jobs.deleteJob({ id: running.id });
    expect(await jobRowOf(running.id)).toBeUndefined();
  });
});

describe('job logs', () => {
  test('sleep writes lines; ListJobLogs returns them numbered 1..n in order with attempt numbers, in pages of 1', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'sleep', params: { seconds: 0 } });
    await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    const { lines, nextPageToken } = await client.jobs.listJobLogs({ id: job.id });
    expect(nextPageToken).toBe('');
    expect(lines.map((line) => [Number(line.sequence), line.message, line.attempt, line.level])).toEqual([
      [1, 'sleeping for 0 s', 1, JobLogLevel.INFO],
      [2, 'done', 1, JobLogLevel.INFO],
    ]);
    for (const line of lines) expect(line.time).toBeDefined();

    const paged: number[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const reply = await client.jobs.listJobLogs({ id: job.id, pageSize: 1, pageToken });
      expect(reply.lines.length).toBeLessThanOrEqual(1);
      paged.push(...reply.lines.map((line) => Number(line.sequence)));
      pageToken = reply.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 10);
    expect(paged).toEqual([1, 2]);

    // StreamJobLogs without follow gives the same lines and ends.
    const streamed: number[] = [];
    for await (const message of client.jobs.streamJobLogs({ id: job.id }, { signal: AbortSignal.timeout(5000) })) streamed.push(...message.lines.map((line) => Number(line.sequence)));
    expect(streamed).toEqual([1, 2]);
    const after: number[] = [];
    for await (const message of client.jobs.streamJobLogs({ id: job.id, afterSequence: 1n }, { signal: AbortSignal.timeout(5000) })) after.push(...message.lines.map((line) => Number(line.sequence)));
    expect(after).toEqual([2]);

    // Another user's job's log is NotFound; an admin reads any.
    const other = await server.createUser();
    await expectConnectError(other.client.jobs.listJobLogs({ id: job.id }), Code.NotFound);
    await expectConnectError(
      (async () => {
        for await (const _message of other.client.jobs.streamJobLogs({ id: job.id }, { signal: AbortSignal.timeout(5000) }));
      })(),
      Code.NotFound,
    );
    expect((await admin.jobs.listJobLogs({ id: job.id })).lines).toHaveLength(2);
  });
});

describe('GetJobStats', () => {
  test('counts by status and type cover only the caller jobs, with durations and finished_last_hour', async () => {
    const { user, client } = await server.createUser();
    const other = await server.createUser();

    const empty = await client.jobs.getJobStats({});
    expect(empty.total).toBe(0n);
    expect(empty.countsByStatus).toEqual({});
    expect(empty.types).toEqual([]);
    expect(empty.durationP50).toBeUndefined();
    expect(empty.durationP95).toBeUndefined();
    expect(empty.finishedLastHour).toBe(0n);

    const noops = [await create(client, { type: 'noop' }), await create(client, { type: 'noop' })];
    const fatal = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 0, fatal: true } });
    await create(client, { type: 'held' });
    const others = [await create(other.client, { type: 'noop' }), await create(other.client, { type: 'held' })];
    for (const job of noops) await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    await waitForStatus(client, fatal.id, JobStatus.FAILED);
    await waitForStatus(other.client, others[0]!.id, JobStatus.SUCCEEDED);

    const stats = await client.jobs.getJobStats({});
    expect(stats.total).toBe(4n);
    expect(stats.countsByStatus).toEqual({ JOB_STATUS_SUCCEEDED: 2n, JOB_STATUS_FAILED: 1n, JOB_STATUS_QUEUED: 1n });
    expect(stats.types.map((type) => [type.type, type.countsByStatus])).toEqual([
      ['flaky', { JOB_STATUS_FAILED: 1n }],
      ['held', { JOB_STATUS_QUEUED: 1n }],
      ['noop', { JOB_STATUS_SUCCEEDED: 2n }],
    ]);
    expect(stats.durationP50).toBeDefined();
    expect(stats.durationP95).toBeDefined();
    const ms = (duration: { seconds: bigint; nanos: number }) => Number(duration.seconds) * 1000 + duration.nanos / 1e6;
    expect(ms(stats.durationP95!)).toBeGreaterThanOrEqual(ms(stats.durationP50!));
    expect(ms(stats.durationP95!)).toBeLessThan(10_000);
    expect(stats.finishedLastHour).toBe(3n);
    expect(stats.throughputPerMinute).toBeCloseTo(3 / 15, 5);

    const noopOnly = await client.jobs.getJobStats({ filter: { types: ['noop'] } });
    expect(noopOnly.total).toBe(2n);
    expect(noopOnly.countsByStatus).toEqual({ JOB_STATUS_SUCCEEDED: 2n });
    const failedOnly = await client.jobs.getJobStats({ filter: { statuses: [JobStatus.FAILED] } });
    expect(failedOnly.total).toBe(1n);

    const otherStats = await other.client.jobs.getJobStats({});
    expect(otherStats.total).toBe(2n);
    expect(otherStats.countsByStatus).toEqual({ JOB_STATUS_SUCCEEDED: 1n, JOB_STATUS_QUEUED: 1n });

    const foreign = await expectConnectError(client.jobs.getJobStats({ filter: { ownerId: other.user.id } }), Code.InvalidArgument);
    expect(violatedFields(foreign)).toEqual(['filter.owner_id']);
    const byAdmin = await admin.jobs.getJobStats({ filter: { ownerId: user.id } });
    expect(byAdmin.total).toBe(4n);
    const everything = await admin.jobs.getJobStats({});
    expect(everything.total).toBe(BigInt(await server.countRows('select count(*)::int as n from jobs')));
  });
});

describe('events', () => {
  test('every transition of a job writes an event with its owner and a strictly increasing version; the sequencer numbers them all', async () => {
    const { user, client } = await server.createUser();
    const job = await create(client, { type: 'sleep', params: { seconds: 1 } });
    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED, 8000);
    expect(done.progress?.percent).toBe(100);

    const events = await eventsOf(job.id);
    expect(events[0]!.kind).toBe('job.created');
    expect(events.slice(1).every((event) => event.kind === 'job.updated')).toBe(true);
    for (const event of events) {
      expect(event.owner_id).toBe(user.id);
      expect(event.payload['id']).toBe(job.id);
      expect(event.payload['ownerId']).toBe(user.id);
    }
    const versions = events.map((event) => Number(event.payload['version']));
    expect(versions[0]).toBe(1);
    for (let i = 1; i < versions.length; i++) expect(versions[i], `version of event ${i}`).toBeGreaterThan(versions[i - 1]!);
    const statuses = events.map((event) => event.payload['status']);
    expect(statuses[0]).toBe('queued');
    expect(statuses).toContain('running');
    expect(statuses.at(-1)).toBe('succeeded');
    // The progress report of the running attempt.
    expect(events.some((event) => event.payload['status'] === 'running' && Number(event.payload['progressPercent']) > 0)).toBe(true);
    expect(events.length).toBeGreaterThanOrEqual(4);

    await server.app.sequencer.flush();
    const sequenced = await eventsOf(job.id);
    const sequences = sequenced.map((event) => Number(event.sequence));
    for (const [i, sequence] of sequences.entries()) {
      expect(sequence, `sequence of event ${sequenced[i]!.id}`).toBeGreaterThan(0);
      if (i > 0) expect(sequence).toBeGreaterThan(sequences[i - 1]!);
    }
    expect(await server.countRows('select count(*)::int as n from events where sequence is null')).toBe(0);
    expect(await server.countRows('select count(*)::int as n from (select sequence from events group by sequence having count(*) > 1) dupes')).toBe(0);
    const [positions] = await server.query<{ last_sequence: string }>('select last_sequence from event_positions where id = 1');
    expect(Number(positions!.last_sequence)).toBe(await server.countRows('select max(sequence)::int as n from events'));
  });
});

describe('AdminService.GetMetrics', () => {
  test('jobs_by_status counts every job by JOB_STATUS_ name', async () => {
    const { client } = await server.createUser();
    const held = await create(client, { type: 'held' });
    const cancelled = await create(client, { type: 'held' });
    await client.jobs.cancelJob({ id: cancelled.id });
    expect(held.status).toBe(JobStatus.QUEUED);
    await eventually(
      async () => {
        const { jobsByStatus } = await admin.admin.getMetrics({});
        const rows = await server.query<{ status: string; n: number }>('select status, count(*)::int as n from jobs group by status');
        expect(jobsByStatus).toEqual(Object.fromEntries(rows.map((row) => [`JOB_STATUS_${row.status.toUpperCase()}`, BigInt(row.n)])));
        expect(jobsByStatus['JOB_STATUS_QUEUED']).toBeGreaterThanOrEqual(1n);
        expect(jobsByStatus['JOB_STATUS_CANCELLED']).toBeGreaterThanOrEqual(1n);
      },
      5000,
      100,
    );
    await expectConnectError(client.admin.getMetrics({}), Code.PermissionDenied);
  });
});

describe('over gRPC', () => {
  test('CreateJob and GetJob work over gRPC, errors included', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const { job } = await grpc.jobs.createJob({ type: 'noop', name: 'over grpc', labels: { via: 'grpc' } });
    expect(job).toMatchObject({ name: 'over grpc', labels: { via: 'grpc' }, ownerId: user.id });
    const done = await waitForStatus(grpc, job!.id, JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(1);
    const bad = await expectConnectError(grpc.jobs.createJob({ type: 'sleep', params: { seconds: 'x' } }), Code.InvalidArgument);
    expect(violatedFields(bad)).toEqual(['params.seconds']);
    await expectConnectError(grpc.jobs.getJob({ id: '01a20540-c425-76c3-9669-8051ead8987d' }), Code.NotFound);
  });
});
