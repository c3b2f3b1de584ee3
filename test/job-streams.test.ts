/**
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
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { ErrorInfoSchema, Role } from '../gen/yardmaster/v1/common_pb.ts';
import {
  JobEventKind,
  JobStatus,
  type Job,
  type JobFilter,
  type StreamJobLogsResponse,
  type WatchJobResponse,
  type WatchJobsResponse,
} from '../gen/yardmaster/v1/jobs_pb.ts';
import { chattyJobType, newScript, steppedJobType, type Script } from './support/job-types.ts';
import { reasonOf, violatedFields, within } from './support/assertions.ts';
import { kindName, statusName } from './support/job-names.ts';
import { createTestDatabase, type TestDatabase } from './support/test-database.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';


const heartbeatMs = 200;


const openStreams = new Set<Recorder<unknown>>();

/** Reads a server stream in the background and records every message with its arrival time. */
class Recorder<T> {
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
        throw new Error(`the stream ended (${error ? `${Code[error.code]}: ${error.rawMessage}` : 'by itself'}) before ${what}; got ${this.items.length} messages`);
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

function watchJobs(client: YardmasterClient, request: { filter?: Partial<JobFilter>; afterSequence?: bigint } = {}): Recorder<WatchJobsResponse> {
  return new Recorder((signal) => client.jobs.watchJobs(request as never, { signal }));
}

function watchJob(client: YardmasterClient, id: string): Recorder<WatchJobResponse> {
  return new Recorder((signal) => client.jobs.watchJob({ id }, { signal }));
}

function streamLogs(client: YardmasterClient, request: { id: string; follow?: boolean; afterSequence?: bigint }): Recorder<StreamJobLogsResponse> {
  return new Recorder((signal) => client.jobs.streamJobLogs(request, { signal }));
}


const isHeartbeat = (message: { kind: JobEventKind }) => message.kind === JobEventKind.HEARTBEAT;
const eventsOf = (messages: WatchJobsResponse[]) => messages.filter((message) => !isHeartbeat(message));
const statesOf = (messages: WatchJobResponse[]) => messages.filter((message) => !isHeartbeat(message));

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
function expectOrdered(messages: WatchJobsResponse[]): void {
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

const kindOfName: Record<string, JobEventKind> = { 'job.created': JobEventKind.CREATED, 'job.updated': JobEventKind.UPDATED, 'job.deleted': JobEventKind.DELETED };
const statusOfName: Record<string, JobStatus> = {
  queued: JobStatus.QUEUED,
  running: JobStatus.RUNNING,
  succeeded: JobStatus.SUCCEEDED,
  failed: JobStatus.FAILED,
  cancelled: JobStatus.CANCELLED,
};

interface EventRow {
  sequence: string;
  kind: string;
  subject_id: string;
  owner_id: string;
  payload: { status: string; type: string; labels: Record<string, string>; version: number; ownerId: string };
}

/** A comparable summary of an event: position, kind, job, status. */
function summary(message: WatchJobsResponse): string {
  return `${message.sequence}:${kindName(message.kind)}:${message.job?.id}:${statusName(message.job?.status ?? 0)}`;
}

function rowSummary(row: EventRow): string {
  return `${row.sequence}:${kindName(kindOfName[row.kind]!)}:${row.subject_id}:${statusName(statusOfName[row.payload.status]!)}`;
}

// ---------------------------------------------------------------------------------------
// Suite

let database: TestDatabase;
let server: TestServer;
let admin: YardmasterClient;

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

/** Waits until the script's job is running in the handler. */
async function running(script: Script, timeoutMs = 10_000): Promise<void> {
  if ((await within(script.started, timeoutMs)) === 'timeout') throw new Error(`the stepped job ${script.key} did not start within ${timeoutMs} ms`);
}

/** Creates a `stepped` job for the user and returns it with its script. */
async function createStepped(client: YardmasterClient, extra: { labels?: Record<string, string>; name?: string } = {}): Promise<{ job: Job; script: Script }> {
  const script = newScript();
  const { job } = await client.jobs.createJob({ type: 'stepped', params: { key: script.key }, ...extra });
  return { job: job!, script };
}

async function createNoop(client: YardmasterClient, extra: { labels?: Record<string, string>; name?: string } = {}): Promise<Job> {
  return (await client.jobs.createJob({ type: 'noop', params: {}, ...extra })).job!;
}

/** Waits until every job is finished, as the database says. */
async function waitFinished(ids: string[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await server.countRows(`select count(*) as n from jobs where id = any($1::uuid[]) and status not in ('succeeded', 'failed', 'cancelled')`, [ids]);
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} of ${ids.length} jobs did not finish within ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** Sequences every pending event and returns the newest position. */
async function flushedPosition(): Promise<bigint> {
  await server.app.sequencer.flush();
  const [row] = await server.query<{ last_sequence: string }>('select last_sequence from event_positions where id = 1');
  return BigInt(row!.last_sequence);
}

/** Waits until a WatchJobs stream has vouched (by a heartbeat) for every event up to `position`. */
async function caughtUp(stream: Recorder<WatchJobsResponse>, position: bigint, timeoutMs = 5000): Promise<void> {
  await stream.waitFor((items) => heartbeatPosition(items) >= position, `a heartbeat at or past ${position}`, timeoutMs);
}

async function eventRows(where: string, params: unknown[]): Promise<EventRow[]> {
  return server.query<EventRow>(`select sequence, kind, subject_id, owner_id, payload from events where sequence is not null and ${where} order by sequence`, params);
}

async function eventVersion(sequence: bigint): Promise<number> {
  const [row] = await server.query<{ version: number }>(`select (payload->>'version')::int as version from events where sequence = $1`, [String(sequence)]);
  if (!row) throw new Error(`no event at ${sequence}`);
  return row.version;
}

// ---------------------------------------------------------------------------------------

describe('WatchJob', () => {
  test('a queued job (paused queue): the current state first, then every change, and the stream ends by itself after SUCCEEDED', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'stepped' });
    const { job, script } = await createStepped(client);
    const stream = watchJob(client, job.id);

    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    const [first] = statesOf(stream.items);
    expect(first!.job?.id).toBe(job.id);
    expect(first!.job?.status).toBe(JobStatus.QUEUED);
    expect([JobEventKind.CREATED, JobEventKind.UPDATED]).toContain(first!.kind);
    expect(first!.job?.attempt).toBe(0);

    // Nothing happens while the queue is paused.
    await sleep(600);
    expect(statesOf(stream.items)).toHaveLength(1);

    await admin.queue.resumeQueue({ queue: 'stepped' });
    await running(script);
    await stream.waitFor((items) => statesOf(items).some((message) => message.job?.status === JobStatus.RUNNING), 'RUNNING');
    script.progress(40, 'forty');
    await stream.waitFor((items) => statesOf(items).some((message) => message.job?.progress?.percent === 40), 'progress 40');
    script.succeed({ answer: 42 });

    expect(await stream.end(), 'the stream should end by itself after the final state').toBeUndefined();
    const states = statesOf(stream.items);
    expect(states.map((message) => statusName(message.job!.status))).toEqual(['QUEUED', 'RUNNING', 'RUNNING', 'SUCCEEDED']);
    expect(states[1]!.job?.attempt).toBe(1);
    expect(states[1]!.job?.startTime).toBeDefined();
    expect(states[2]!.job?.progress).toMatchObject({ percent: 40, message: 'forty' });
    const last = states[3]!;
    expect(last.kind).toBe(JobEventKind.UPDATED);
    expect(last.job?.result).toEqual({ answer: 42 });
    expect(last.job?.finishTime).toBeDefined();
    expect(last.job?.progress?.percent).toBe(100);
    for (const heartbeat of stream.items.filter(isHeartbeat)) expect(heartbeat.job).toBeUndefined();

    // Changes carry their event's sequence, strictly increasing, and the job's version never goes back.
    const changes = states.slice(1);
    for (let index = 1; index < changes.length; index++) expect(changes[index]!.sequence).toBeGreaterThan(changes[index - 1]!.sequence);
    // (The first state may be one not yet sequenced, with sequence 0: here the job as created, version 1.)
    expect(changes.every((message) => message.sequence > 0n)).toBe(true);
    const versions = await Promise.all(states.map((message) => (message.sequence === 0n ? Promise.resolve(1) : eventVersion(message.sequence))));
    for (let index = 1; index < versions.length; index++) expect(versions[index]).toBeGreaterThan(versions[index - 1]!);
    for (let index = 1; index < states.length; index++) {
      expect(timestampDate(states[index]!.job!.updateTime!).getTime()).toBeGreaterThanOrEqual(timestampDate(states[index - 1]!.job!.updateTime!).getTime());
    }
    // The last message is the newest event of the job, and the row agrees.
    const rows = await eventRows('subject_id = $1', [job.id]);
    expect(last.sequence).toBe(BigInt(rows.at(-1)!.sequence));
    expect(rows.map((row) => row.payload.status)).toEqual(['queued', 'running', 'running', 'succeeded']);
    const [row] = await server.query<{ status: string; version: number }>('select status, version from jobs where id = $1', [job.id]);
    expect(row).toEqual({ status: 'succeeded', version: versions.at(-1) });
  });

  test('a running job: first message RUNNING; the stream ends after FAILED', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    await server.app.sequencer.flush();
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    const first = statesOf(stream.items)[0]!;
    expect(first.job?.status).toBe(JobStatus.RUNNING);
    expect(first.job?.attempt).toBe(1);
    const [latest] = await server.query<{ sequence: string }>('select max(sequence) as sequence from events where subject_id = $1', [job.id]);
    expect(first.sequence).toBe(BigInt(latest!.sequence));

    script.fail('the script failed on purpose');
    expect(await stream.end()).toBeUndefined();
    const states = statesOf(stream.items);
    expect(states.map((message) => statusName(message.job!.status))).toEqual(['RUNNING', 'FAILED']);
    expect(states[1]!.job?.error?.message).toBe('the script failed on purpose');
    expect(states[1]!.job?.error?.code).toBe('HANDLER_ERROR');
    expect(states[1]!.sequence).toBeGreaterThan(states[0]!.sequence);
  });

