/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * The live views of jobs over a real server and a real PostgreSQL: WatchJob, WatchJobs
 * (live, filtered, resumed, resynced, under concurrent writers, across instances) and
 * StreamJobLogs. Streams are read with the typed client (Connect JSON over HTTP/1.1,
 * and once each over gRPC) and compared with what the `events` and `job_log_lines`
 * tables hold. Nothing is mocked: jobs run in the server's own runner, driven by two
 * test job types (one the test steps through by hand, one that writes log lines over
 * time).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import {
  JobEventKind,
  JobStatus,
  type Job,
  type JobFilter,
  type StreamJobLogsResponse,
  type WatchJobResponse,
  type WatchJobsResponse,
} from '../../gen/yardmaster/v1/jobs_pb.ts';
import { chattyJobType, newScript, steppedJobType, type Script } from '../support/job-types.ts';
import { within } from '../support/assertions.ts';
import { kindName, statusName } from '../support/job-names.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

export const heartbeatMs = 200;

export const openStreams = new Set<Recorder<unknown>>();

/** Reads a server stream in the background and records every message with its arrival time. */
export class Recorder<T> {
  readonly items: T[] = [];
  readonly arrivals: number[] = [];
  /** Resolves when the stream ends: undefined when it ended by itself, or the error it ended with. */
  readonly ended: Promise<ConnectError | undefined>;
  #done = false;
  readonly #controller = new AbortController();

  constructor(open: (signal: AbortSignal) => AsyncIterable<T>) {
    openStreams.add(this as Recorder<unknown>);
    this.ended = (async () => {
      try {
        for await (const item of open(this.#controller.signal)) {
          this.items.push(item);
          this.arrivals.push(performance.now());
        }
        return undefined;
      } catch (error) {
        return ConnectError.from(error);
      } finally {
        this.#done = true;
        openStreams.delete(this as Recorder<unknown>);
      }
    })();
  }

  get done(): boolean {
    return this.#done;
  }

  /** Waits until `condition` holds for the messages so far; fails on timeout or if the stream ends first. */
  async waitFor(condition: (items: T[]) => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition(this.items)) {
      if (this.#done) {
        const error = await this.ended;
        throw new Error(
          `the stream ended (${error ? `${Code[error.code]}: ${error.rawMessage}` : 'by itself'}) before ${what}; got ${this.items.length} messages`,
        );
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${this.items.length} messages`);
      await sleep(10);
    }
  }

  /** Waits for the stream to end by itself; returns how (undefined: cleanly). */
  async end(timeoutMs = 5000): Promise<ConnectError | undefined> {
    const outcome = await within(this.ended, timeoutMs);
    if (outcome === 'timeout') throw new Error(`the stream did not end within ${timeoutMs} ms (${this.items.length} messages)`);
    return outcome;
  }

  /** Cancels the stream as a client going away does; the iteration must end promptly. */
  async cancel(): Promise<void> {
    this.#controller.abort();
    const outcome = await within(this.ended, 5000);
    expect(outcome, 'the cancelled stream did not end').not.toBe('timeout');
    if (outcome instanceof ConnectError) expect(Code[outcome.code], outcome.rawMessage).toBe(Code[Code.Canceled]);
  }
}

export function watchJobs(
  client: YardmasterClient,
  request: { filter?: Partial<JobFilter>; afterSequence?: bigint } = {},
): Recorder<WatchJobsResponse> {
  return new Recorder((signal) => client.jobs.watchJobs(request as never, { signal }));
}

export function watchJob(client: YardmasterClient, id: string): Recorder<WatchJobResponse> {
  return new Recorder((signal) => client.jobs.watchJob({ id }, { signal }));
}

export function streamLogs(
  client: YardmasterClient,
  request: { id: string; follow?: boolean; afterSequence?: bigint },
): Recorder<StreamJobLogsResponse> {
  return new Recorder((signal) => client.jobs.streamJobLogs(request, { signal }));
}

export const isHeartbeat = (message: { kind: JobEventKind }) => message.kind === JobEventKind.HEARTBEAT;
export const eventsOf = (messages: WatchJobsResponse[]) => messages.filter((message) => !isHeartbeat(message));
export const statesOf = (messages: WatchJobResponse[]) => messages.filter((message) => !isHeartbeat(message));

/** Highest sequence a heartbeat has vouched for so far (every visible event up to it was sent). */
function heartbeatPosition(messages: WatchJobsResponse[]): bigint {
  let position = -1n;
  for (const message of messages) if (isHeartbeat(message) && message.sequence > position) position = message.sequence;
  return position;
}

/**
 * The ordering contract of WatchJobs: event sequences strictly increase, heartbeats never
 * go backwards, and no event ever arrives at or below a position already vouched for.
 */
export function expectOrdered(messages: WatchJobsResponse[]): void {
  let lastEvent = 0n;
  let lastHeartbeat = -1n;
  messages.forEach((message, index) => {
    if (isHeartbeat(message)) {
      expect(message.job, `heartbeat #${index} carries a job`).toBeUndefined();
      expect(message.sequence, `heartbeat #${index} went backwards`).toBeGreaterThanOrEqual(lastHeartbeat);
      expect(message.sequence, `heartbeat #${index} is below an event already sent`).toBeGreaterThanOrEqual(lastEvent);
      lastHeartbeat = message.sequence;
    } else {
      expect(message.sequence, `event #${index} is not above the previous event`).toBeGreaterThan(lastEvent);
      expect(message.sequence, `event #${index} is at or below a heartbeat's position`).toBeGreaterThan(lastHeartbeat);
      expect(message.job, `event #${index} has no job`).toBeDefined();
      expect(message.eventTime, `event #${index} has no time`).toBeDefined();
      lastEvent = message.sequence;
    }
  });
}

