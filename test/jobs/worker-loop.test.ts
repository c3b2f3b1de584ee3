/**
 * The runner's own worker loop: each batch of queue entries is fetched and its attempts
 * started in one transaction, so an entry is never left claimed (active) without its job
 * started, nor a job started without its entry claimed. Batches run under per-entry
 * signals (cancel, shutdown), and a job row another transaction holds is left for later
 * without waiting for it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { defineJobType } from '../../src/jobs/job-types.ts';
import { eventually } from '../support/assertions.ts';
import { queryDatabase } from '../support/query-database.ts';
import { createTestDatabase } from '../support/test-database.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

/** Jobs a test lets finish: `release(key)` ends the runs of every job created with that key. */
const gates = new Map<string, () => void>();
const gateOf = (key: string) => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  gates.set(key, open);
  return opened;
};
const waiting = new Map<string, Promise<void>>();
/** The attempts of each key whose signal aborted while they waited. */
const aborted = new Map<string, number[]>();

/** Runs in batches of 5 until its key is released (succeeds) or its signal aborts (throws). */
const gateJobType = defineJobType({
  name: 'gate',
  description: 'Waits for the test to release its key, in batches of 5.',
  paramsSchema: z.object({ key: z.string() }).strict(),
  concurrency: 5,
  batchSize: 5,
  timeoutMs: 60_000,
  cancelGraceMs: 2000,
  retry: { defaultMaxAttempts: 3, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run({ params, signal, attempt }) {
    signal.addEventListener('abort', () => aborted.set(params.key, [...(aborted.get(params.key) ?? []), attempt]), { once: true });
    let opened = waiting.get(params.key);
    if (!opened) {
      opened = gateOf(params.key);
      waiting.set(params.key, opened);
    }
    await Promise.race([
      opened,
      new Promise((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      }),
    ]);
    return {};
  },
});

const release = (key: string) => {
  if (!waiting.has(key)) waiting.set(key, Promise.resolve());
  gates.get(key)?.();
};

let server: TestServer;
let admin: YardmasterClient;

beforeAll(async () => {
  server = await startTestServer({ jobTypes: [gateJobType] });
  admin = await server.adminClient();
});
afterAll(() => server?.close());

interface Row {
  id: string;
  status: string;
  attempt: number;
  queue_job_id: string;
  queue_retry_count: number | null;
  entry_state: string | null;
  entry_retry_count: number | null;
}

const rowsOf = (ids: string[]) =>
  server.query<Row>(
    `select j.id, j.status, j.attempt, j.queue_job_id, j.queue_retry_count, e.state as entry_state, e.retry_count as entry_retry_count
       from jobs j left join pgboss.job e on e.id = j.queue_job_id and e.name = j.type
      where j.id = any($1::uuid[]) order by j.id`,
    [ids],
  );

async function createGates(client: YardmasterClient, key: string, count: number): Promise<string[]> {
  const { jobs } = await client.jobs.batchCreateJobs({
    requests: Array.from({ length: count }, () => ({ type: 'gate', params: { key } })),
  });
  return jobs.map((job) => job.id);
}

async function statusOf(client: YardmasterClient, id: string): Promise<JobStatus> {
  return (await client.jobs.getJob({ id })).job!.status;
}

describe('fetch and start in one transaction', () => {
  test('while a batch runs, every started job has its queue entry active under the attempt that started it, and no entry is active for a job not started', async () => {
    const key = 'consistent';
    const ids = await createGates(admin, key, 10);
    await eventually(async () => {
      const rows = await rowsOf(ids);
      expect(rows.filter((row) => row.status === 'running')).toHaveLength(5);
    });
    for (let sample = 0; sample < 5; sample++) {
      for (const row of await rowsOf(ids)) {
        if (row.status === 'running') {
          expect(row.entry_state, row.id).toBe('active');
          expect(row.entry_retry_count, row.id).toBe(row.queue_retry_count);
        } else {
          expect(row.status, row.id).toBe('queued');
          expect(row.entry_state, row.id).not.toBe('active');
        }
      }
      await sleep(50);
    }
    release(key);
    await eventually(async () => {
      for (const row of await rowsOf(ids)) {
        expect(row.status, row.id).toBe('succeeded');
        expect(row.entry_state, row.id).toBe('completed');
      }
    });
  });

  test('a start that fails rolls its fetch back: the entries stay as they were, the jobs queued, and they run once the failure is gone', async () => {
    const fn = 'test_fail_gate_start';
    await server.query(
      `create function ${fn}() returns trigger language plpgsql as $$
         begin
           if new.type = 'gate' and new.status = 'running' and new.params->>'key' = 'refused' then
             raise exception 'start refused by the test';
           end if;
           return new;
         end $$`,
    );
    await server.query(`create trigger ${fn} before update on jobs for each row execute function ${fn}()`);
    let ids: string[];
    try {
      ids = await createGates(admin, 'refused', 3);
      // Several polls of the loop, each of which fetches the entries and fails to start them.
      await sleep(2500);
      for (const row of await rowsOf(ids)) {
        expect(row.status, row.id).toBe('queued');
        expect(row.attempt, row.id).toBe(0);
        expect(row.entry_state, row.id).toBe('created');
        expect(row.entry_retry_count, row.id).toBe(0);
      }
    } finally {
      await server.query(`drop trigger if exists ${fn} on jobs`);
      await server.query(`drop function if exists ${fn}()`);
    }
    release('refused');
    await eventually(async () => {
      for (const row of await rowsOf(ids)) {
        expect(row.status, row.id).toBe('succeeded');
        expect(row.attempt, row.id).toBe(1);
        expect(row.entry_state, row.id).toBe('completed');
      }
    }, 8000);
  });

  test('a job row held by another transaction is not waited for: its batch is left as it was, and runs once the row is free', async () => {
    await admin.queue.pauseQueue({ queue: 'gate' });
    let ids: string[];
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      ids = await createGates(admin, 'held-row', 2);
      await holder.query('begin');
      await holder.query('select id from jobs where id = $1 for update', [ids[0]]);
      await admin.queue.resumeQueue({ queue: 'gate' });
      await sleep(1500);
      for (const row of await rowsOf(ids)) {
        expect(row.status, row.id).toBe('queued');
        expect(row.entry_state, row.id).toBe('created');
      }
      // A cancel of the other job goes through meanwhile (it would deadlock with a take that waited for the held row).
      await admin.jobs.cancelJob({ id: ids[1]! });
      expect(await statusOf(admin, ids[1]!)).toBe(JobStatus.CANCELLED);
    } finally {
      await holder.query('commit').catch(() => {});
      await holder.end();
      await admin.queue.resumeQueue({ queue: 'gate' });
    }
    release('held-row');
    await eventually(async () => {
      const [first, second] = await rowsOf([ids[0]!, ids[1]!]).then((rows) => ids.map((id) => rows.find((row) => row.id === id)!));
      expect(first!.status).toBe('succeeded');
      expect(first!.entry_state).toBe('completed');
      expect(second!.status).toBe('cancelled');
      expect(second!.entry_state).not.toBe('active');
    }, 8000);
  });
});

