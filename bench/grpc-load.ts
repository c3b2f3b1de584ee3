/**
 * A small gRPC load generator for HTTP/2 (there is no h2load on the bench machines):
 * worker threads, each with its share of `connections` node:http2 sessions, each keeping
 * `streamsPerConnection` calls in flight. Every call sends a pre-encoded request frame (the
 * same one, or the next of `messages` in turn), so the generator does no protobuf work; a call counts as OK only when its
 * grpc-status is 0. Latency is measured per call, from request to trailers.
 */
import http2 from 'node:http2';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export interface GrpcLoadOptions {
  url: string;
  /** e.g. /yardmaster.v1.JobsService/GetJob */
  path: string;
  /** Extra request headers (authorization). */
  headers: Record<string, string>;
  /** The serialized request message (without the 5-byte gRPC frame header). */
  message: Uint8Array;
  /** Several messages instead, sent in turn (e.g. GetJob over many jobs). */
  messages?: Uint8Array[];
  connections: number;
  streamsPerConnection: number;
  durationMs: number;
  /** Worker threads sharing the connections. */
  threads: number;
}

export interface GrpcLoadResult {
  ok: number;
  failed: number;
  /** The grpc-status (or error) of the first failed call, if any. */
  firstFailure: string | undefined;
  elapsedMs: number;
  /** Latency of every OK call, milliseconds. */
  latenciesMs: Float64Array;
}

interface WorkerJob extends Omit<GrpcLoadOptions, 'threads' | 'messages'> {
  frames: Uint8Array[];
}

interface WorkerReport {
  ok: number;
  failed: number;
  firstFailure: string | undefined;
  latencies: Float64Array;
}

export async function runGrpcLoad(options: GrpcLoadOptions): Promise<GrpcLoadResult> {
  const { threads, messages, ...rest } = options;
  const frames = (messages ?? [rest.message]).map((message) => {
    const frame = new Uint8Array(5 + message.byteLength);
    new DataView(frame.buffer).setUint32(1, message.byteLength);
    frame.set(message, 5);
    return frame;
  });
  const started = performance.now();
  const reports = await Promise.all(
    Array.from({ length: threads }, (_, index) => {
      const connections = Math.floor(rest.connections / threads) + (index < rest.connections % threads ? 1 : 0);
      const worker = new Worker(new URL(import.meta.url), { workerData: { ...rest, connections, frames } satisfies WorkerJob });
      return new Promise<WorkerReport>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    }),
  );
  const elapsedMs = performance.now() - started;
  const latenciesMs = new Float64Array(reports.reduce((sum, report) => sum + report.latencies.length, 0));
  let offset = 0;
  for (const report of reports) {
    latenciesMs.set(report.latencies, offset);
    offset += report.latencies.length;
  }
  return {
    ok: reports.reduce((sum, report) => sum + report.ok, 0),
    failed: reports.reduce((sum, report) => sum + report.failed, 0),
    firstFailure: reports.find((report) => report.firstFailure)?.firstFailure,
    elapsedMs,
    latenciesMs,
  };
}

async function runWorker(job: WorkerJob): Promise<WorkerReport> {
  const frames = job.frames.map((frame) => Buffer.from(frame));
  let nextFrame = 0;
  const headers = {
    ':method': 'POST',
    ':path': job.path,
    'content-type': 'application/grpc+proto',
    te: 'trailers',
    ...job.headers,
  };
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const deadline = performance.now() + job.durationMs;
  const sessions = await Promise.all(
    Array.from(
      { length: job.connections },
      () =>
        new Promise<http2.ClientHttp2Session>((resolve, reject) => {
          const session = http2.connect(job.url);
          session.once('connect', () => resolve(session));
          session.once('error', reject);
        }),
    ),
  );
  const fail = (why: string) => {
    failed++;
    firstFailure ??= why;
  };
  const call = (session: http2.ClientHttp2Session) =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const stream = session.request(headers, { endStream: false });
      let status: string | undefined;
      stream.on('response', (responseHeaders) => {
        // A trailers-only answer carries its status in the headers.
        const inHeaders = responseHeaders['grpc-status'];
        if (inHeaders !== undefined) status = String(inHeaders);
      });
      stream.on('trailers', (trailers) => {
        status = String(trailers['grpc-status']);
      });
      stream.on('data', () => {});
      stream.once('close', () => {
        if (status === '0') {
          ok++;
          latencies.push(performance.now() - started);
        } else {
          fail(status === undefined ? `stream closed (rst code ${stream.rstCode})` : `grpc-status ${status}`);
        }
        resolve();
      });
      stream.once('error', () => {});
      stream.end(frames[nextFrame++ % frames.length]);
    });
  const lanes = sessions.flatMap((session) =>
    Array.from({ length: job.streamsPerConnection }, async () => {
      while (performance.now() < deadline) await call(session);
    }),
  );
  await Promise.all(lanes);
  for (const session of sessions) session.close();
  return { ok, failed, firstFailure, latencies: Float64Array.from(latencies) };
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  void runWorker(workerData as WorkerJob).then((report) => port.postMessage(report));
}
