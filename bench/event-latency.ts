/**
 * Figure (b): how fast a finished job reaches 1,000 WatchJobs streams, and what an open
 * stream costs the server in memory.
 *
 * Latency: noop jobs are submitted at a steady pace; for each one and each stream, the
 * delay from the job's finish_time (set by the server as the handler returns, before
 * the commit) to the arrival of its SUCCEEDED event. Baseline: the delay from sending an
 * autocommit NOTIFY to its arrival on a LISTEN connection, on the same database.
 *
 * Memory: the server process's RSS before the streams are opened and with all of them
 * open, each read right after a full garbage collection, divided by their number. Baseline: the same for a bare node:http2 server that
 * holds the same number of open streams (bench/bare-stream-server.ts).
 *
 * The streams are read as raw gRPC frames (what the server sends, as curl would read it),
 * or with `--reader client` by the typed client (connect-node), which adds its own
 * decoding of every message of every stream to the figure.
 *
 *   npx node bench/event-latency.ts [--streams 1000] [--connections 10] [--latency-jobs 60] [--interval-ms 500] [--reader raw|client]
 */
import http2 from 'node:http2';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fromBinary } from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { requestNoopWatch } from './raw-watch-jobs.ts';
import pg from 'pg';
import { JobEventKind, JobStatus, WatchJobsResponseSchema, type WatchJobsResponse } from '../gen/yardmaster/v1/jobs_pb.ts';
import { createYardmasterClient, type YardmasterClient } from '../clients/ts/src/node.ts';
import {
  adminPassword,
  positiveFlag,
  describeMachine,
  percentile,
  printSummary,
  processCpuMs,
  startBenchPostgres,
  startNodeProcess,
  startServerProcess,
  wallClockMs,
  type BenchPostgres,
  type Figure,
  type ServerProcess,
} from './support.ts';

export interface LatencyOptions {
  /** WatchJobs streams open at once. */
  streams: number;
  /** HTTP/2 connections the streams are spread over (one client each). */
  connections: number;
  /** Jobs whose SUCCEEDED event is timed on every stream. */
  jobs: number;
  /** Pause between two job submissions. */
  intervalMs: number;
  /** What reads the streams: raw gRPC frames (what the server sends) or the typed client (what an application gets). */
  reader: StreamReader;
}

export const latencyDefaults: LatencyOptions = { streams: 1000, connections: 10, jobs: 60, intervalMs: 500, reader: 'raw' };

const notifySamples = 1000;
const deliveryTimeoutMs = 60_000;

/** Delay from sending `select pg_notify(...)` (autocommit) to the notification's arrival on another connection. */
async function measureNotifyLatency(databaseUrl: string): Promise<number[]> {
  const listener = new pg.Client({ connectionString: databaseUrl });
  const notifier = new pg.Client({ connectionString: databaseUrl });
  await listener.connect();
  await notifier.connect();
  try {
    await listener.query('listen bench_latency');
    const delays: number[] = [];
    let sentAt = 0;
    let arrived: () => void = () => {};
    listener.on('notification', () => {
      delays.push(wallClockMs() - sentAt);
      arrived();
    });
    for (let index = 0; index < notifySamples; index++) {
      const arrival = new Promise<void>((resolve) => (arrived = resolve));
      sentAt = wallClockMs();
      await notifier.query('select pg_notify($1, $2)', ['bench_latency', String(index)]);
      await arrival;
    }
    return delays;
  } finally {
    await listener.end();
    await notifier.end();
  }
}

