/**
 * The typed client's file transfers against a real server and storage: a presigned
 * multipart upload of a file larger than the multipart threshold with parallel parts and
 * progress, an aborted upload that leaves nothing behind, the streamed Upload, and
 * downloads (presigned URL and Download stream) checked by SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { downloadFile, FileStatus, uploadFile, YardmasterError, type TransferProgress } from '../../clients/ts/src/node.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const mib = 1024 * 1024;
/** Above the server's multipart threshold (64 MiB): five parts of 16 MiB (the last smaller). */
const largeSize = 70 * mib + 12_345;

let server: TestServer;
let directory: string;
let largePath: string;
let largeSha256: string;

beforeAll(async () => {
  server = await startTestServer();
  directory = await mkdtemp(path.join(tmpdir(), 'yardmaster-client-'));
  largePath = path.join(directory, 'large.bin');
  const handle = await open(largePath, 'w');
  const hash = createHash('sha256');
  for (let written = 0; written < largeSize; written += mib) {
    const chunk = randomBytes(Math.min(mib, largeSize - written));
    hash.update(chunk);
    await handle.write(chunk);
  }
  await handle.close();
  largeSha256 = hash.digest('hex');
});
afterAll(async () => {
  await server?.close();
  if (directory) await rm(directory, { recursive: true, force: true });
});

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function expectMonotonic(progress: TransferProgress[], size: number): void {
  expect(progress.length).toBeGreaterThan(1);
  for (let i = 1; i < progress.length; i++) expect(progress[i]!.loaded).toBeGreaterThan(progress[i - 1]!.loaded);
  expect(progress.every((step) => step.total === size)).toBe(true);
  expect(progress.at(-1)!.loaded).toBe(size);
}

describe('uploadFile', () => {
  test('a file above the multipart threshold goes up in parallel parts with growing progress, checked by SHA-256; it downloads back identical both ways', async () => {
    // Protobuf binary over HTTP/2: the Download stream's bytes are not base64-encoded JSON.
    const { client } = await server.createUser({ clientOptions: { binary: true, httpVersion: '2' } });
    const progress: TransferProgress[] = [];
    let parallel = 0;
    let maxParallel = 0;
    const file = await uploadFile(client, {
      path: largePath,
      directory: '/big',
      sha256: true,
      parallelParts: 3,
      onProgress: (step) => progress.push(step),
      put: async (request) => {
        parallel++;
        maxParallel = Math.max(maxParallel, parallel);
        try {
          const response = await fetch(request.url, { method: 'PUT', body: request.body as Blob, signal: request.signal });
          expect(response.status).toBe(200);
          request.onProgress(request.size);
          return { etag: response.headers.get('etag') ?? '' };
        } finally {
          parallel--;
        }
      },
    });
    expect(file.status).toBe(FileStatus.AVAILABLE);
    expect(file.name).toBe('large.bin');
    expect(file.size).toBe(BigInt(largeSize));
    expect(file.sha256).toBe(largeSha256);
    expectMonotonic(progress, largeSize);
    expect(maxParallel).toBe(3);
    const [row] = await server.query<{ upload_mode: string }>('select upload_mode from files where id = $1', [file.id]);
    expect(row!.upload_mode).toBe('multipart');

    for (const method of ['url', 'stream'] as const) {
      const target = path.join(directory, `download-${method}.bin`);
      const downloadProgress: TransferProgress[] = [];
      const downloaded = await downloadFile(client, {
        id: file.id,
        path: target,
        method,
        sha256: true,
        onProgress: (step) => downloadProgress.push(step),
      });
      expect(downloaded.id).toBe(file.id);
      expect(await sha256Of(target)).toBe(largeSha256);
      expectMonotonic(downloadProgress, largeSize);
      await rm(target);
    }
  }, 90_000);

  test('aborting mid-way rejects with Canceled and abandons the upload: no UPLOADING file is left', async () => {
    const { user, client } = await server.createUser();
    const controller = new AbortController();
    const error = await uploadFile(client, {
      path: largePath,
      parallelParts: 2,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(YardmasterError);
    expect(Code[(error as YardmasterError).code]).toBe(Code[Code.Canceled]);
    // The file row existed (CreateUpload) and AbortUpload removed it.
    expect(await server.countRows('select count(*) as n from files where owner_id = $1', [user.id])).toBe(0);
    const [audit] = await server.query<{ n: string }>(
      `select count(*) as n from audit_events where action like '%AbortUpload%' and actor_id = $1`,
      [user.id],
    );
    expect(Number(audit!.n)).toBe(1);
  }, 60_000);

  test('a stream, through the Upload RPC (SHA-256 computed on the way and compared with the server) and presigned (SHA-256 declared)', async () => {
    const { client } = await server.createUser({ clientOptions: { httpVersion: '2' } });
    const bytes = randomBytes(3 * mib + 7);
    const expected = createHash('sha256').update(bytes).digest('hex');
    for (const method of ['stream', 'presigned'] as const) {
      const progress: TransferProgress[] = [];
      const file = await uploadFile(client, {
        name: `streamed-${method}.bin`,
        size: bytes.length,
        data: Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]),
        sha256: method === 'stream' ? true : expected,
        method,
        onProgress: (step) => progress.push(step),
      });
      expect(file.status).toBe(FileStatus.AVAILABLE);
      expect(file.sha256).toBe(expected);
      expect(progress.at(-1)!.loaded).toBe(bytes.length);
      const chunks: Uint8Array[] = [];
      await downloadFile(client, { id: file.id, sink: (chunk) => void chunks.push(chunk), method: 'stream', sha256: true });
      expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
    }
    const refused = await uploadFile(client, { name: 'x.bin', size: 10, data: Readable.from([bytes.subarray(0, 10)]), sha256: true }).catch(
      (thrown) => thrown,
    );
    expect((refused as YardmasterError).code).toBe(Code.InvalidArgument);
    // Shorter than declared: InvalidArgument, nothing left.
    const short = await uploadFile(client, { name: 'short.bin', size: 100, data: Readable.from([bytes.subarray(0, 50)]) }).catch(
      (thrown) => thrown,
    );
    expect((short as YardmasterError).code).toBe(Code.InvalidArgument);
  }, 60_000);
});
