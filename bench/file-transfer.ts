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
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createYardmasterClient } from '../clients/ts/src/node.ts';
import { createLogger } from '../src/platform/logger.ts';
import { startEmbeddedS3 } from '../src/platform/storage/embedded-s3.ts';
import { ObjectStorage } from '../src/platform/storage/object-storage.ts';
import {
  adminPassword,
  describeMachine,
  positiveFlag,
  printSummary,
  startBenchPostgres,
  startServerProcess,
  type BenchPostgres,
  type Figure,
} from './support.ts';

export const transferFlags = { 'file-mib': { type: 'string' } } as const;

export interface TransferOptions {
  fileMiB: number;
}

export function transferOptionsFrom(values: Record<string, unknown>): TransferOptions {
  return { fileMiB: positiveFlag(values, 'file-mib', 1024) };
}

const mib = 1024 * 1024;
const bucket = 'bench-transfer';

/** `total` bytes in 1 MiB chunks of one random block, made as they are read: nothing held whole. */
async function* generatedBytes(total: number): AsyncGenerator<Buffer> {
  const block = randomBytes(mib);
  for (let sent = 0; sent < total; sent += mib) yield sent + mib <= total ? block : block.subarray(0, total - sent);
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

    // Warm up both paths (connections, JIT) with a small file.
    await upload(client, 'warm-up.bin', 8 * mib);
    const restingRss = server.rssBytes();

    const peak = peakOf(() => server.rssBytes());
    let started = performance.now();
    const file = await upload(client, 'large.bin', bytes);
    const oursUploadMs = performance.now() - started;
    started = performance.now();
    const rawDownloaded = await downloadRaw(server.url, client.tokens!.accessToken, file);
    const oursDownloadMs = performance.now() - started;
    started = performance.now();
    let downloaded = 0;
    for await (const message of client.files.download({ id: file })) downloaded += message.chunk.byteLength;
    const typedClientDownloadMs = performance.now() - started;
    const peakRss = peak.stop();
    if (downloaded !== bytes || rawDownloaded < bytes) throw new Error(`downloaded ${downloaded} (raw ${rawDownloaded}) of ${bytes} bytes`);

    started = performance.now();
    await direct.uploadStream('direct/large.bin', generatedBytes(bytes), { partBytes: 8 * mib });
    const directUploadMs = performance.now() - started;
    started = performance.now();
    let directDownloaded = 0;
    for await (const chunk of (await direct.read('direct/large.bin')) as AsyncIterable<Buffer>) directDownloaded += chunk.byteLength;
    const directDownloadMs = performance.now() - started;
    if (directDownloaded !== bytes) throw new Error(`downloaded ${directDownloaded} of ${bytes} bytes directly`);

    const rate = (ms: number) => bytes / mib / (ms / 1000);
    const notes = [`${options.fileMiB} MiB, gRPC over h2c, embedded S3 store on local disk`];
    return [
      {
        name: 'streamed upload through the server',
        unit: 'MiB/s',
        ours: rate(oursUploadMs),
        baseline: rate(directUploadMs),
        baselineName: 'minio multipart upload from this process',
        notes,
      },
      {
        name: 'streamed download through the server',
        unit: 'MiB/s',
        ours: rate(oursDownloadMs),
        baseline: rate(directDownloadMs),
        baselineName: 'minio getObject to this process',
        notes: [
          ...notes,
          `read as raw Connect frames over HTTP/1.1; with the typed client (connect-node, gRPC) the same download ran at ${rate(typedClientDownloadMs).toFixed(1)} MiB/s, bounded by the client's decoding`,
        ],
      },
      {
        name: 'server peak RSS during the transfer',
        unit: 'MiB',
        ours: peakRss / mib,
        baseline: restingRss / mib,
        baselineName: 'server RSS at rest before it',
        notes: [`the file is ${options.fileMiB} MiB; streamed uploads hold at most two 8 MiB parts at a time`],
      },
    ];
  } finally {
    client.close();
    await server.stop();
    await s3.stop();
    await rm(objectsDir, { recursive: true, force: true });
  }
}

/**
 * Download reading the Connect stream's frames without decoding them (as curl would):
 * measures what the server sends, not how fast a client library parses it.
 */
async function downloadRaw(baseUrl: string, accessToken: string, fileId: string): Promise<number> {
  const message = Buffer.concat([Buffer.from([0x0a, Buffer.byteLength(fileId)]), Buffer.from(fileId)]);
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(message.byteLength, 1);
  const reply = await fetch(`${baseUrl}/yardmaster.v1.FilesService/Download`, {
    method: 'POST',
    headers: { 'content-type': 'application/connect+proto', authorization: `Bearer ${accessToken}` },
    body: Buffer.concat([envelope, message]),
  });
  if (!reply.ok || !reply.body) throw new Error(`download failed: ${reply.status}`);
  let received = 0;
  for await (const chunk of reply.body) received += chunk.byteLength;
  return received;
}

async function upload(client: ReturnType<typeof createYardmasterClient>, name: string, total: number): Promise<string> {
  async function* messages() {
    yield { content: { case: 'metadata' as const, value: { directory: '/bench', name, size: BigInt(total) } } };
    for await (const chunk of generatedBytes(total)) yield { content: { case: 'chunk' as const, value: chunk } };
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