  test('a running job cancelled by its owner: cancel_requested, then CANCELLED, then the stream ends', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');

    await client.jobs.cancelJob({ id: job.id, reason: 'no longer needed' });
    expect(await stream.end()).toBeUndefined();
    const states = statesOf(stream.items);
    expect(states.map((message) => statusName(message.job!.status))).toEqual(['RUNNING', 'RUNNING', 'CANCELLED']);
    expect(states[1]!.job?.cancelRequested).toBe(true);
    expect(states[2]!.job?.cancelReason).toBe('no longer needed');
    const [row] = await server.query<{ status: string; cancel_reason: string }>('select status, cancel_reason from jobs where id = $1', [job.id]);
    expect(row).toEqual({ status: 'cancelled', cancel_reason: 'no longer needed' });
  });

  test('a queued job cancelled while its queue is paused: QUEUED, then CANCELLED, then the end', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'stepped' });
    const { job } = await createStepped(client);
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    await client.jobs.cancelJob({ id: job.id });
    expect(await stream.end()).toBeUndefined();
    expect(statesOf(stream.items).map((message) => statusName(message.job!.status))).toEqual(['QUEUED', 'CANCELLED']);
  });

  test('a job already finished yields exactly one message, then the stream ends', async () => {
    const { client } = await server.createUser();
    const job = await createNoop(client);
    await waitFinished([job.id]);
    await server.app.sequencer.flush();
    const stream = watchJob(client, job.id);
    expect(await stream.end()).toBeUndefined();
    expect(stream.items).toHaveLength(1);
    const [only] = stream.items;
    expect(only!.job?.id).toBe(job.id);
    expect(only!.job?.status).toBe(JobStatus.SUCCEEDED);
    const [latest] = await server.query<{ sequence: string }>('select max(sequence) as sequence from events where subject_id = $1', [job.id]);
    expect(only!.sequence).toBe(BigInt(latest!.sequence));
  });

  test("another user's job is NotFound, as is an unknown one; a malformed id is InvalidArgument; an admin may watch any job", async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const job = await createNoop(owner.client);
    await waitFinished([job.id]);

    const foreign = await watchJob(other.client, job.id).end();
    expect(foreign && Code[foreign.code]).toBe(Code[Code.NotFound]);
    expect(foreign!.rawMessage).not.toContain(job.id);
    const unknown = await watchJob(owner.client, '01900000-0000-7000-8000-000000000000').end();
    expect(unknown && Code[unknown.code]).toBe(Code[Code.NotFound]);
    const malformed = await watchJob(owner.client, 'not-a-uuid').end();
    expect(malformed && Code[malformed.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(malformed!)).toEqual(['id']);

    const asAdmin = watchJob(admin, job.id);
    expect(await asAdmin.end()).toBeUndefined();
    expect(asAdmin.items.map((message) => message.job?.status)).toEqual([JobStatus.SUCCEEDED]);
  });

  test('heartbeats (kind HEARTBEAT, no job) arrive while the job is quiet', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => items.length >= 1, 'the current state');
    await stream.waitFor((items) => items.filter(isHeartbeat).length >= 4, 'four heartbeats', 3000);
    const heartbeats = stream.items.filter(isHeartbeat);
    for (const heartbeat of heartbeats) {
      expect(heartbeat.job).toBeUndefined();
      expect(heartbeat.sequence).toBeGreaterThan(0n);
    }
    for (let index = 1; index < heartbeats.length; index++) expect(heartbeats[index]!.sequence).toBeGreaterThanOrEqual(heartbeats[index - 1]!.sequence);
    // Quiet means a heartbeat about every interval, not a flood and not a long silence.
    const gaps = stream.arrivals.slice(1).map((at, index) => at - stream.arrivals[index]!);
    expect(Math.max(...gaps)).toBeLessThan(heartbeatMs * 5);
    expect(Math.min(...gaps)).toBeGreaterThan(heartbeatMs / 2);
    expect(statesOf(stream.items)).toHaveLength(1);
    script.succeed();
    expect(await stream.end()).toBeUndefined();
    expect(statesOf(stream.items).at(-1)!.job?.status).toBe(JobStatus.SUCCEEDED);
  });

  test('over gRPC: the current state, the changes, and the end', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const { job, script } = await createStepped(grpc);
    await running(script);
    const stream = watchJob(grpc, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    script.progress(10, 'ten');
    await stream.waitFor((items) => statesOf(items).some((message) => message.job?.progress?.percent === 10), 'progress 10');
    script.succeed({ via: 'grpc' });
    expect(await stream.end()).toBeUndefined();
    expect(statesOf(stream.items).map((message) => statusName(message.job!.status))).toEqual(['RUNNING', 'RUNNING', 'SUCCEEDED']);
    expect(statesOf(stream.items).at(-1)!.job?.result).toEqual({ via: 'grpc' });
    const foreign = await watchJob(admin, job.id).end();
    expect(foreign).toBeUndefined();
    const other = await server.createUser();
    const grpcOther = server.client({ protocol: 'grpc' });
    await grpcOther.login(other.user.username, other.password);
    const notFound = await watchJob(grpcOther, job.id).end();
    expect(notFound && Code[notFound.code]).toBe(Code[Code.NotFound]);
  });
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs live', () => {
  test('the first message is a heartbeat carrying the current position', async () => {
    const { client } = await server.createUser();
    await waitFinished([(await createNoop(client)).id]);
    const before = await flushedPosition();
    expect(before).toBeGreaterThan(0n);
    const stream = watchJobs(client);
    await stream.waitFor((items) => items.length >= 1, 'the first message');
    const after = await flushedPosition();
    const [first] = stream.items;
    expect(first!.kind).toBe(JobEventKind.HEARTBEAT);
    expect(first!.job).toBeUndefined();
    expect(first!.sequence).toBeGreaterThanOrEqual(before);
    expect(first!.sequence).toBeLessThanOrEqual(after);
    expect(first!.sequence).toBeGreaterThan(0n);
    // And so is every later quiet message.
    await stream.waitFor((items) => items.length >= 3, 'more heartbeats', 3000);
    expect(stream.items.every(isHeartbeat)).toBe(true);
    expectOrdered(stream.items);
  });

  test("a user sees the events of their own jobs only; an admin sees everyone's", async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const aliceStream = watchJobs(alice.client);
    const bobStream = watchJobs(bob.client);
    const adminStream = watchJobs(admin);
    for (const stream of [aliceStream, bobStream, adminStream]) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const starts = [aliceStream, bobStream, adminStream].map((stream) => stream.items[0]!.sequence);

    const aliceJobs = [await createNoop(alice.client), await createNoop(alice.client)];
    const bobJobs = [await createNoop(bob.client), await createNoop(bob.client)];
    await waitFinished([...aliceJobs, ...bobJobs].map((job) => job.id));
    const position = await flushedPosition();
    for (const stream of [aliceStream, bobStream, adminStream]) await caughtUp(stream, position);

    for (const [account, stream, jobs, start] of [
      [alice, aliceStream, aliceJobs, starts[0]!],
      [bob, bobStream, bobJobs, starts[1]!],
    ] as const) {
      const events = eventsOf(stream.items);
      expect(events.every((message) => message.job?.ownerId === account.user.id)).toBe(true);
      expect(new Set(events.map((message) => message.job!.id))).toEqual(new Set(jobs.map((job) => job.id)));
      // Exactly the owner's events after the starting point, as the log has them.
      const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [account.user.id, String(start), String(position)]);
      expect(events.map(summary)).toEqual(rows.map(rowSummary));
      for (const job of jobs) {
        expect(events.filter((message) => message.job!.id === job.id).map((message) => `${kindName(message.kind)}/${statusName(message.job!.status)}`)).toEqual([
          'CREATED/QUEUED',
          'UPDATED/RUNNING',
          'UPDATED/SUCCEEDED',
        ]);
      }
      expectOrdered(stream.items);
    }
    const adminEvents = eventsOf(adminStream.items);
    const rows = await eventRows('sequence > $1 and sequence <= $2', [String(starts[2]), String(position)]);
    expect(adminEvents.filter((message) => message.sequence <= position).map(summary)).toEqual(rows.map(rowSummary));
    for (const job of [...aliceJobs, ...bobJobs]) expect(adminEvents.filter((message) => message.job!.id === job.id)).toHaveLength(3);
    expectOrdered(adminStream.items);
  });

  test('filters: types, statuses, labels and owner_id (admins), each on the state after the event', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const filters: Record<string, Partial<JobFilter>> = {
      types: { types: ['stepped'] },
      statuses: { statuses: [JobStatus.SUCCEEDED] },
      labels: { labels: { team: 'blue' } },
      owner: { ownerId: bob.user.id },
      combined: { ownerId: alice.user.id, labels: { team: 'blue' }, statuses: [JobStatus.RUNNING, JobStatus.SUCCEEDED] },
    };
    const streams = Object.fromEntries(Object.entries(filters).map(([name, filter]) => [name, watchJobs(admin, { filter })]));
    const aliceLabelStream = watchJobs(alice.client, { filter: { labels: { team: 'blue' } } });
    const all = [...Object.values(streams), aliceLabelStream];
    for (const stream of all) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = all.map((stream) => stream.items[0]!.sequence).reduce((a, b) => (a > b ? a : b));

    const jobs = [
      await createNoop(alice.client, { labels: { team: 'blue' } }),
      await createNoop(alice.client, { labels: { team: 'red' } }),
      await createNoop(bob.client, { labels: { team: 'blue' } }),
    ];
    const scripted = await createStepped(bob.client, { labels: { team: 'green' } });
    await running(scripted.script);
    scripted.script.succeed();
    await waitFinished([...jobs, scripted.job].map((job) => job.id));
    const position = await flushedPosition();
    for (const stream of all) await caughtUp(stream, position);

    const rows = await eventRows('sequence > $1 and sequence <= $2', [String(start), String(position)]);
    const predicates: Record<string, (row: EventRow) => boolean> = {
      types: (row) => row.payload.type === 'stepped',
      statuses: (row) => row.payload.status === 'succeeded',
      labels: (row) => row.payload.labels['team'] === 'blue',
      owner: (row) => row.owner_id === bob.user.id,
      combined: (row) => row.owner_id === alice.user.id && row.payload.labels['team'] === 'blue' && ['running', 'succeeded'].includes(row.payload.status),
    };
    for (const [name, stream] of Object.entries(streams)) {
      const events = eventsOf(stream.items).filter((message) => message.sequence > start && message.sequence <= position);
      expect(events.map(summary), `filter ${name}`).toEqual(rows.filter(predicates[name]!).map(rowSummary));
      expectOrdered(stream.items);
    }
    // The concrete expectations, so that an empty log cannot pass the comparison above.
    const idsIn = (stream: Recorder<WatchJobsResponse>) => new Set(eventsOf(stream.items).map((message) => message.job!.id));
    expect(idsIn(streams['types']!)).toEqual(new Set([scripted.job.id]));
    expect(eventsOf(streams['types']!.items)).toHaveLength(3);
    expect(eventsOf(streams['statuses']!.items).filter((message) => message.sequence > start).map((message) => message.job!.id).sort()).toEqual(
      [...jobs, scripted.job].map((job) => job.id).sort(),
    );
    expect(idsIn(streams['labels']!)).toEqual(new Set([jobs[0]!.id, jobs[2]!.id]));
    expect(idsIn(streams['owner']!)).toEqual(new Set([jobs[2]!.id, scripted.job.id]));
    expect(eventsOf(streams['combined']!.items).map((message) => `${message.job!.id}/${statusName(message.job!.status)}`)).toEqual([
      `${jobs[0]!.id}/RUNNING`,
      `${jobs[0]!.id}/SUCCEEDED`,
    ]);
    // A user's label filter still covers only their own jobs.
    expect(idsIn(aliceLabelStream)).toEqual(new Set([jobs[0]!.id]));
  });

  test('search matches name and labels word by word, case-insensitively, live and on replay, exactly the jobs ListJobs finds', async () => {
    const { client } = await server.createUser();
    const filter = { search: 'Nightly RENDER' };
    const live = watchJobs(client, { filter });
    await live.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = live.items[0]!.sequence;
    const byName = await createNoop(client, { name: 'nightly render of scene 7' });
    const byLabels = await createNoop(client, { name: 'scene 8', labels: { schedule: 'Nightly', stage: 'render' } });
    const halfMatch = await createNoop(client, { name: 'nightly backup' });
    await waitFinished([byName.id, byLabels.id, halfMatch.id]);
    const expected = [byName.id, byLabels.id].sort();
    await live.waitFor((items) => eventsOf(items).filter((message) => message.job!.status === JobStatus.SUCCEEDED).length >= 2, 'both SUCCEEDED events');
    const replay = watchJobs(client, { filter, afterSequence: start });
    await replay.waitFor((items) => items.some((item) => item.kind === JobEventKind.HEARTBEAT), 'the end of the replay');
    for (const stream of [live, replay]) {
      const events = eventsOf(stream.items);
      expect([...new Set(events.map((message) => message.job!.id))].sort()).toEqual(expected);
      expect(events).toHaveLength(6); // created, running, succeeded of each
    }
    const { jobs } = await client.jobs.listJobs({ filter });
    expect(jobs.map((job) => job.id).sort()).toEqual(expected);
  });

  test('bad filters: a search over 200 characters is InvalidArgument, as are another account as owner_id (users), a malformed owner_id and an unknown status', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const search = await watchJobs(alice.client, { filter: { search: 'x'.repeat(201) } }).end();
    expect(search && Code[search.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(search!)).toEqual(['filter.search']);

    const foreignOwner = await watchJobs(alice.client, { filter: { ownerId: bob.user.id } }).end();
    expect(foreignOwner && Code[foreignOwner.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(foreignOwner!)).toEqual(['filter.owner_id']);
    const malformedOwner = await watchJobs(admin, { filter: { ownerId: 'bob' } }).end();
    expect(malformedOwner && Code[malformedOwner.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(malformedOwner!)).toEqual(['filter.owner_id']);
    const badStatus = await watchJobs(alice.client, { filter: { statuses: [99 as JobStatus] } }).end();
    expect(badStatus && Code[badStatus.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(badStatus!)).toContain('filter.statuses');

    // The user's own id as owner_id is allowed.
    const own = watchJobs(alice.client, { filter: { ownerId: alice.user.id } });
    await own.waitFor((items) => items.length >= 1, 'the first heartbeat');
    expect(own.items[0]!.kind).toBe(JobEventKind.HEARTBEAT);
  });

  test('a deleted job is a DELETED event carrying its last state, live and on replay; WatchJob on it is then NotFound', async () => {
    const { client } = await server.createUser();
    const stream = watchJobs(client);
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = stream.items[0]!.sequence;
    const job = await createNoop(client, { name: 'to delete' });
    await waitFinished([job.id]);
    await client.jobs.deleteJob({ id: job.id });
    await stream.waitFor((items) => eventsOf(items).some((message) => message.kind === JobEventKind.DELETED), 'the DELETED event');
    const deleted = eventsOf(stream.items).find((message) => message.kind === JobEventKind.DELETED)!;
    expect(deleted.job?.id).toBe(job.id);
    expect(deleted.job?.status).toBe(JobStatus.SUCCEEDED);
    expect(deleted.job?.name).toBe('to delete');
    expect(eventsOf(stream.items).map((message) => kindName(message.kind))).toEqual(['CREATED', 'UPDATED', 'UPDATED', 'DELETED']);
    expect(await server.countRows('select count(*) as n from jobs where id = $1', [job.id])).toBe(0);

    const replay = watchJobs(client, { afterSequence: start });
    await replay.waitFor((items) => items.some(isHeartbeat), 'the replay');
    expect(eventsOf(replay.items).map(summary)).toEqual(eventsOf(stream.items).map(summary));
    const gone = await watchJob(client, job.id).end();
    expect(gone && Code[gone.code]).toBe(Code[Code.NotFound]);
  });

  test('over gRPC: heartbeat first, then the events of the caller', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const stream = watchJobs(grpc);
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    expect(stream.items[0]!.kind).toBe(JobEventKind.HEARTBEAT);
    const job = await createNoop(grpc);
    await stream.waitFor((items) => eventsOf(items).some((message) => message.job?.id === job.id && message.job.status === JobStatus.SUCCEEDED), 'the job to succeed');
    expect(eventsOf(stream.items).map((message) => `${kindName(message.kind)}/${statusName(message.job!.status)}`)).toEqual(['CREATED/QUEUED', 'UPDATED/RUNNING', 'UPDATED/SUCCEEDED']);
    expectOrdered(stream.items);
    await stream.cancel();
  });
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs resume', () => {
  test('reconnecting with after_sequence = the last sequence received replays exactly the missed events, then live ones', async () => {
    const { user, client } = await server.createUser();
    const first = watchJobs(client);
    await first.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const early = [await createNoop(client), await createNoop(client)];
    await first.waitFor((items) => early.every((job) => eventsOf(items).some((message) => message.job?.id === job.id && message.job.status === JobStatus.SUCCEEDED)), 'the early jobs to finish');
    await first.cancel();
    expectOrdered(first.items);
    const resumeFrom = eventsOf(first.items).at(-1)!.sequence;

    // While disconnected: jobs created, run, finished, cancelled, and one still queued.
    await admin.queue.pauseQueue({ queue: 'stepped' });
    const missedNoops = [await createNoop(client), await createNoop(client), await createNoop(client)];
    const queued = await createStepped(client);
    const toCancel = await createStepped(client);
    await client.jobs.cancelJob({ id: toCancel.job.id, reason: 'missed' });
    await waitFinished(missedNoops.map((job) => job.id));
    await flushedPosition();
    const missed = await eventRows('owner_id = $1 and sequence > $2', [user.id, String(resumeFrom)]);
    expect(missed.length).toBe(3 * 3 + 1 + 2);

    const second = watchJobs(client, { afterSequence: resumeFrom });
    await second.waitFor((items) => items.some(isHeartbeat), 'the heartbeat after the replay');
    const replayEnd = second.items.findIndex(isHeartbeat);
    const replayed = second.items.slice(0, replayEnd);
    expect(replayed.map(summary)).toEqual(missed.map(rowSummary));
    expect(second.items[replayEnd]!.sequence).toBeGreaterThanOrEqual(BigInt(missed.at(-1)!.sequence));
    // None of the events the first connection already had.
    const seen = new Set(first.items.map((message) => message.sequence));
    expect(replayed.filter((message) => seen.has(message.sequence))).toEqual([]);

    // Then live events.
    await admin.queue.resumeQueue({ queue: 'stepped' });
    await running(queued.script);
    queued.script.succeed();
    await second.waitFor((items) => eventsOf(items).some((message) => message.job?.id === queued.job.id && message.job.status === JobStatus.SUCCEEDED), 'the live events');
    const position = await flushedPosition();
    await caughtUp(second, position);
    const everything = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(resumeFrom), String(position)]);
    expect(eventsOf(second.items).map(summary)).toEqual(everything.map(rowSummary));
    expect(new Set(eventsOf(second.items).map((message) => message.sequence)).size).toBe(eventsOf(second.items).length);
    expectOrdered(second.items);
  });

  test("resuming from a heartbeat's sequence loses nothing: every event up to a heartbeat was sent before it", async () => {
    const { user, client } = await server.createUser();
    const first = watchJobs(client);
    await first.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = first.items[0]!.sequence;
    // Jobs run while the stream is open, so heartbeats interleave with events.
    const during: Job[] = [];
    const until = Date.now() + 1200;
    while (Date.now() < until) {
      during.push(await createNoop(client));
      await sleep(90);
    }
    await waitFinished(during.map((job) => job.id));
    await first.waitFor((items) => items.filter(isHeartbeat).length >= 4, 'heartbeats', 3000);
    await first.cancel();
    expectOrdered(first.items);
    const resumeFrom = first.items.filter(isHeartbeat).at(-1)!.sequence;

    // At every heartbeat, the events sent before it are exactly the log's up to its position.
    const logged = await eventRows('owner_id = $1 and sequence > $2', [user.id, String(start)]);
    first.items.forEach((message, index) => {
      if (!isHeartbeat(message)) return;
      const sentBefore = eventsOf(first.items.slice(0, index)).map(summary);
      expect(sentBefore, `events before the heartbeat at ${message.sequence}`).toEqual(logged.filter((row) => BigInt(row.sequence) <= message.sequence).map(rowSummary));
    });

    // More jobs while disconnected; resuming from the last heartbeat brings exactly what came after it.
    const jobs = [await createNoop(client), await createNoop(client)];
    await waitFinished(jobs.map((job) => job.id));
    const position = await flushedPosition();
    const missed = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(resumeFrom), String(position)]);
    expect(missed.filter((row) => jobs.some((job) => job.id === row.subject_id))).toHaveLength(6);

    const second = watchJobs(client, { afterSequence: resumeFrom });
    await caughtUp(second, position);
    expect(eventsOf(second.items).map(summary)).toEqual(missed.map(rowSummary));
    expectOrdered(second.items);
    // Together the two connections saw every event once.
    const seen = [...eventsOf(first.items), ...eventsOf(second.items)].map(summary);
    expect(seen).toEqual((await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(start), String(position)])).map(rowSummary));
  });

  test('an admin resuming gets every account’s missed events, filtered as asked', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const resumeFrom = await flushedPosition();
    const jobs = [await createNoop(alice.client, { labels: { resume: 'yes' } }), await createNoop(bob.client, { labels: { resume: 'yes' } }), await createNoop(bob.client)];
    await waitFinished(jobs.map((job) => job.id));
    const position = await flushedPosition();
    const stream = watchJobs(admin, { afterSequence: resumeFrom, filter: { labels: { resume: 'yes' } } });
    await caughtUp(stream, position);
    const rows = (await eventRows('sequence > $1 and sequence <= $2', [String(resumeFrom), String(position)])).filter((row) => row.payload.labels['resume'] === 'yes');
    expect(rows).toHaveLength(6);
    expect(eventsOf(stream.items).map(summary)).toEqual(rows.map(rowSummary));
  });

  test('events reach streams on another instance, and a resume there misses nothing', async () => {
    const other = await startTestServer({ database, jobTypes: [steppedJobType, chattyJobType] });
    try {
      const { user, password, client } = await server.createUser();
      const remote = await other.signIn(user.username, password);
      const live = watchJobs(remote);
      await live.waitFor((items) => items.length >= 1, 'the first heartbeat');
      const start = live.items[0]!.sequence;
      const jobs = [await createNoop(client), await createNoop(client)];
      await waitFinished(jobs.map((job) => job.id));
      const position = await flushedPosition();
      await live.waitFor((items) => eventsOf(items).filter((message) => message.job?.status === JobStatus.SUCCEEDED).length >= 2, 'both jobs to succeed', 5000);
      await live.cancel();
      const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(start), String(position)]);
      expect(eventsOf(live.items).filter((message) => message.sequence <= position).map(summary)).toEqual(rows.map(rowSummary));

      const resumed = watchJobs(remote, { afterSequence: start });
      await resumed.waitFor((items) => items.some(isHeartbeat), 'the heartbeat after the replay');
      expect(eventsOf(resumed.items).filter((message) => message.sequence <= position).map(summary)).toEqual(rows.map(rowSummary));
      await resumed.cancel();
    } finally {
      await other.close();
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs resync', () => {
  test('a resume point older than the retained history, or ahead of the newest event, is FailedPrecondition RESYNC_REQUIRED; pruned_through itself is fine', async () => {
    const { user, password, client } = await server.createUser();
    const oldJobs = [await createNoop(client), await createNoop(client)];
    await waitFinished(oldJobs.map((job) => job.id));
    const oldest = await flushedPosition();
    const [{ pruned_through: prunedBefore }] = (await server.query<{ pruned_through: string }>('select pruned_through from event_positions where id = 1')) as [{ pruned_through: string }];
    expect(BigInt(prunedBefore)).toBeLessThan(oldest);

    await server.query(`update events set created_at = now() - interval '30 days' where sequence <= $1`, [String(oldest)]);
    await server.setSetting('jobs.event_retention', '1h');
    try {
      await server.app.runMaintenance();
    } finally {
      await server.setSetting('jobs.event_retention', null);
    }
    const [positions] = await server.query<{ pruned_through: string; last_sequence: string }>('select pruned_through, last_sequence from event_positions where id = 1');
    const prunedThrough = BigInt(positions!.pruned_through);
    expect(prunedThrough).toBe(oldest);
    expect(await server.countRows('select count(*) as n from events where sequence <= $1', [String(oldest)])).toBe(0);

    // Before the retained history: resync.
    for (const afterSequence of [1n, prunedThrough - 1n]) {
      const error = await watchJobs(client, { afterSequence }).end();
      expect(error && Code[error.code], `after_sequence ${afterSequence}`).toBe(Code[Code.FailedPrecondition]);
      expect(reasonOf(error!)).toBe('RESYNC_REQUIRED');
      expect(error!.findDetails(ErrorInfoSchema)[0]?.metadata['oldest_sequence']).toBe(String(prunedThrough + 1n));
    }
    // Ahead of the newest event: resync too.
    const ahead = await watchJobs(client, { afterSequence: BigInt(positions!.last_sequence) + 1000n }).end();
    expect(ahead && Code[ahead.code]).toBe(Code[Code.FailedPrecondition]);
    expect(reasonOf(ahead!)).toBe('RESYNC_REQUIRED');
    expect(ahead!.findDetails(ErrorInfoSchema)[0]?.metadata['newest_sequence']).toBe(positions!.last_sequence);
    // The same over gRPC.
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const grpcError = await watchJobs(grpc, { afterSequence: 1n }).end();
    expect(grpcError && Code[grpcError.code]).toBe(Code[Code.FailedPrecondition]);
    expect(reasonOf(grpcError!)).toBe('RESYNC_REQUIRED');

    // Exactly pruned_through: every later event is still there.
    const newJob = await createNoop(client);
    await waitFinished([newJob.id]);
    const position = await flushedPosition();
    const stream = watchJobs(client, { afterSequence: prunedThrough });
    await caughtUp(stream, position);
    const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(prunedThrough), String(position)]);
    expect(rows.map((row) => row.subject_id)).toEqual([newJob.id, newJob.id, newJob.id]);
    expect(eventsOf(stream.items).map(summary)).toEqual(rows.map(rowSummary));

    // The expectation as a client sees it: a heartbeat's position is always a valid resume point.
    const again = watchJobs(client, { afterSequence: position });
    await again.waitFor((items) => items.length >= 1, 'the first heartbeat');
    expect(again.items[0]!.kind).toBe(JobEventKind.HEARTBEAT);
  });
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs ordering', () => {
  test('200 jobs created concurrently: every created and final event exactly once, in strictly increasing order', async () => {
    const { user, client } = await server.createUser();
    const stream = watchJobs(client, { filter: { types: ['noop'] } });
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = stream.items[0]!.sequence;

    const jobs = await Promise.all(Array.from({ length: 200 }, (_, index) => createNoop(client, { name: `concurrent ${index}` })));
    const ids = jobs.map((job) => job.id);
    expect(new Set(ids).size).toBe(200);
    await stream.waitFor(
      (items) => eventsOf(items).filter((message) => message.job?.status === JobStatus.SUCCEEDED).length >= 200,
      'all 200 jobs to succeed',
      20_000,
    );
    const position = await flushedPosition();
    await caughtUp(stream, position);

    const events = eventsOf(stream.items);
    expectOrdered(stream.items);
    for (const id of ids) {
      const ofJob = events.filter((message) => message.job!.id === id);
      expect(ofJob.filter((message) => message.kind === JobEventKind.CREATED), `created of ${id}`).toHaveLength(1);
      expect(ofJob.filter((message) => message.job!.status === JobStatus.SUCCEEDED), `final of ${id}`).toHaveLength(1);
      expect(ofJob.at(-1)!.job!.status).toBe(JobStatus.SUCCEEDED);
    }
    expect(new Set(events.map((message) => message.sequence)).size).toBe(events.length);
    const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(start), String(position)]);
    expect(rows).toHaveLength(600);
    expect(events.map(summary)).toEqual(rows.map(rowSummary));
    // The log itself has no hole in its positions.
    const [gaps] = await server.query<{ n: string; lo: string; hi: string }>(
      'select count(*) as n, min(sequence) as lo, max(sequence) as hi from events where sequence > $1 and sequence <= $2',
      [String(start), String(position)],
    );
    expect(Number(gaps!.n)).toBe(Number(gaps!.hi) - Number(gaps!.lo) + 1);
  });
});

