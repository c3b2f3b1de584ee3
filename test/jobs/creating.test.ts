/**
 * JobsService CreateJob, BatchCreateJobs (transactional enqueue), idempotency by request_id, and scheduling.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { expectConnectError, randomHex, uniqueName, violatedFields } from '../support/assertions.ts';
import {
  server,
  admin,
  pollSlackMs,
  type CreateJobInit,
  waitForStatus,
  create,
  queueEntriesOf,
  jobRowOf,
  writes,
  useJobsServer,
} from './support.ts';

useJobsServer();

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
      const tooBig = await expectConnectError(
        client.jobs.createJob({ type: 'echo', params: { message: 'x'.repeat(2000) } }),
        Code.InvalidArgument,
      );
      expect(violatedFields(tooBig)).toEqual(['params']);
      // Too big is reported alone: the schema does not even look at it.
      const tooBigAndBad = await expectConnectError(
        client.jobs.createJob({ type: 'sleep', params: { seconds: -1, pad: 'x'.repeat(2000) } }),
        Code.InvalidArgument,
      );
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
    const job = await create(client, {
      type: 'held',
      labels,
      priority: 100,
      maxAttempts: 20,
      requestId: 'r'.repeat(128),
      name: 'n'.repeat(200),
    });
    expect(Object.keys(job.labels)).toHaveLength(32);
    expect(job.priority).toBe(100);
    expect(job.maxAttempts).toBe(20);
    expect((await create(client, { type: 'held', priority: -100 })).priority).toBe(-100);
  });

  test("input_file_ids must suit the job type: none for noop, and only the caller's available files for checksum", async () => {
    const { user, client } = await server.createUser();
    const before = await writes(user.id);
    const unknownFile = '01a20540-c425-76c3-9669-8051ead8987d';
    const forNoop = await expectConnectError(client.jobs.createJob({ type: 'noop', inputFileIds: [unknownFile] }), Code.InvalidArgument);
    expect(violatedFields(forNoop)).toEqual(['input_file_ids']);
    const missing = await expectConnectError(
      client.jobs.createJob({ type: 'checksum', inputFileIds: [unknownFile, 'not-a-uuid'] }),
      Code.InvalidArgument,
    );
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
    const rows = await server.query<{
      id: string;
      type: string;
      priority: number;
      max_attempts: number;
      queue_job_id: string;
      entries: number;
      entry_name: string | null;
      entry_priority: number | null;
      entry_retry_limit: number | null;
    }>(
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
    const badType = await expectConnectError(
      client.jobs.batchCreateJobs({ requests: [{ type: 'noop' }, { type: 'nope' }] }),
      Code.InvalidArgument,
    );
    expect(violatedFields(badType)).toEqual(['requests[1].type']);
    const badLabel = await expectConnectError(
      client.jobs.batchCreateJobs({ requests: [{ type: 'noop', labels: { Bad: 'x' } }] }),
      Code.InvalidArgument,
    );
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
      expect(
        await server.countRows(
          `select count(*)::int as n from pgboss.job where created_on > now() - interval '1 minute' and name = 'noop' and data->>'jobId' not in (select id::text from jobs)`,
        ),
      ).toBe(0);
    } finally {
      await server.query(`drop trigger if exists ${fn} on jobs`);
      await server.query(`drop function if exists ${fn}()`);
    }
    // The same batch without the poison goes through whole.
    const { jobs } = await client.jobs.batchCreateJobs({
      requests: [
        { type: 'noop', name: 'first' },
        { type: 'held', name: 'second' },
      ],
    });
    expect(jobs).toHaveLength(2);
    for (const job of jobs) expect(await queueEntriesOf(job.id)).toHaveLength(1);
  });

  test('a batch of noop jobs runs through, and no SUCCEEDED job is ever seen with its queue entry still active: the finish completes the entry in its own transaction', async () => {
    const { user, client } = await server.createUser();
    const { jobs } = await client.jobs.batchCreateJobs({
      requests: Array.from({ length: 60 }, (_, index) => ({ type: 'noop', name: `n${index}` })),
    });
    const disagreeing = () =>
      server.countRows(
        `select count(*)::int as n from jobs j join pgboss.job e on e.id = j.queue_job_id
          where j.owner_id = $1 and j.status = 'succeeded' and e.state <> 'completed'`,
        [user.id],
      );
    const unfinished = () =>
      server.countRows(`select count(*)::int as n from jobs where owner_id = $1 and status <> 'succeeded'`, [user.id]);
    const deadline = Date.now() + 8000;
    while ((await unfinished()) > 0 && Date.now() < deadline) expect(await disagreeing()).toBe(0);
    expect(await unfinished()).toBe(0);
    expect(await disagreeing()).toBe(0);
    expect(jobs).toHaveLength(60);
  });

  test('a create whose queue entry fails after its job rows were sent leaves neither job rows, events nor queue entries', async () => {
    const { user, client } = await server.createUser();
    // The statements of a creation go out together (one round trip): here the job rows and
    // their events are written, then pg-boss's insert of the queue entries fails.
    const fn = `reject_${randomHex()}`;
    await server.query(`create function ${fn}() returns trigger language plpgsql as $$
      begin if new.name = 'held' then raise exception 'poisoned queue entry'; end if; return new; end $$`);
    await server.query(`create trigger ${fn} before insert on pgboss.job for each row execute function ${fn}()`);
    try {
      const before = await writes(user.id);
      await expectConnectError(client.jobs.createJob({ type: 'held', name: 'queue entry refused' }), Code.Internal);
      await expectConnectError(
        client.jobs.batchCreateJobs({
          requests: [
            { type: 'noop', name: 'first' },
            { type: 'held', name: 'second' },
          ],
        }),
        Code.Internal,
      );
      expect(await writes(user.id)).toEqual(before);
    } finally {
      await server.query(`drop trigger if exists ${fn} on pgboss.job`);
      await server.query(`drop function if exists ${fn}()`);
    }
    // The connections that carried the failed transactions are clean again.
    const created = await Promise.all(Array.from({ length: 12 }, () => client.jobs.createJob({ type: 'held', name: 'after' })));
    expect(created.map(({ job }) => job!.status)).toEqual(Array(12).fill(JobStatus.QUEUED));
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
    expect(await server.countRows(`select count(*)::int as n from events where subject_id = $1 and kind = 'job.created'`, [first.id])).toBe(
      1,
    );

    // Within a batch too.
    const { jobs } = await client.jobs.batchCreateJobs({
      requests: [
        { type: 'held', requestId },
        { type: 'held', name: 'new one' },
      ],
    });
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