/** RSS growth per open stream of the bare node:http2 server. */
async function measureBareStreamMemory(options: LatencyOptions): Promise<number> {
  const server = await startNodeProcess(path.join(import.meta.dirname, 'bare-stream-server.ts'), { inspect: true });
  const sessions: http2.ClientHttp2Session[] = [];
  const openStreams = async (count: number) => {
    const session = http2.connect(server.url);
    session.on('error', () => {});
    sessions.push(session);
    await Promise.all(
      Array.from(
        { length: count },
        () =>
          new Promise<void>((resolve, reject) => {
            const stream = session.request({ ':method': 'POST', ':path': '/' });
            stream.once('data', () => resolve());
            stream.once('error', reject);
          }),
      ),
    );
  };
  try {
    // Loads and warms the HTTP/2 code before the "before" reading, as the warm-up jobs do for our server.
    await openStreams(10);
    const before = await server.retainedRssBytes();
    const perConnection = Math.ceil(options.streams / options.connections);
    await Promise.all(
      Array.from({ length: options.connections }, (_, index) =>
        openStreams(Math.min(perConnection, options.streams - index * perConnection)),
      ),
    );
    return ((await server.retainedRssBytes()) - before) / options.streams;
  } finally {
    for (const session of sessions) session.destroy();
    await server.stop();
  }
}

/** Which client reads the streams: raw gRPC frames over node:http2, or the typed client. */
export type StreamReader = 'raw' | 'client';
const readerNames: Record<StreamReader, string> = { raw: 'as raw frames', client: 'by the typed client' };

/**
 * Streams that time every SUCCEEDED event they receive. They open after the warm-up
 * jobs have finished and receive only live events, so every such event is a timed job's.
 */
class Watchers {
  readonly delays: Float64Array;
  readonly #streams: number;
  #recorded = 0;
  readonly #expected: number;
  #ready = 0;
  #allReady: () => void = () => {};
  #allDelivered: () => void = () => {};
  readonly ready: Promise<void>;
  readonly delivered: Promise<void>;
  readonly #loops: Promise<void>[] = [];
  readonly #controller = new AbortController();
  readonly #sessions: http2.ClientHttp2Session[] = [];
  /** Each event's message, decoded by the first raw stream that receives it (every stream gets the same bytes). */
  readonly #decoded = new Map<string, WatchJobsResponse>();