// ---------------------------------------------------------------------------------------

describe('StreamJobLogs', () => {
  const linesOf = (messages: StreamJobLogsResponse[]) => messages.flatMap((message) => message.lines);

  test('with follow: stored lines, then live ones, every line exactly once and in order, and the end after the job finishes', async () => {
    const { client } = await server.createUser();
    const total = 40;
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: total, intervalMs: 40 } });
    // Start following once part of the log is stored.
    const deadline = Date.now() + 10_000;
    while ((await server.countRows('select count(*) as n from job_log_lines where job_id = $1', [job!.id])) < 6) {
      if (Date.now() > deadline) throw new Error('the job wrote no lines');
      await sleep(20);
    }
    const stream = streamLogs(client, { id: job!.id, follow: true });
    expect(await stream.end(15_000), 'the stream should end by itself once the job has finished').toBeUndefined();

    const lines = linesOf(stream.items);
    expect(lines.map((line) => Number(line.sequence))).toEqual(Array.from({ length: total }, (_, index) => index + 1));
    expect(lines.map((line) => line.message)).toEqual(Array.from({ length: total }, (_, index) => `line ${index + 1}`));
    expect(lines.every((line) => line.attempt === 1 && line.time !== undefined)).toBe(true);
    // The first message held the lines already stored; later ones came live.
    expect(stream.items[0]!.lines.length).toBeGreaterThanOrEqual(6);
    expect(stream.items.filter((message) => message.lines.length > 0).length).toBeGreaterThan(1);
    const [row] = await server.query<{ status: string; log_count: number }>('select status, log_count from jobs where id = $1', [job!.id]);
    expect(row).toEqual({ status: 'succeeded', log_count: total });
  });

  test('without follow: the stored lines, then the end (also while the job still runs)', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    for (let line = 1; line <= 3; line++) script.log(`early ${line}`);
    const deadline = Date.now() + 5000;
    while ((await server.countRows('select count(*) as n from job_log_lines where job_id = $1', [job.id])) < 3) {
      if (Date.now() > deadline) throw new Error('the lines were not stored');
      await sleep(20);
    }
    const whileRunning = streamLogs(client, { id: job.id });
    expect(await whileRunning.end()).toBeUndefined();
    expect(linesOf(whileRunning.items).map((line) => line.message)).toEqual(['early 1', 'early 2', 'early 3']);

    script.log('late');
    script.succeed();
    await waitFinished([job.id]);
    const finished = streamLogs(client, { id: job.id, follow: false });
    expect(await finished.end()).toBeUndefined();
    expect(linesOf(finished.items).map((line) => `${line.sequence}:${line.message}`)).toEqual(['1:early 1', '2:early 2', '3:early 3', '4:late']);
    // A job without lines: no lines, and the end.
    const quiet = await createNoop(client);
    await waitFinished([quiet.id]);
    const empty = streamLogs(client, { id: quiet.id, follow: true });
    expect(await empty.end()).toBeUndefined();
    expect(linesOf(empty.items)).toEqual([]);
  });

  test('following a job that never runs (queued, then cancelled) ends when it is cancelled', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'chatty' });
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: 3, intervalMs: 0 } });
    const stream = streamLogs(client, { id: job!.id, follow: true });
    await stream.waitFor((items) => items.length >= 2, 'heartbeats while queued', 3000);
    expect(stream.done).toBe(false);
    await client.jobs.cancelJob({ id: job!.id });
    expect(await stream.end(3000)).toBeUndefined();
    expect(linesOf(stream.items)).toEqual([]);
  });

  test('after_sequence skips the lines up to it, with and without follow', async () => {
    const { client } = await server.createUser();
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: 20, intervalMs: 20 } });
    const following = streamLogs(client, { id: job!.id, follow: true, afterSequence: 12n });
    expect(await following.end(10_000)).toBeUndefined();
    expect(linesOf(following.items).map((line) => Number(line.sequence))).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
    const stored = streamLogs(client, { id: job!.id, afterSequence: 18n });
    expect(await stored.end()).toBeUndefined();
    expect(linesOf(stored.items).map((line) => line.message)).toEqual(['line 19', 'line 20']);
    const beyond = streamLogs(client, { id: job!.id, afterSequence: 50n });
    expect(await beyond.end()).toBeUndefined();
    expect(linesOf(beyond.items)).toEqual([]);
  });

  test('while following a quiet job, heartbeats are empty messages', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = streamLogs(client, { id: job.id, follow: true });
    await stream.waitFor((items) => items.length >= 4, 'four heartbeats', 3000);
    expect(stream.items.every((message) => message.lines.length === 0)).toBe(true);
    script.log('finally something');
    await stream.waitFor((items) => linesOf(items).length === 1, 'the line');
    script.succeed();
    expect(await stream.end()).toBeUndefined();
    expect(linesOf(stream.items).map((line) => line.message)).toEqual(['finally something']);
  });

  test('while following, heartbeats keep coming even when the job changes often without writing lines', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = streamLogs(client, { id: job.id, follow: true });
    await stream.waitFor((items) => items.length >= 1, 'a first heartbeat', 3000);
    // Job events (renames) far more often than the heartbeat interval, for a while.
    const until = Date.now() + 1500;
    let renames = 0;
    const countBefore = stream.items.length;
    while (Date.now() < until) {
      await client.jobs.updateJob({ job: { id: job.id, name: `rename ${renames++}` }, updateMask: { paths: ['name'] } });
      await sleep(30);
    }
    const heartbeats = stream.items.length - countBefore;
    script.succeed();
    expect(await stream.end()).toBeUndefined();
    expect(renames).toBeGreaterThan(10);
    // 1.5 s at one heartbeat per 200 ms of silence: several empty messages, whatever else happens.
    expect(heartbeats, `heartbeats received in 1.5 s of job events without log lines (interval ${heartbeatMs} ms)`).toBeGreaterThanOrEqual(3);
  });

  test("another user's job is NotFound; an admin may read any job's log; a malformed id is InvalidArgument", async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const { job } = await owner.client.jobs.createJob({ type: 'chatty', params: { lines: 2, intervalMs: 0 } });
    await waitFinished([job!.id]);
    for (const follow of [false, true]) {
      const error = await streamLogs(other.client, { id: job!.id, follow }).end();
      expect(error && Code[error.code]).toBe(Code[Code.NotFound]);
    }
    const unknown = await streamLogs(owner.client, { id: '01900000-0000-7000-8000-000000000000' }).end();
    expect(unknown && Code[unknown.code]).toBe(Code[Code.NotFound]);
    const malformed = await streamLogs(owner.client, { id: 'nope' }).end();
    expect(malformed && Code[malformed.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(malformed!)).toEqual(['id']);
    const asAdmin = streamLogs(admin, { id: job!.id, follow: true });
    expect(await asAdmin.end()).toBeUndefined();
    expect(linesOf(asAdmin.items).map((line) => line.message)).toEqual(['line 1', 'line 2']);
  });

  test('over gRPC: follows to the end', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const { job } = await grpc.jobs.createJob({ type: 'chatty', params: { lines: 15, intervalMs: 30 } });
    const stream = streamLogs(grpc, { id: job!.id, follow: true });
    expect(await stream.end(10_000)).toBeUndefined();
    expect(linesOf(stream.items).map((line) => Number(line.sequence))).toEqual(Array.from({ length: 15 }, (_, index) => index + 1));
    const other = await server.createUser();
    const grpcOther = server.client({ protocol: 'grpc' });
    await grpcOther.login(other.user.username, other.password);
    const error = await streamLogs(grpcOther, { id: job!.id }).end();
    expect(error && Code[error.code]).toBe(Code[Code.NotFound]);
  });
});

