/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * FilesService over a real server, a real PostgreSQL and real S3-compatible storage
 * (the run's s3rver, a bucket of this file's own): every test calls the server as a
 * client would (typed client, Connect unless said otherwise; bytes sent to and fetched
 * from storage with plain `fetch` on the presigned URLs, as a browser does) and checks
 * the reply (status, Connect code, BadRequest fields, ErrorInfo reason) and what is or
 * is not in the `files` table and in the bucket. Nothing is mocked.
 *
 * Whether a multipart upload is still open is read from the embedded store on disk (the
 * `._S3rver_uploads` folder of the bucket), since it does not list uploads.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Client as S3Client } from 'minio';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import {
  FileStatus,
  type CreateUploadResponse,
  type File,
  type UploadMetadataSchema,
  type UploadRequestSchema,
} from '../../gen/yardmaster/v1/files_pb.ts';
import type { JobStatus, Job } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { eventually } from '../support/assertions.ts';
import { statusName } from '../support/job-names.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

export const kib = 1024;
export const mib = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The embedded store as seen from the test

async function readBody(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

const storeDirectories = new Map<string, string>();

/** s3rver's directory of a bucket: the run's store is a temporary folder (see global-setup.ts) holding it. */
function storeDirectoryOf(bucketName: string): string {
  const known = storeDirectories.get(bucketName);
  if (known) return known;
  for (const entry of readdirSync(os.tmpdir())) {
    if (!entry.startsWith('yardmaster-test-objects-')) continue;
    const candidate = path.join(os.tmpdir(), entry, bucketName);
    if (existsSync(candidate)) {
      storeDirectories.set(bucketName, candidate);
      return candidate;
    }
  }
  throw new Error(`no s3rver store holds the bucket ${bucketName}`);
}

// ---------------------------------------------------------------------------------------
// Setup

export let server: TestServer;
export let admin: YardmasterClient;
export let s3: S3Client;
export let bucket: string;

/** Starts the file's server (with a bucket of its own) and a plain S3 client of that bucket before its tests; closes the server after them. */
export function useFilesServer(): void {
  beforeAll(async () => {
    const endpoint = new URL(inject('s3Endpoint'));
    server = await startTestServer();
    bucket = server.bucket;
    admin = await server.adminClient();
    // Straight to s3rver: what the bucket really holds.
    s3 = new S3Client({
      endPoint: endpoint.hostname,
      port: Number(endpoint.port),
      useSSL: false,
      ...inject('s3Credentials'),
      region: 'us-east-1',
      pathStyle: true,
    });
  });
  afterAll(async () => {
    await server?.close();
  });
}

// ---------------------------------------------------------------------------------------
// Helpers: bytes

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A real PNG image (2x2, RGB). */
export function png(): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(2, 0);
  header.writeUInt32BE(2, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.from([0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export const pdf = () => Buffer.from('%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n');

/** A real zip archive with one stored entry. */
export function zip(): Buffer {
  const name = Buffer.from('hello.txt');
  const data = Buffer.from('hello world\n');
  const crc = zlib.crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(name.length, 28);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + name.length, 12);
  end.writeUInt32LE(local.length + name.length + data.length, 16);
  return Buffer.concat([local, name, data, central, name, end]);
}

export const text = (content: string) => Buffer.from(content, 'utf8');

/**
 * `total` random bytes, made in chunks of at most 8 MiB. They start with a fixed marker,
 * so that no random start ever looks like a known file signature to the sniffer.
 */
export function randomData(total: number): Buffer {
  const chunks: Buffer[] = [];
  for (let made = 0; made < total; made += 8 * mib) chunks.push(randomBytes(Math.min(8 * mib, total - made)));
  const data = Buffer.concat(chunks);
  data.write('YMRD\u0000', 0, 'latin1');
  return data;
}

/** The bytes cut in uneven slices, as a client might send them. */
export function* slices(bytes: Uint8Array, sizes = [1, 1000, 64 * kib, 1 * mib + 7]): Generator<Uint8Array> {
  let offset = 0;
  for (let index = 0; offset < bytes.byteLength; index++) {
    const size = sizes[index % sizes.length]!;
    yield bytes.subarray(offset, offset + size);
    offset += size;
  }
}

// ---------------------------------------------------------------------------------------
// Helpers: calls

interface UploadInit {
  directory?: string;
  name: string;
  size?: number;
  contentType?: string;
  sha256?: string;
  requestId?: string;
}

export function createUpload(client: YardmasterClient, init: UploadInit, bytes?: Uint8Array): Promise<CreateUploadResponse> {
  return client.files.createUpload({ ...init, size: BigInt(init.size ?? bytes?.byteLength ?? 0) });
}

/** PUTs the bytes to a presigned URL as a browser does; returns the response (status checked). */
export async function put(url: string, bytes: Uint8Array): Promise<Response> {
  const res = await fetch(url, { method: 'PUT', body: bytes as Uint8Array<ArrayBuffer> });
  const reply = await res.text();
  expect(res.status, `PUT ${url}: ${reply}`).toBe(200);
  return res;
}

/** CreateUpload, PUT, CompleteUpload: the browser's single upload. */
export async function uploadPresigned(client: YardmasterClient, init: UploadInit, bytes: Uint8Array): Promise<File> {
  const plan = await createUpload(client, init, bytes);
  expect(plan.uploadUrl).not.toBe('');
  await put(plan.uploadUrl, bytes);
  const { file } = await client.files.completeUpload({ fileId: plan.file!.id });
  expect(file!.status).toBe(FileStatus.AVAILABLE);
  return file!;
}

export type UploadMessage = MessageInitShape<typeof UploadRequestSchema>;
type UploadMetadataInit = MessageInitShape<typeof UploadMetadataSchema>;

export async function* uploadMessages(
  metadata: UploadMetadataInit,
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): AsyncGenerator<UploadMessage> {
  yield { content: { case: 'metadata', value: metadata } };
  for await (const chunk of chunks) yield { content: { case: 'chunk', value: chunk } };
}

/** The Upload stream with the bytes in uneven chunks; declares their size unless told. */
export async function uploadStream(
  client: YardmasterClient,
  metadata: { directory?: string; name: string; size?: number; contentType?: string; sha256?: string },
  bytes: Uint8Array,
): Promise<File> {
  const { file } = await client.files.upload(
    uploadMessages({ ...metadata, size: BigInt(metadata.size ?? bytes.byteLength) }, slices(bytes)),
  );
  return file!;
}

export async function download(
  client: YardmasterClient,
  id: string,
  offset = 0,
  length = 0,
): Promise<{ file: File | undefined; bytes: Buffer; messages: number; largestChunk: number }> {
  let file: File | undefined;
  const chunks: Buffer[] = [];
  let messages = 0;
  let largestChunk = 0;
  for await (const message of client.files.download({ id, offset: BigInt(offset), length: BigInt(length) })) {
    if (messages === 0) file = message.file;
    else expect(message.file, 'only the first message carries the file').toBeUndefined();
    messages++;
    chunks.push(Buffer.from(message.chunk));
    largestChunk = Math.max(largestChunk, message.chunk.byteLength);
  }
  return { file, bytes: Buffer.concat(chunks), messages, largestChunk };
}

export async function fetchBytes(url: string): Promise<{ res: Response; bytes: Buffer }> {
  const res = await fetch(url);
  return { res, bytes: Buffer.from(await res.arrayBuffer()) };
}

// ---------------------------------------------------------------------------------------
// Helpers: what the database and the bucket hold

interface FileRow extends Record<string, unknown> {
  id: string;
  owner_id: string;
  directory: string;
  name: string;
  size: string;
  content_type: string;
  sha256: string | null;
  status: string;
  object_key: string;
  upload_mode: string;
  upload_id: string | null;
  upload_expires_at: Date | null;
  job_id: string | null;
  updated_at: Date;
}

export const fileRow = async (id: string) => (await server.query<FileRow>('select * from files where id = $1', [id]))[0];
export const fileRowsOf = (ownerId: string) =>
  server.query<FileRow>('select * from files where owner_id = $1 order by directory, name', [ownerId]);

export async function objectSize(key: string): Promise<number | undefined> {
  try {
    return (await s3.statObject(bucket, key)).size;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'NotFound' || code === 'NoSuchKey') return undefined;
    throw error;
  }
}

export async function objectBytes(key: string): Promise<Buffer> {
  return readBody(await s3.getObject(bucket, key));
}

/** Keys of the objects under `prefix`, sorted. */
export async function objectKeys(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of s3.listObjectsV2(bucket, prefix, true) as AsyncIterable<{ name?: string }>) if (item.name) keys.push(item.name);
  return keys.sort();
}

/** Multipart uploads still open in the bucket (their parts are kept by storage): key and part count. */
export function openMultipartUploads(prefix = ''): { key: string; parts: number }[] {
  const folder = path.join(storeDirectoryOf(bucket), '._S3rver_uploads');
  if (!existsSync(folder)) return [];
  return (
    readdirSync(folder)
      .map((uploadId) => {
        const dir = path.join(folder, uploadId);
        const keyFile = path.join(dir, 'key');
        if (!existsSync(keyFile)) return undefined;
        return { key: readFileSync(keyFile, 'utf8'), parts: readdirSync(dir).filter((entry) => /^\d+$/.test(entry)).length };
      })
      // biome-ignore lint/complexity/useOptionalChain: a type predicate must return a boolean, never undefined.
      .filter((upload): upload is { key: string; parts: number } => upload !== undefined && upload.key.startsWith(prefix))
  );
}

/** What the bucket holds for an account: objects (the files' own and staged single uploads) and open multipart uploads. */
export async function storedFor(ownerId: string): Promise<{ objects: string[]; multipart: string[] }> {
  const prefix = `files/${ownerId}/`;
  return {
    objects: [...(await objectKeys(prefix)), ...(await objectKeys(stagingPrefixOf(ownerId)))].sort(),
    multipart: openMultipartUploads(prefix).map((upload) => upload.key),
  };
}

/** Where the presigned PUT of a single upload writes, before CompleteUpload moves the bytes to the file's own key. */
export const stagingPrefixOf = (ownerId: string) => `uploads/${ownerId}/`;

export const objectKeyPattern = /^files\/[0-9a-f-]{36}\/[0-9a-f-]{36}$/;

export async function withSettings(settings: Record<string, unknown>, run: () => Promise<void>): Promise<void> {
  try {
    for (const [key, value] of Object.entries(settings)) await server.setSetting(key, value);
    await run();
  } finally {
    for (const key of Object.keys(settings)) await server.setSetting(key, null);
  }
}

/** Whether the name is safe to store: no separator, control character, `..`, leading dot or reserved name. */
export function expectSafeName(name: string): void {
  expect(name).not.toBe('');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a stored name must hold no control character.
  expect(name).not.toMatch(/[/\\\u0000-\u001f\u007f]/);
  expect(name).not.toMatch(/^[.\s]|[.\s]$/);
  expect(name).not.toMatch(/^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i);
}

export async function waitForJob(client: YardmasterClient, id: string, status: JobStatus, timeoutMs = 15_000): Promise<Job> {
  return eventually(
    async () => {
      const { job } = await client.jobs.getJob({ id });
      expect(statusName(job!.status), `job ${id}: ${job!.error?.message ?? ''}`).toBe(statusName(status));
      return job!;
    },
    timeoutMs,
    50,
  );
}

export async function untarGz(bytes: Buffer): Promise<{ name: string; bytes: Buffer }[]> {
  const entries: { name: string; bytes: Buffer }[] = [];
  const tar = extract();
  const reading = (async () => {
    for await (const entry of tar)
      entries.push({ name: entry.header.name, bytes: await readBody(entry as unknown as NodeJS.ReadableStream) });
  })();
  tar.end(zlib.gunzipSync(bytes));
  await reading;
  return entries;
}