  constructor(streams: number, jobs: number) {
    this.#streams = streams;
    this.delays = new Float64Array(streams * jobs);
    this.#expected = streams * jobs;
    this.ready = new Promise((resolve) => (this.#allReady = resolve));
    this.delivered = new Promise((resolve) => (this.#allDelivered = resolve));
  }

  get recorded(): number {
    return this.#recorded;
  }

  /** Handles one message of a stream that arrived at `arrivedAt`; returns whether the stream is now ready. */
  #receive(message: WatchJobsResponse, arrivedAt: number, announced: boolean): boolean {
    // The first message is a heartbeat: from then on, every matching event reaches this stream.
    if (!announced && message.kind === JobEventKind.HEARTBEAT) {
      if (++this.#ready === this.#streams) this.#allReady();
      return true;
    }
    const job = message.job;
    if (job?.status !== JobStatus.SUCCEEDED || !job.finishTime || this.#recorded === this.#expected) return announced;
    this.delays[this.#recorded++] = arrivedAt - timestampMs(job.finishTime);
    if (this.#recorded === this.#expected) this.#allDelivered();
    return announced;
  }

  /** A stream read by the typed client (connect-node, gRPC): what an application gets. */
  openTyped(client: YardmasterClient): void {
    const loop = async () => {
      let announced = false;
      const messages = client.jobs.watchJobs({ filter: { types: ['noop'] } }, { signal: this.#controller.signal });
      for await (const message of messages) announced = this.#receive(message, wallClockMs(), announced);
    };
    this.#loops.push(
      loop().catch((error: unknown) => {
        if (!this.#controller.signal.aborted) throw error;
      }),
    );
  }

  /** An HTTP/2 connection for raw streams, with the typed client's receive windows. */
  connect(url: string): http2.ClientHttp2Session {
    const session = http2.connect(url, { settings: { initialWindowSize: 4 * 2 ** 20 } });
    session.on('error', () => {});
    session.on('connect', () => session.setLocalWindowSize(64 * 2 ** 20));
    this.#sessions.push(session);
    return session;
  }

  /**
   * A stream read as raw gRPC frames, as a curl-like client would: the arrival time is
   * that of the bytes, not of a client library's decoding. Each frame's sequence is read
   * from its first bytes; the message of an event is decoded once, by the first stream
   * that receives it.
   */
  openRaw(session: http2.ClientHttp2Session, apiKey: string): void {
    const stream = requestNoopWatch(session, apiKey);
    let pending: Buffer = Buffer.alloc(0);
    let announced = false;
    stream.on('data', (chunk: Buffer) => {
      const arrivedAt = wallClockMs();
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let offset = 0;
      while (pending.length - offset >= 5) {
        const length = pending.readUInt32BE(offset + 1);
        if (pending.length - offset - 5 < length) break;
        const bytes = pending.subarray(offset + 5, offset + 5 + length);
        offset += 5 + length;
        announced = this.#receive(this.#decode(bytes), arrivedAt, announced);
      }
      pending = pending.subarray(offset);
    });
    stream.on('error', () => {});
    this.#loops.push(
      new Promise((resolve) => {
        stream.on('close', () => resolve());
        this.#controller.signal.addEventListener('abort', () => stream.close(), { once: true });
      }),
    );
  }

  #decode(bytes: Uint8Array): WatchJobsResponse {
    // An event: field 1 (sequence, varint), then field 2 (the job). A heartbeat has no job.
    const reader = new BinaryReader(bytes);
    if (reader.uint32() !== 0x08) return fromBinary(WatchJobsResponseSchema, bytes);
    const sequence = String(reader.uint64());
    if (reader.pos >= bytes.length || bytes[reader.pos] !== 0x12) return fromBinary(WatchJobsResponseSchema, bytes);
    let message = this.#decoded.get(sequence);
    if (!message) {
      message = fromBinary(WatchJobsResponseSchema, bytes);
      this.#decoded.set(sequence, message);
    }
    return message;
  }

  async close(): Promise<void> {
    this.#controller.abort();
    await Promise.all(this.#loops);
    for (const session of this.#sessions) session.destroy();
  }
}

/**
 * Opens and closes a few WatchJobs streams before the "before" readings, as the bare
 * server's are warmed: what the first streams cost once (the stream path's compiled code,
 * its caches) is then not counted as memory per open stream.
 */
async function warmStreamPath(url: string, apiKey: string): Promise<void> {
  const session = http2.connect(url);
  session.on('error', () => {});
  const streams = await Promise.all(
    Array.from({ length: 10 }, () => {
      const stream = requestNoopWatch(session, apiKey);
      stream.on('error', () => {});
      return new Promise<http2.ClientHttp2Stream>((resolve) => stream.once('data', () => resolve(stream)));
    }),
  );
  await Promise.all(
    streams.map((stream) => new Promise((resolve) => stream.close(http2.constants.NGHTTP2_CANCEL, () => resolve(undefined)))),
  );
  session.destroy();
  // Lets the server see the streams end before it is measured.
  await sleep(200);
}

async function createJobAndWait(client: YardmasterClient): Promise<void> {
  const { job } = await client.jobs.createJob({ type: 'noop' });
  for await (const message of client.jobs.watchJob({ id: job!.id })) {
    if (message.job?.status === JobStatus.SUCCEEDED) return;
  }
}

export async function measureEventLatency(postgres: BenchPostgres, options: LatencyOptions): Promise<Figure[]> {
  console.log(
    `event latency: ${options.streams} WatchJobs streams over ${options.connections} HTTP/2 connections (gRPC, read ${readerNames[options.reader]}), ` +
      `${options.jobs} noop jobs submitted one every ${options.intervalMs} ms`,
  );
  const databaseUrl = await postgres.createDatabase('bench_latency');
  const notifyDelays = await measureNotifyLatency(databaseUrl);
  console.log(
    `  NOTIFY to LISTEN: p50 ${percentile(notifyDelays, 50).toFixed(2)} ms, p99 ${percentile(notifyDelays, 99).toFixed(2)} ms over ${notifySamples} notifications`,
  );
  const bareBytesPerStream = await measureBareStreamMemory(options);
  console.log(`  bare node:http2 server: ${(bareBytesPerStream / 1024).toFixed(1)} KiB RSS per open stream (after a full GC)`);

  const server: ServerProcess = await startServerProcess(databaseUrl, { inspect: true });
  const clients: YardmasterClient[] = [];
  const watchers = new Watchers(options.streams, options.jobs);
  try {
    const admin = createYardmasterClient({ baseUrl: server.url, protocol: 'grpc' });
    clients.push(admin);
    await admin.login('admin', adminPassword);
    // Runs the whole job path (create, run, sequence, stream) before the first memory reading.
    for (let index = 0; index < 20; index++) await createJobAndWait(admin);
    const { secret } = await admin.auth.createApiKey({ name: 'bench-watchers' });
    await warmStreamPath(server.url, secret);
    const heapBefore = await server.retainedHeapBytes();
    const rssBefore = await server.retainedRssBytes();

    if (options.reader === 'client') {
      for (let index = 0; index < options.connections; index++) {
        clients.push(createYardmasterClient({ baseUrl: server.url, protocol: 'grpc', apiKey: secret }));
      }
      for (let index = 0; index < options.streams; index++) watchers.openTyped(clients[1 + (index % options.connections)]!);
    } else {
      const sessions = Array.from({ length: options.connections }, () => watchers.connect(server.url));
      for (let index = 0; index < options.streams; index++) watchers.openRaw(sessions[index % options.connections]!, secret);
    }
    const openStarted = performance.now();
    await watchers.ready;
    const openMs = performance.now() - openStarted;
    const heapOpen = await server.retainedHeapBytes();
    const rssOpen = await server.retainedRssBytes();
    const bytesPerStream = (rssOpen - rssBefore) / options.streams;
    // The JS heap alone (no pages V8 keeps for a grown young generation): steadier than RSS.
    console.log(`  server: JS heap after a full GC: ${((heapOpen - heapBefore) / options.streams / 1024).toFixed(1)} KiB per stream`);
    console.log(
      `  server: RSS after a full GC ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ${(rssOpen / 2 ** 20).toFixed(1)} MiB with ${options.streams} streams open ` +
        `(all open after ${Math.round(openMs)} ms): ${(bytesPerStream / 1024).toFixed(1)} KiB per stream`,
    );

    const serverCpuBefore = processCpuMs(server.pid);
    const clientCpuBefore = process.cpuUsage();
    const started = performance.now();
    for (let index = 0; index < options.jobs; index++) {
      const due = started + index * options.intervalMs;
      if (due > performance.now()) await sleep(due - performance.now());
      await admin.jobs.createJob({ type: 'noop' });
    }
    const giveUp = new AbortController();
    const timeout = sleep(deliveryTimeoutMs, 'timeout' as const, { signal: giveUp.signal }).catch(() => 'cancelled' as const);
    const outcome = await Promise.race([watchers.delivered, timeout]);
    giveUp.abort();
    if (outcome === 'timeout') {
      throw new Error(
        `only ${watchers.recorded} of ${options.streams * options.jobs} SUCCEEDED deliveries arrived within ${deliveryTimeoutMs / 1000} s of the last submission`,
      );
    }
    // CPU per delivered event (each job's three events reach every stream): far steadier than
    // the latencies when other work shares the machine, and it says which side the time is on.
    const deliveries = options.jobs * 3 * options.streams;
    const serverCpuUs = ((processCpuMs(server.pid) - serverCpuBefore) * 1000) / deliveries;
    const clientCpu = process.cpuUsage(clientCpuBefore);
    const clientCpuUs = (clientCpu.user + clientCpu.system) / deliveries;
    console.log(
      `  CPU per event delivered to one stream: server ${serverCpuUs.toFixed(1)} µs, benchmark process (the ${options.connections} clients reading every stream) ${clientCpuUs.toFixed(1)} µs`,
    );
    const delays = [...watchers.delays];
    const rssAfter = await server.retainedRssBytes();
    console.log(
      `  SUCCEEDED events: p50 ${percentile(delays, 50).toFixed(1)} ms, p99 ${percentile(delays, 99).toFixed(1)} ms, max ${percentile(delays, 100).toFixed(1)} ms ` +
        `over ${delays.length} deliveries; server RSS ${(rssAfter / 2 ** 20).toFixed(1)} MiB after them`,
    );

    const setting = `${options.streams} streams on ${options.connections} HTTP/2 connections read ${readerNames[options.reader]}, ${options.jobs} jobs one every ${options.intervalMs} ms, every noop event sent to every stream`;
    return [
      {
        name: 'event latency p50',
        unit: 'ms',
        ours: percentile(delays, 50),
        baseline: percentile(notifyDelays, 50),
        baselineName: 'NOTIFY to a LISTEN client, p50',
        notes: [`finish_time to SUCCEEDED on each stream, ${delays.length} deliveries; ${setting}`],
      },
      {
        name: 'event latency p99',
        unit: 'ms',
        ours: percentile(delays, 99),
        baseline: percentile(notifyDelays, 99),
        baselineName: 'NOTIFY to a LISTEN client, p99',
        notes: [
          `baseline: autocommit pg_notify sent to its arrival on a LISTEN connection, ${notifySamples} samples on the same database`,
          `CPU per event delivered to one stream: server ${serverCpuUs.toFixed(1)} µs, the benchmark's clients ${clientCpuUs.toFixed(1)} µs`,
        ],
      },
      {
        name: 'memory per stream',
        unit: 'KiB',
        ours: bytesPerStream / 1024,
        baseline: bareBytesPerStream / 1024,
        baselineName: 'bare node:http2 server stream',
        notes: [
          `server RSS after a full GC: ${(rssBefore / 2 ** 20).toFixed(1)} MiB before the streams, ${(rssOpen / 2 ** 20).toFixed(1)} MiB with ${options.streams} open, ${(rssAfter / 2 ** 20).toFixed(1)} MiB after the events`,
        ],
      },
    ];
  } finally {
    await watchers.close();
    for (const client of clients) client.close();
    await server.stop();
  }
}

/** Command-line flags of this figure (bench/run.ts accepts them too). */
export const latencyFlags = {
  streams: { type: 'string' },
  connections: { type: 'string' },
  'latency-jobs': { type: 'string' },
  'interval-ms': { type: 'string' },
  reader: { type: 'string' },
} as const;

function readerFlag(value: unknown): StreamReader {
  if (value === undefined) return latencyDefaults.reader;
  if (value === 'raw' || value === 'client') return value;
  throw new Error(`--reader must be raw or client, not ${String(value)}`);
}

export function latencyOptionsFrom(values: Record<string, unknown>): LatencyOptions {
  return {
    streams: positiveFlag(values, 'streams', latencyDefaults.streams),
    connections: positiveFlag(values, 'connections', latencyDefaults.connections),
    jobs: positiveFlag(values, 'latency-jobs', latencyDefaults.jobs),
    intervalMs: positiveFlag(values, 'interval-ms', latencyDefaults.intervalMs),
    reader: readerFlag(values.reader),
  };
}

if (import.meta.main) {
  const options = latencyOptionsFrom(parseArgs({ options: latencyFlags }).values);
  const postgres = await startBenchPostgres();
  try {
    const figures = await measureEventLatency(postgres, options);
    printSummary(figures, describeMachine(postgres.version));
  } finally {
    await postgres.stop();
  }
}
