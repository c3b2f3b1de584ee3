/**
 * Streamed file transfer through the server (FilesService.Upload and Download over gRPC,
 * the server running as its own process) next to the same bytes moved straight between
 * this process and the same S3 endpoint with the `minio` client. Also the server's peak
 * resident memory during the transfer: streaming must not hold the file.
 *
 *   npx node bench/file-transfer.ts [--file-mib 1024]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createYardmasterClient } from '../clients/ts/src/node.ts';
import { streamChunkBytes } from '../clients/ts/src/transfers.ts';
import { createLogger } from '../src/platform/logger.ts';
import { startEmbeddedS3 } from '../src/platform/storage/embedded-s3.ts';
import { ObjectStorage } from '../src/platform/storage/object-storage.ts';
import {
  adminPassword,
  describeMachine,
  median,
  positiveFlag,
  printSummary,
  processCpuMs,
  startBenchPostgres,
  startServerProcess,
  type BenchPostgres,
  type Figure,
} from './support.ts';

export const transferFlags = { 'file-mib': { type: 'string' }, 'transfer-rounds': { type: 'string' } } as const;

export interface TransferOptions {
  fileMiB: number;
  rounds: number;
}

export function transferOptionsFrom(values: Record<string, unknown>): TransferOptions {
  return { fileMiB: positiveFlag(values, 'file-mib', 1024), rounds: positiveFlag(values, 'transfer-rounds', 3) };
}

const mib = 1024 * 1024;
const bucket = 'bench-transfer';
/** The HTTP/2 receive window of the typed client (clients/ts/src/node.ts), given to the raw reader too. */
const receiveWindowBytes = 4 * mib;

/** `total` bytes in chunks of one random block, made as they are read: nothing held whole. */
async function* generatedBytes(total: number, chunkBytes = mib): AsyncGenerator<Buffer> {
  const block = randomBytes(chunkBytes);
  for (let sent = 0; sent < total; sent += chunkBytes) yield sent + chunkBytes <= total ? block : block.subarray(0, total - sent);
}

/** Calls `sample` every 20 ms until stopped; returns the highest value seen. */
function peakOf(sample: () => number): { stop(): number } {
  let peak = sample();
  const timer = setInterval(() => (peak = Math.max(peak, sample())), 20);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, sample());
    },
  };
}

/** One timed transfer: wall clock, and CPU time of the server and of this process. */
interface Timing {
  ms: number;
  serverCpuMs: number;
  benchCpuMs: number;
}

type Path = 'upload' | 'directUpload' | 'download' | 'directDownload' | 'grpcFrames' | 'typedClient';

