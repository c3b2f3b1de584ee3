/**
 * The end of a batch's attempts on pipelining connections (JobAttempts, #finishPipelined):
 * BEGIN with the locking read, then the write, the queue entries' completion, the numbering
 * of the events and COMMIT in one write. Two instances on one database finish at once; a
 * statement of the finish fails.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { eventually, randomHex } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { queryDatabase } from '../support/query-database.ts';

let database: TestDatabase;
let first: TestServer;
let second: TestServer;
let firstAdmin: YardmasterClient;
let secondAdmin: YardmasterClient;

beforeAll(async () => {
  database = await createTestDatabase();
  first = await startTestServer({ database });
  second = await startTestServer({ database });
  firstAdmin = await first.adminClient();
  secondAdmin = await second.adminClient();
}, 60_000);

afterAll(async () => {
  await first?.close();
  await second?.close();
  await database?.drop();
});

interface NumberedEvent {
  sequence: string | null;
  subject_id: string;
  payload: { status: string; version: number };
}

const numberedEvents = (ids: string[]) =>
  first.query<NumberedEvent>('select sequence, subject_id, payload from events where subject_id = any($1::uuid[]) order by id', [ids]);

async function noopJobs(client: YardmasterClient, count: number, name: string): Promise<string[]> {
  const { jobs } = await client.jobs.batchCreateJobs({ requests: Array.from({ length: count }, () => ({ type: 'noop', name })) });
  return jobs.map((job) => job.id);
}

async function allSucceeded(ids: string[]): Promise<void> {
  await eventually(
    async () =>
      expect(await first.countRows(`select count(*)::int as n from jobs where id = any($1::uuid[]) and status = 'succeeded'`, [ids])).toBe(
        ids.length,
      ),
    20_000,
    50,
  );
}

/** Every event is numbered, the numbers run without a gap, and the position stands at the last. */
async function expectNumberedWithoutGap(): Promise<void> {
  await eventually(async () => {
    const [numbers] = await first.query<{ unnumbered: number; count: number; low: string; high: string; position: string }>(
      `select count(*) filter (where sequence is null)::int as unnumbered, count(sequence)::int as count,
              min(sequence) as low, max(sequence) as high, (select last_sequence from event_positions where id = 1) as position
         from events`,
    );
    expect(numbers!.unnumbered).toBe(0);
    expect(Number(numbers!.high) - Number(numbers!.low) + 1).toBe(numbers!.count);
    expect(numbers!.position).toBe(numbers!.high);
  }, 5000);
}

describe('finishing attempts on pipelining connections', () => {
  test('two instances finishing at once: every event numbered once, without a gap, each job’s events in the order of its changes', async () => {
    const [ofFirst, ofSecond] = await Promise.all([
      Promise.all(Array.from({ length: 4 }, () => noopJobs(firstAdmin, 50, 'finishing together'))),
      Promise.all(Array.from({ length: 4 }, () => noopJobs(secondAdmin, 50, 'finishing together'))),
    ]);
    const ids = [...ofFirst.flat(), ...ofSecond.flat()];
    await allSucceeded(ids);
    await expectNumberedWithoutGap();

    const events = await numberedEvents(ids);
    const bySequence = Map.groupBy(
      events.toSorted((a, b) => Number(a.sequence) - Number(b.sequence)),
      (event) => event.subject_id,
    );
    expect(bySequence.size).toBe(ids.length);
    for (const [id, ofJob] of bySequence) {
      // Created, started, succeeded: the numbering follows each job's versions.
      expect(
        ofJob.map((event) => event.payload.status),
        `events of ${id}`,
      ).toEqual(['queued', 'running', 'succeeded']);
      expect(ofJob.map((event) => event.payload.version)).toEqual([1, 2, 3]);
    }
  });

  test('a finish whose write fails inside its pipelined transaction leaves no change, no event and no number; its connections serve the next finishes', async () => {
    const fn = `refuse_${randomHex()}`;
    await first.query(`create function ${fn}() returns trigger language plpgsql as $$
      begin
        if new.payload->>'name' = 'refused finish' and new.payload->>'status' = 'succeeded' then raise exception 'refused finish'; end if;
        return new;
      end $$`);
    await first.query(`create trigger ${fn} before insert on events for each row execute function ${fn}()`);
    let refused: string;
    try {
      [refused] = (await noopJobs(firstAdmin, 1, 'refused finish')) as [string];
      // The attempt starts, its handler returns, and its finish (and the retry of it alone) fails.
      await eventually(
        async () => expect((await numberedEvents([refused])).map((event) => event.payload.status)).toContain('running'),
        10_000,
      );
      await sleep(500);
      const [row] = await first.query<{ status: string }>('select status from jobs where id = $1', [refused]);
      expect(row!.status).not.toBe('succeeded');
      expect((await numberedEvents([refused])).map((event) => event.payload.status)).not.toContain('succeeded');
      const completed = await first.countRows(
        `select count(*)::int as n from pgboss.job where data->>'jobId' = $1 and state = 'completed'`,
        [refused],
      );
      expect(completed).toBe(0);
      await expectNumberedWithoutGap();
    } finally {
      await first.query(`drop trigger if exists ${fn} on events`);
      await first.query(`drop function if exists ${fn}()`);
    }
    // The connections that carried the failed finishes are clean: later ones go through.
    // One after the other: an account may run only a few heavy calls at once.
    const later: string[][] = [];
    for (let round = 0; round < 6; round += 1) later.push(await noopJobs(firstAdmin, 2, 'after a refused finish'));
    await allSucceeded(later.flat());
    await expectNumberedWithoutGap();
    const states = await secondAdmin.jobs.getJob({ id: later[0]![0]! });
    expect(states.job!.status).toBe(JobStatus.SUCCEEDED);
  });

  test('a job interrupted by a shutdown is queued again through the pipelined finish: a fresh queue entry, the attempt not counted, its event numbered', async () => {
    const alone = await createTestDatabase();
    try {
      const leaving = await startTestServer({ database: alone });
      const client = await leaving.adminClient();
      const { job } = await client.jobs.createJob({ type: 'sleep', params: { seconds: 60 } });
      await eventually(
        async () =>
          expect(await leaving.countRows(`select count(*)::int as n from jobs where id = $1 and status = 'running'`, [job!.id])).toBe(1),
        10_000,
      );
      await leaving.close();

      const [row] = await queryDatabase<{ status: string; attempt: number; worker_id: string | null; queue_job_id: string }>(
        alone.url,
        'select status, attempt, worker_id, queue_job_id from jobs where id = $1',
        [job!.id],
      );
      expect(row).toMatchObject({ status: 'queued', attempt: 0, worker_id: null });
      const entries = await queryDatabase<{ id: string; state: string }>(
        alone.url,
        `select id, state from pgboss.job where data->>'jobId' = $1 order by created_on`,
        [job!.id],
      );
      expect(entries.map((entry) => entry.state)).toEqual(['completed', 'created']);
      expect(entries[1]!.id).toBe(row!.queue_job_id);
      const events = await queryDatabase<{ sequence: string | null; status: string }>(
        alone.url,
        `select sequence, payload->>'status' as status from events where subject_id = $1 order by id`,
        [job!.id],
      );
      // Created, started (and its progress), queued again.
      expect(events.map((event) => event.status)).toEqual(['queued', ...Array(events.length - 2).fill('running'), 'queued']);
      expect(events.every((event) => event.sequence !== null)).toBe(true);
    } finally {
      await alone.drop();
    }
  });
});