// ---------------------------------------------------------------------------------------

describe('credentials of open streams', () => {
  /** Opens WatchJobs as a fresh account and waits for its first heartbeat. */
  async function openStreamOf() {
    const user = await server.createUser();
    const stream = watchJobs(user.client);
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    return { user, stream };
  }

  async function expectEndedWith(stream: Recorder<WatchJobsResponse>, reason: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!stream.done && Date.now() < deadline) await sleep(50);
    const error = await stream.ended;
    expect(error && `${Code[error.code]} ${reasonOf(error)}`).toBe(`${Code[Code.Unauthenticated]} ${reason}`);
  }

  test('a stream ends Unauthenticated soon after its account is deactivated, its session ended, or its role changed; other streams go on', async () => {
    const deactivated = await openStreamOf();
    const loggedOut = await openStreamOf();
    const promoted = await openStreamOf();
    const untouched = await openStreamOf();
    await admin.admin.updateUser({ user: { id: deactivated.user.user.id, active: false }, updateMask: { paths: ['active'] } });
    await loggedOut.user.client.auth.logout({ allSessions: true });
    await admin.admin.updateUser({ user: { id: promoted.user.user.id, role: Role.ADMIN }, updateMask: { paths: ['role'] } });
    const endedAt = Date.now();
    // Deactivation ends the account's sessions.
    await expectEndedWith(deactivated.stream, 'SESSION_REVOKED');
    await expectEndedWith(loggedOut.stream, 'SESSION_REVOKED');
    await expectEndedWith(promoted.stream, 'CREDENTIALS_CHANGED');
    expect(Date.now() - endedAt).toBeLessThan(10_000);
    // The others' streams go on.
    const before = untouched.stream.items.length;
    await untouched.stream.waitFor((items) => items.length > before, 'another heartbeat');
    expect(untouched.stream.done).toBe(false);
  });
});