export async function measureFileTransfer(postgres: BenchPostgres, options: TransferOptions): Promise<Figure[]> {
  const bytes = options.fileMiB * mib;
  const objectsDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-bench-objects-'));
  await chmod(objectsDir, 0o755);
  const s3 = await startEmbeddedS3({
    directory: objectsDir,
    host: '127.0.0.1',
    bucket,
    secretKey: randomBytes(24).toString('base64url'),
    logger: createLogger('warn'),
  });
  const databaseUrl = await postgres.createDatabase('bench_transfer');
  const server = await startServerProcess(databaseUrl, {
    env: {
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY: s3.credentials.accessKey,
      S3_SECRET_KEY: s3.credentials.secretKey,
      S3_BUCKET: bucket,
      MAX_UPLOAD_BYTES: `${bytes}`,
    },
  });
  const client = createYardmasterClient({ baseUrl: server.url, protocol: 'grpc' });
  const timings = new Map<Path, Timing[]>();
  const timed = async <T>(pathName: Path, work: () => Promise<T>): Promise<T> => {
    const serverCpu = processCpuMs(server.pid);
    const benchCpu = process.cpuUsage();
    const started = performance.now();
    const result = await work();
    const ms = performance.now() - started;
    const benchCpuUsed = process.cpuUsage(benchCpu);
    const timing = { ms, serverCpuMs: processCpuMs(server.pid) - serverCpu, benchCpuMs: (benchCpuUsed.user + benchCpuUsed.system) / 1000 };
    timings.set(pathName, [...(timings.get(pathName) ?? []), timing]);
    return result;
  };
  try {
    await client.login('admin', adminPassword);
    // The direct path: the same minio client calls, from this process. (minio's own putObject
    // of a stream first lists incomplete uploads, which the embedded store does not
    // implement; this is the explicit multipart loop the server uses too.)
    const direct = new ObjectStorage({
      endpoint: s3.endpoint,
      publicEndpoint: s3.endpoint,
      ...s3.credentials,
      bucket,
      region: 'us-east-1',
    });

    // Warm up every path (connections, JIT) with a small file.
    const warmUp = await upload(client, 'warm-up.bin', 8 * mib);
    await downloadConnectFrames(server.url, client.tokens!.accessToken, warmUp);
    await downloadGrpcFrames(server.url, client.tokens!.accessToken, warmUp);
    for await (const message of client.files.download({ id: warmUp })) void message;
    await client.files.deleteFile({ id: warmUp });
    const restingRss = server.rssBytes();

    const peak = peakOf(() => server.rssBytes());
    // Rounds alternate the paths, so that load from other work falls on all of them alike.
    for (let round = 0; round < options.rounds; round++) {
      const file = await timed('upload', () => upload(client, `large-${round}.bin`, bytes));
      // The raw readers count whole messages: the chunks plus a few bytes of framing and metadata each.
      const expect = (received: number, what: string) => {
        if (received < bytes || received > bytes + 64 * 1024 + (bytes / mib) * 16)
          throw new Error(`${what}: received ${received} bytes for a file of ${bytes}`);
      };
      expect(await timed('download', () => downloadConnectFrames(server.url, client.tokens!.accessToken, file)), 'Connect frames');
      expect(await timed('grpcFrames', () => downloadGrpcFrames(server.url, client.tokens!.accessToken, file)), 'gRPC frames');
      expect(
        await timed('typedClient', async () => {
          let received = 0;
          for await (const message of client.files.download({ id: file })) received += message.chunk.byteLength;
          return received;
        }),
        'typed client',
      );
      await client.files.deleteFile({ id: file });

      const key = `direct/large-${round}.bin`;
      await timed('directUpload', () => direct.uploadStream(key, generatedBytes(bytes), { partBytes: 8 * mib }));
      expect(
        await timed('directDownload', async () => {
          let received = 0;
          for await (const chunk of (await direct.read(key)) as AsyncIterable<Buffer>) received += chunk.byteLength;
          return received;
        }),
        'getObject',
      );
      await direct.remove(key);
    }
    const peakRss = peak.stop();
    const settledRss = server.rssBytes();

    const medianOf = (pathName: Path, pick: (timing: Timing) => number) => median(timings.get(pathName)!.map(pick));
    const rate = (pathName: Path) => bytes / mib / (medianOf(pathName, (timing) => timing.ms) / 1000);
    const spread = (pathName: Path) => {
      const rates = timings.get(pathName)!.map((timing) => bytes / mib / (timing.ms / 1000));
      return `${Math.min(...rates).toFixed(0)}-${Math.max(...rates).toFixed(0)}`;
    };
    const cpuPerMiB = (pathName: Path) =>
      `server ${(medianOf(pathName, (timing) => timing.serverCpuMs) / options.fileMiB).toFixed(2)} + benchmark process ${(medianOf(pathName, (timing) => timing.benchCpuMs) / options.fileMiB).toFixed(2)} ms CPU per MiB`;
    const setting = `${options.fileMiB} MiB, median of ${options.rounds} rounds, gRPC over h2c, embedded S3 store on local disk (run by the benchmark process)`;
    const rounds = (ours: Path, baseline: Path) => `rounds: ${spread(ours)} MiB/s against ${spread(baseline)}`;
    return [
      {
        name: 'streamed upload through the server',
        unit: 'MiB/s',
        ours: rate('upload'),
        baseline: rate('directUpload'),
        baselineName: 'minio multipart upload from this process',
        notes: [setting, rounds('upload', 'directUpload'), `CPU: ours ${cpuPerMiB('upload')}; direct ${cpuPerMiB('directUpload')}`],
      },
      {
        name: 'streamed download through the server',
        unit: 'MiB/s',
        ours: rate('download'),
        baseline: rate('directDownload'),
        baselineName: 'minio getObject to this process',
        notes: [
          'read as raw Connect frames over HTTP/1.1 with node:http, the client getObject reads with: what the server sends, not how fast a client decodes it',
          rounds('download', 'directDownload'),
          `CPU: ours ${cpuPerMiB('download')}; direct ${cpuPerMiB('directDownload')}`,
        ],
      },
      {
        name: 'the same download, typed client',
        unit: 'MiB/s',
        ours: rate('typedClient'),
        baseline: rate('grpcFrames'),
        baselineName: 'raw HTTP/2 gRPC frame reader',
        notes: [
          "the typed client (connect-node, gRPC, messages decoded) against node:http2 reading the same call's frames undecoded",
          rounds('typedClient', 'grpcFrames'),
          `CPU: typed ${cpuPerMiB('typedClient')}; raw ${cpuPerMiB('grpcFrames')}`,
        ],
      },
      {
        name: 'server peak RSS during the transfers',
        unit: 'MiB',
        ours: peakRss / mib,
        baseline: restingRss / mib,
        baselineName: 'server RSS at rest before them',
        notes: [
          `the file is ${options.fileMiB} MiB; streamed uploads hold at most two 8 MiB parts at a time`,
          `RSS before ${(restingRss / mib).toFixed(0)} MiB, peak ${(peakRss / mib).toFixed(0)} MiB, after ${(settledRss / mib).toFixed(0)} MiB`,
        ],
      },
    ];
  } finally {
    client.close();
    await server.stop();
    await s3.stop();
    await rm(objectsDir, { recursive: true, force: true });
  }
}