const kindOfName: Record<string, JobEventKind> = {
  'job.created': JobEventKind.CREATED,
  'job.updated': JobEventKind.UPDATED,
  'job.deleted': JobEventKind.DELETED,
};
export const statusOfName: Record<string, JobStatus> = {
  queued: JobStatus.QUEUED,
  running: JobStatus.RUNNING,
  succeeded: JobStatus.SUCCEEDED,
  failed: JobStatus.FAILED,
  cancelled: JobStatus.CANCELLED,
};

export interface EventRow {
  sequence: string;
  kind: string;
  subject_id: string;
  owner_id: string;
  payload: { status: string; type: string; labels: Record<string, string>; version: number; ownerId: string };
}

/** A comparable summary of an event: position, kind, job, status. */
export function summary(message: WatchJobsResponse): string {
  return `${message.sequence}:${kindName(message.kind)}:${message.job?.id}:${statusName(message.job?.status ?? 0)}`;
}

export function rowSummary(row: EventRow): string {
  return `${row.sequence}:${kindName(kindOfName[row.kind]!)}:${row.subject_id}:${statusName(statusOfName[row.payload.status]!)}`;
}

// ---------------------------------------------------------------------------------------
// Suite

export let database: TestDatabase;
export let server: TestServer;
export let admin: YardmasterClient;

/** Starts the file's server (on a database of its own that a second instance may share) before its tests; cancels open streams after each test and closes everything after them. */
export function useStreamsServer(): void {
  beforeAll(async () => {
    database = await createTestDatabase();
    server = await startTestServer({ database, jobTypes: [steppedJobType, chattyJobType] });
    admin = await server.adminClient();
    await server.setSetting('jobs.stream_heartbeat_interval', `${heartbeatMs}ms`);
  });
  afterEach(async () => {
    for (const stream of [...openStreams]) await stream.cancel();
    await admin.queue.resumeQueue({ queue: '' });
  });
  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });
}

/** Waits until the script's job is running in the handler. */
export async function running(script: Script, timeoutMs = 10_000): Promise<void> {
  if ((await within(script.started, timeoutMs)) === 'timeout')
    throw new Error(`the stepped job ${script.key} did not start within ${timeoutMs} ms`);
}

/** Creates a `stepped` job for the user and returns it with its script. */
export async function createStepped(
  client: YardmasterClient,
  extra: { labels?: Record<string, string>; name?: string } = {},
): Promise<{ job: Job; script: Script }> {
  const script = newScript();
  const { job } = await client.jobs.createJob({ type: 'stepped', params: { key: script.key }, ...extra });
  return { job: job!, script };
}

export async function createNoop(client: YardmasterClient, extra: { labels?: Record<string, string>; name?: string } = {}): Promise<Job> {
  return (await client.jobs.createJob({ type: 'noop', params: {}, ...extra })).job!;
}

/** Waits until every job is finished, as the database says. */
export async function waitFinished(ids: string[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await server.countRows(
      `select count(*) as n from jobs where id = any($1::uuid[]) and status not in ('succeeded', 'failed', 'cancelled')`,
      [ids],
    );
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} of ${ids.length} jobs did not finish within ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** Sequences every pending event and returns the newest position. */
export async function flushedPosition(): Promise<bigint> {
  await server.app.sequencer.flush();
  const [row] = await server.query<{ last_sequence: string }>('select last_sequence from event_positions where id = 1');
  return BigInt(row!.last_sequence);
}

/** Waits until a WatchJobs stream has vouched (by a heartbeat) for every event up to `position`. */
export async function caughtUp(stream: Recorder<WatchJobsResponse>, position: bigint, timeoutMs = 5000): Promise<void> {
  await stream.waitFor((items) => heartbeatPosition(items) >= position, `a heartbeat at or past ${position}`, timeoutMs);
}

export async function eventRows(where: string, params: unknown[]): Promise<EventRow[]> {
  return server.query<EventRow>(
    `select sequence, kind, subject_id, owner_id, payload from events where sequence is not null and ${where} order by sequence`,
    params,
  );
}

export async function eventVersion(sequence: bigint): Promise<number> {
  const [row] = await server.query<{ version: number }>(`select (payload->>'version')::int as version from events where sequence = $1`, [
    String(sequence),
  ]);
  if (!row) throw new Error(`no event at ${sequence}`);
  return row.version;
}

/** One client transport of each protocol and format a stream is read over (both HTTP versions among them). */
export const streamTransports = [
  { name: 'Connect JSON over HTTP/1.1', options: {} },
  { name: 'Connect binary over HTTP/1.1', options: { binary: true } },
  { name: 'Connect JSON over HTTP/2', options: { httpVersion: '2' } },
  { name: 'gRPC', options: { protocol: 'grpc' } },
  { name: 'gRPC-Web binary over HTTP/1.1', options: { protocol: 'grpc-web' } },
  { name: 'gRPC-Web JSON over HTTP/2', options: { protocol: 'grpc-web', binary: false, httpVersion: '2' } },
] as const;