describe('streams per account', () => {
  test('an account holds at most 100 open streams on one server: the next is ResourceExhausted TOO_MANY_STREAMS until one closes; admins are not limited', async () => {
    const { client } = await server.createUser();
    const streams = Array.from({ length: 100 }, () => watchJobs(client));
    for (const stream of streams) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const refused = await watchJobs(client).end();
    expect(refused && `${Code[refused.code]} ${reasonOf(refused)}`).toBe(`${Code[Code.ResourceExhausted]} TOO_MANY_STREAMS`);
    await streams[0]!.cancel();
    // The server learns of the cancel a moment later.
    let reopened = false;
    for (let attempt = 0; attempt < 50 && !reopened; attempt++) {
      const again = watchJobs(client);
      const first = await Promise.race([again.waitFor((items) => items.length >= 1, 'a heartbeat').then(() => true, () => false), again.ended.then(() => false)]);
      reopened = first;
      if (!first) await sleep(50);
    }
    expect(reopened).toBe(true);
    const adminStreams = Array.from({ length: 110 }, () => watchJobs(admin));
    for (const stream of adminStreams) await stream.waitFor((items) => items.length >= 1, 'an admin stream heartbeat');
  });
});

describe('slow clients', () => {
  test('a WatchJobs client that stops reading is cut off with ResourceExhausted STREAM_OVERFLOW, and resumes from its last sequence', async () => {
    const { user, client } = await server.createUser();
    const job = await createNoop(client);
    await waitFinished([job.id]);
    const start = await flushedPosition();

    // A stream read by hand: one message, then no reading at all for a while.
    const abort = new AbortController();
    const iterator = client.jobs.watchJobs({}, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      const first = await iterator.next();
      expect(first.value?.kind).toBe(JobEventKind.HEARTBEAT);
      // A cheap stream that reads, whose heartbeats tell when this instance has handed the
      // whole burst to every subscribed stream (its filter matches none of the burst).
      const witness = watchJobs(client, { filter: { types: ['chatty'] } });
      await witness.waitFor((items) => items.length >= 1, 'the first heartbeat');

      // A burst of the user's events far larger than the per-stream bound (10,000) plus what
      // the sockets hold (about 11,000 such messages here). Through the API this would take minutes, so the rows are written the
      // way the writing transactions write them (unsequenced) and the sequencer numbers them.
      const burst = 40_000;
      await server.query(
        `insert into events (created_at, kind, subject_id, owner_id, payload)
         select now(), 'job.updated', subject_id, owner_id, payload from events, generate_series(1, $2)
          where sequence = (select max(sequence) from events where subject_id = $1)`,
        [job.id, burst],
      );
      const position = await flushedPosition();
      expect(position - start).toBe(BigInt(burst));
      await caughtUp(witness, position, 20_000);

      // Reading again: what the sockets held arrives, then the stream ends with the overflow.
      let received = 1;
      let lastSequence = first.value!.sequence;
      let failure: ConnectError | undefined;
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done) break;
          received++;
          if (next.value.kind !== JobEventKind.HEARTBEAT) lastSequence = next.value.sequence;
        }
      } catch (error) {
        failure = ConnectError.from(error);
      }
      expect(failure, 'the slow stream should have been cut off').toBeDefined();
      expect(Code[failure!.code], failure!.rawMessage).toBe(Code[Code.ResourceExhausted]);
      expect(reasonOf(failure!)).toBe('STREAM_OVERFLOW');
      expect(received, 'messages received before the cut (the rest of the burst was dropped, not queued)').toBeLessThan(burst);

      // The client resumes from the last sequence it received and gets the rest, once each.
      const resumed = watchJobs(client, { afterSequence: lastSequence });
      await caughtUp(resumed, position, 30_000);
      const rest = eventsOf(resumed.items);
      expect(rest.length).toBe(Number(position - lastSequence));
      expect(rest[0]!.sequence).toBe(lastSequence + 1n);
      expect(rest.at(-1)!.sequence).toBe(position);
      expectOrdered(resumed.items);
      expect(rest.every((message) => message.job?.id === job.id && message.job.ownerId === user.id)).toBe(true);
    } finally {
      abort.abort();
      await iterator.return?.().catch(() => undefined);
    }
  }, 60_000);
});