/** The Download request of `fileId`, protobuf-encoded in one frame (field 1: the id). */
function downloadRequestFrame(fileId: string): Buffer<ArrayBuffer> {
  const message = Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(fileId)]), Buffer.from(fileId)]);
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(message.byteLength, 1);
  return Buffer.concat([envelope, message]);
}

/**
 * Download reading the Connect stream's frames without decoding them (as curl would):
 * measures what the server sends, not how fast a client library parses it. Read with
 * node:http, the client the direct path's getObject reads with (minio), so the benchmark
 * process, which also runs the storage, does the same work per MiB on both sides;
 * fetch's WHATWG streams cost it more (bench/README.md, (c), third round).
 */
async function downloadConnectFrames(baseUrl: string, accessToken: string, fileId: string): Promise<number> {
  const body = downloadRequestFrame(fileId);
  const reply = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const request = http.request(`${baseUrl}/yardmaster.v1.FilesService/Download`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+proto', 'content-length': body.byteLength, authorization: `Bearer ${accessToken}` },
    });
    request.once('response', resolve).once('error', reject).end(body);
  });
  if (reply.statusCode !== 200) {
    reply.resume();
    throw new Error(`download failed: ${reply.statusCode}`);
  }
  return payloadBytes(reply as AsyncIterable<Buffer>, 'connect');
}

/**
 * The same call over gRPC, read with node:http2 alone (same receive window as the typed
 * client, no compression offered): the frames are walked to count the chunk bytes, never
 * decoded into messages. What a client that does nothing but read could reach.
 */
async function downloadGrpcFrames(baseUrl: string, accessToken: string, fileId: string): Promise<number> {
  const session = http2.connect(baseUrl, { settings: { initialWindowSize: receiveWindowBytes } });
  try {
    const stream = session.request({
      ':method': 'POST',
      ':path': '/yardmaster.v1.FilesService/Download',
      'content-type': 'application/grpc+proto',
      te: 'trailers',
      authorization: `Bearer ${accessToken}`,
    });
    const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('trailers', resolve));
    stream.end(downloadRequestFrame(fileId));
    const received = await payloadBytes(stream as AsyncIterable<Buffer>, 'grpc');
    const status = (await trailers)['grpc-status'];
    if (status !== '0') throw new Error(`gRPC download failed: grpc-status ${String(status)}`);
    return received;
  } finally {
    session.close();
  }
}

/**
 * Walks the frames of a stream of Download replies and sums the sizes of their messages,
 * from the frame headers alone (nothing copied or decoded). The Connect end-of-stream
 * frame (flag 2) is not a message.
 */
async function payloadBytes(body: AsyncIterable<Uint8Array>, protocol: 'connect' | 'grpc'): Promise<number> {
  const header = Buffer.alloc(5);
  let headerFilled = 0;
  let frameLeft = 0;
  let total = 0;
  for await (const piece of body) {
    let offset = 0;
    while (offset < piece.byteLength) {
      if (frameLeft === 0 && headerFilled < 5) {
        const take = Math.min(5 - headerFilled, piece.byteLength - offset);
        header.set(piece.subarray(offset, offset + take), headerFilled);
        headerFilled += take;
        offset += take;
        if (headerFilled < 5) continue;
        frameLeft = header.readUInt32BE(1);
        headerFilled = 0;
        if (protocol === 'grpc' || (header[0]! & 2) === 0) total += frameLeft;
        continue;
      }
      const take = Math.min(frameLeft, piece.byteLength - offset);
      offset += take;
      frameLeft -= take;
    }
  }
  return total;
}

async function upload(client: ReturnType<typeof createYardmasterClient>, name: string, total: number): Promise<string> {
  async function* messages() {
    yield { content: { case: 'metadata' as const, value: { directory: '/bench', name, size: BigInt(total) } } };
    // In the messages the typed client's uploadFile sends.
    for await (const chunk of generatedBytes(total, streamChunkBytes)) yield { content: { case: 'chunk' as const, value: chunk } };
  }
  const { file } = await client.files.upload(messages());
  return file!.id;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: transferFlags });
  const postgres = await startBenchPostgres();
  try {
    printSummary(await measureFileTransfer(postgres, transferOptionsFrom(values)), describeMachine(postgres.version));
  } finally {
    await postgres.stop();
  }
}