describe('a batch under way', () => {
  test('a cancel reaches the signal of its job in the middle of a batch; the rest of the batch runs on and succeeds', async () => {
    const key = 'cancel-mid-batch';
    const ids = await createGates(admin, key, 5);
    await eventually(async () => {
      for (const row of await rowsOf(ids)) expect(row.status, row.id).toBe('running');
    });
    await admin.jobs.cancelJob({ id: ids[2]! });
    await eventually(async () => expect(await statusOf(admin, ids[2]!)).toBe(JobStatus.CANCELLED));
    for (const id of ids.filter((_, index) => index !== 2)) expect(await statusOf(admin, id)).toBe(JobStatus.RUNNING);
    release(key);
    await eventually(async () => {
      for (const row of await rowsOf(ids)) {
        expect(row.status, row.id).toBe(row.id === ids[2] ? 'cancelled' : 'succeeded');
        expect(row.entry_state, row.id).toBe('completed');
      }
    });
  });

  test('a running entry has its heartbeat refreshed; an attempt whose entry is no longer claimed has its signal aborted, and the job runs again', async () => {
    const key = 'heartbeat';
    // A heartbeat of 1 s for the entries queued from here on (refreshed every half heartbeat).
    await server.query(`update pgboss.queue set heartbeat_seconds = 1 where name = 'gate'`);
    try {
      const [id] = await createGates(admin, key, 1);
      await eventually(async () => expect((await rowsOf([id!]))[0]!.status).toBe('running'));
      const heartbeatOf = async () =>
        (
          await server.query<{ heartbeat_on: Date }>(
            'select heartbeat_on from pgboss.job where id = (select queue_job_id from jobs where id = $1)',
            [id],
          )
        )[0]!.heartbeat_on;
      const first = await heartbeatOf();
      await eventually(async () => expect((await heartbeatOf()).getTime()).toBeGreaterThan(first.getTime()), 5000);
      // The claim goes away, as when pg-boss's supervisor fails the entry for a retry.
      await server.query(`update pgboss.job set state = 'retry' where id = (select queue_job_id from jobs where id = $1)`, [id]);
      await eventually(async () => expect(aborted.get(key)).toEqual([1]), 5000);
      release(key);
      await eventually(async () => {
        const [row] = await rowsOf([id!]);
        expect(row!.status).toBe('succeeded');
        expect(row!.attempt).toBe(2);
        expect(row!.entry_state).toBe('completed');
        expect(row!.entry_retry_count).toBe(1);
      }, 8000);
    } finally {
      await server.query(`update pgboss.queue set heartbeat_seconds = 30 where name = 'gate'`);
    }
  });

  test('an instance shut down in the middle of a batch hands its jobs back without counting the attempt; the next instance runs them', async () => {
    const database = await createTestDatabase();
    const rowsIn = (ids: string[]) =>
      queryDatabase<Row>(
        database.url,
        `select j.id, j.status, j.attempt, j.queue_job_id, j.queue_retry_count, e.state as entry_state, e.retry_count as entry_retry_count
           from jobs j left join pgboss.job e on e.id = j.queue_job_id and e.name = j.type
          where j.id = any($1::uuid[]) order by j.id`,
        [ids],
      );
    const key = 'shutdown-mid-batch';
    let first: TestServer | undefined = await startTestServer({ database, jobTypes: [gateJobType] });
    let next: TestServer | undefined;
    try {
      const ids = await createGates(await first.adminClient(), key, 5);
      await eventually(async () => {
        for (const row of await rowsIn(ids)) expect(row.status, row.id).toBe('running');
      });
      await first.close();
      first = undefined;
      for (const row of await rowsIn(ids)) {
        expect(row.status, row.id).toBe('queued');
        expect(row.attempt, row.id).toBe(0);
        expect(row.entry_state, row.id).toBe('created');
      }
      release(key);
      next = await startTestServer({ database, jobTypes: [gateJobType] });
      await eventually(async () => {
        for (const row of await rowsIn(ids)) {
          expect(row.status, row.id).toBe('succeeded');
          expect(row.attempt, row.id).toBe(1);
          expect(row.entry_state, row.id).toBe('completed');
        }
      }, 8000);
    } finally {
      await first?.close();
      await next?.close();
      await database.drop();
    }
  }, 60_000);
});
