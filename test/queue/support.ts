/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * QueueService over a real server, a real PostgreSQL and pg-boss: live counts, the order
 * of queued jobs, pause and resume (persisted, honoured by the runner, surviving a
 * restart), clearing a queue, and the WatchQueues stream. Each check compares what the
 * API says with the `jobs`, `queue_states`, `audit_events` and `pgboss.job` tables.
 * Nothing is mocked: jobs run in the server's own runner (`noop`, `sleep`, and a
 * `runs-until-released` test type whose jobs run until the test ends them).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, ConnectError, type CallOptions } from '@connectrpc/connect';
import type { Duration } from '@bufbuild/protobuf/wkt';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import type { Job } from '../../gen/yardmaster/v1/jobs_pb.ts';
import type { Queue, WatchQueuesResponse } from '../../gen/yardmaster/v1/queue_pb.ts';
import { releases, serialJobType, runsUntilReleasedJobType } from '../support/job-types.ts';
import { eventually, randomHex, within } from '../support/assertions.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

export const heartbeatMs = 200;
export const queueNames = ['archive', 'checksum', 'noop', 'runs-until-released', 'serial', 'sleep'];
export const method = (name: string) => `yardmaster.v1.QueueService.${name}`;

export let database: TestDatabase;
export let server: TestServer;
export let admin: YardmasterClient;

/** Starts the file's server (on a database of its own, for restarts) before its tests; after each test every queue runs again, empty; closes everything after them. */
export function useQueueServer(): void {
  beforeAll(async () => {
    database = await createTestDatabase();
    server = await startTestServer({ database, jobTypes: [runsUntilReleasedJobType, serialJobType] });
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
    await eventually(
      async () => expect(await server.countRows(`select count(*) as n from jobs where status in ('queued', 'running')`)).toBe(0),
      15_000,
      50,
    );
  });
  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });
}

export function withRequestId(): { id: string; options: CallOptions } {
  const id = `queue-test-${randomHex(6)}`;
  return { id, options: { headers: { 'x-request-id': id } } };
}

export interface AuditRow {
  actor_id: string | null;
  actor_username: string | null;
  action: string;
  target: string | null;
  outcome: string;
  error_code: string | null;
}

export async function auditRows(requestId: string): Promise<AuditRow[]> {
  return server.query<AuditRow>(
    'select actor_id, actor_username, action, target, outcome, error_code from audit_events where request_id = $1',
    [requestId],
  );
}

export function queueOf(queues: Queue[], name: string): Queue {
  const queue = queues.find((candidate) => candidate.name === name);
  if (!queue) throw new Error(`no queue ${name} in ${queues.map((candidate) => candidate.name).join(', ')}`);
  return queue;
}

export function ms(duration: Duration | undefined): number | undefined {
  return duration === undefined ? undefined : Number(duration.seconds) * 1000 + duration.nanos / 1_000_000;
}

export async function createSleep(
  client: YardmasterClient,
  seconds: number,
  extra: { fail?: boolean; priority?: number } = {},
): Promise<Job> {
  const { job } = await client.jobs.createJob({
    type: 'sleep',
    params: { seconds, fail: extra.fail ?? false },
    priority: extra.priority ?? 0,
  });
  return job!;
}

export async function createNoop(client: YardmasterClient): Promise<Job> {
  return (await client.jobs.createJob({ type: 'noop', params: {} })).job!;
}

export async function createRunsUntilReleased(client: YardmasterClient, priority = 0): Promise<{ job: Job; key: string }> {
  const key = `runs-until-released-${randomHex(6)}`;
  releases.set(key, { started: false, release: undefined });
  const { job } = await client.jobs.createJob({ type: 'runs-until-released', params: { key }, priority });
  return { job: job!, key };
}

export async function waitStarted(key: string, timeoutMs = 10_000): Promise<void> {
  await eventually(async () => expect(releases.get(key)?.started, `runs-until-released job ${key} started`).toBe(true), timeoutMs, 20);
}

export async function jobStatuses(ids: string[]): Promise<Record<string, string>> {
  const rows = await server.query<{ id: string; status: string }>('select id, status from jobs where id = any($1::uuid[])', [ids]);
  return Object.fromEntries(rows.map((row) => [row.id, row.status]));
}

export async function waitStatus(ids: string[], status: string, timeoutMs = 10_000): Promise<void> {
  await eventually(
    async () => {
      const statuses = await jobStatuses(ids);
      expect(Object.values(statuses).filter((value) => value === status)).toHaveLength(ids.length);
    },
    timeoutMs,
    25,
  );
}

export async function pgBossStates(ids: string[]): Promise<string[]> {
  const rows = await server.query<{ state: string }>(
    'select b.state from jobs j join pgboss.job b on b.id = j.queue_job_id and b.name = j.type where j.id = any($1::uuid[]) order by j.id',
    [ids],
  );
  return rows.map((row) => row.state);
}

/** The live counts as the jobs table has them. */
export async function dbCounts(type: string): Promise<{ queued: number; running: number; succeeded: number; failed: number }> {
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

export function countsOf(queue: Queue): { queued: number; running: number; succeeded: number; failed: number } {
  return {
    queued: Number(queue.queued),
    running: Number(queue.running),
    succeeded: Number(queue.succeededLastHour),
    failed: Number(queue.failedLastHour),
  };
}

export async function queueStateRows(): Promise<Record<string, { paused: boolean; updated_by: string | null }>> {
  const rows = await server.query<{ name: string; paused: boolean; updated_by: string | null }>(
    'select name, paused, updated_by from queue_states',
  );
  return Object.fromEntries(rows.map((row) => [row.name, { paused: row.paused, updated_by: row.updated_by }]));
}

// Streams

export const openStreams = new Set<QueueWatch>();

/** A WatchQueues stream read in the background, each message recorded with its arrival time. */
export class QueueWatch {
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
  async waitFor(
    condition: (message: WatchQueuesResponse) => boolean,
    what: string,
    from = 0,
    timeoutMs = 5000,
  ): Promise<{ message: WatchQueuesResponse; at: number }> {
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
