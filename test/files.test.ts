/**
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
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { timestampDate, ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { Client as S3Client } from 'minio';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { createYardmasterClient, type NodeClientOptions, type YardmasterClient } from '../clients/ts/src/node.ts';
import { ErrorInfoSchema, Role, type User } from '../gen/yardmaster/v1/common_pb.ts';
import { FileStatus, type CreateUploadResponse, type File, type UploadMetadataSchema, type UploadRequestSchema } from '../gen/yardmaster/v1/files_pb.ts';
import { JobStatus, type Job } from '../gen/yardmaster/v1/jobs_pb.ts';
import { createApp, type App } from '../src/app.ts';
import { loadConfig, type LogLevel } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { listen } from '../src/server/listener.ts';
import { connectErrorOf, eventually, expectConnectError, randomHex, reasonOf, uniqueName, violatedFields } from './support/assertions.ts';
import { statusName } from './support/job-names.ts';
import { adminPassword } from './support/test-server.ts';
import { createTestDatabase, queryDatabase } from './support/test-database.ts';

const kib = 1024;
const mib = 1024 * 1024;

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
// The server (as test/support/test-server.ts starts one)

interface FilesTestServer {
  url: string;
  app: App;
  bucket: string;
  client(options?: Omit<NodeClientOptions, 'baseUrl'>): YardmasterClient;
  adminClient(): Promise<YardmasterClient>;
  createUser(options?: { role?: Role; protocol?: NodeClientOptions['protocol'] }): Promise<{ user: User; password: string; client: YardmasterClient }>;
  setSetting(key: string, value: unknown): Promise<void>;
  query<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

async function startFilesTestServer(storageEndpoint: string): Promise<FilesTestServer> {
  const database = await createTestDatabase();
  const config = loadConfig({ PORT: '0', ADMIN_PASSWORD: adminPassword, DATABASE_URL: database.url });
  const logger = createLogger((process.env['TEST_LOG_LEVEL'] as LogLevel | undefined) ?? 'silent');
  const bucketName = `files-test-${randomHex(6)}`;
  const storage = { endpoint: storageEndpoint, publicEndpoint: storageEndpoint, ...inject('s3Credentials'), bucket: bucketName, region: 'us-east-1' };
  const app = await createApp({ config, databaseUrl: database.url, storage, logger, jobDrainMs: 1000 });
  const listener = await listen(app.handler, { host: '127.0.0.1', port: 0, tls: undefined, logger, shutdownController: app.shutdownController, connections: config.connections });
  const clients: YardmasterClient[] = [];
  const client = (options: Omit<NodeClientOptions, 'baseUrl'> = {}) => {
    const created = createYardmasterClient({ baseUrl: listener.url, ...options });
    clients.push(created);
    return created;
  };
  const adminClient = async () => {
    const signedIn = client();
    await signedIn.login('admin', adminPassword);
    return signedIn;
  };
  let sharedAdmin: YardmasterClient | undefined;
  return {
    url: listener.url,
    app,
    bucket: bucketName,
    client,
    adminClient,
    async createUser({ role = Role.USER, protocol } = {}) {
      sharedAdmin ??= await adminClient();
      const name = uniqueName('user');
      const password = `password-of-${name}`;
      const { user } = await sharedAdmin.admin.createUser({ username: name, email: `${name}@example.com`, password, role });
      const signedIn = client({ protocol });
      await signedIn.login(name, password);
      return { user: user!, password, client: signedIn };
    },
    async setSetting(key, value) {
      sharedAdmin ??= await adminClient();
      await sharedAdmin.admin.updateSetting({ key, value: fromJson(ValueSchema, value as JsonValue) });
    },
    query: (sql, params) => queryDatabase(database.url, sql, params),
    async close() {
      for (const created of clients) created.close();
      await listener.close(1000);
      await app.close();
      await database.drop();
    },
  };
}

// ---------------------------------------------------------------------------------------
// Setup

let server: FilesTestServer;
let admin: YardmasterClient;
let s3: S3Client;
let bucket: string;

beforeAll(async () => {
  const endpoint = new URL(inject('s3Endpoint'));
  server = await startFilesTestServer(endpoint.origin);
  bucket = server.bucket;
  admin = await server.adminClient();
  // Straight to s3rver: what the bucket really holds.
  s3 = new S3Client({ endPoint: endpoint.hostname, port: Number(endpoint.port), useSSL: false, ...inject('s3Credentials'), region: 'us-east-1', pathStyle: true });
});

afterAll(async () => {
  await server?.close();
});

// ---------------------------------------------------------------------------------------
// Helpers: bytes

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** A real PNG image (2x2, RGB). */
function png(): Buffer {
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
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', zlib.deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

const pdf = () => Buffer.from('%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n');

/** A real zip archive with one stored entry. */
function zip(): Buffer {
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

const text = (content: string) => Buffer.from(content, 'utf8');

/**
 * `total` random bytes, made in chunks of at most 8 MiB. They start with a fixed marker,
 * so that no random start ever looks like a known file signature to the sniffer.
 */
function randomData(total: number): Buffer {
  const chunks: Buffer[] = [];
  for (let made = 0; made < total; made += 8 * mib) chunks.push(randomBytes(Math.min(8 * mib, total - made)));
  const data = Buffer.concat(chunks);
  data.write('YMRD\u0000', 0, 'latin1');
  return data;
}

/** The bytes cut in uneven slices, as a client might send them. */
function* slices(bytes: Uint8Array, sizes = [1, 1000, 64 * kib, 1 * mib + 7]): Generator<Uint8Array> {
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

function createUpload(client: YardmasterClient, init: UploadInit, bytes?: Uint8Array): Promise<CreateUploadResponse> {
  return client.files.createUpload({ ...init, size: BigInt(init.size ?? bytes?.byteLength ?? 0) });
}

/** PUTs the bytes to a presigned URL as a browser does; returns the response (status checked). */
async function put(url: string, bytes: Uint8Array): Promise<Response> {
  const res = await fetch(url, { method: 'PUT', body: bytes as Uint8Array<ArrayBuffer> });
  const reply = await res.text();
  expect(res.status, `PUT ${url}: ${reply}`).toBe(200);
  return res;
}

/** CreateUpload, PUT, CompleteUpload: the browser's single upload. */
async function uploadPresigned(client: YardmasterClient, init: UploadInit, bytes: Uint8Array): Promise<File> {
  const plan = await createUpload(client, init, bytes);
  expect(plan.uploadUrl).not.toBe('');
  await put(plan.uploadUrl, bytes);
  const { file } = await client.files.completeUpload({ fileId: plan.file!.id });
  expect(file!.status).toBe(FileStatus.AVAILABLE);
  return file!;
}

type UploadMessage = MessageInitShape<typeof UploadRequestSchema>;
type UploadMetadataInit = MessageInitShape<typeof UploadMetadataSchema>;

async function* uploadMessages(metadata: UploadMetadataInit, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): AsyncGenerator<UploadMessage> {
  yield { content: { case: 'metadata', value: metadata } };
  for await (const chunk of chunks) yield { content: { case: 'chunk', value: chunk } };
}

/** The Upload stream with the bytes in uneven chunks; declares their size unless told. */
async function uploadStream(client: YardmasterClient, metadata: { directory?: string; name: string; size?: number; contentType?: string; sha256?: string }, bytes: Uint8Array): Promise<File> {
  const { file } = await client.files.upload(uploadMessages({ ...metadata, size: BigInt(metadata.size ?? bytes.byteLength) }, slices(bytes)));
  return file!;
}

async function download(client: YardmasterClient, id: string, offset = 0, length = 0): Promise<{ file: File | undefined; bytes: Buffer; messages: number; largestChunk: number }> {
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

async function fetchBytes(url: string): Promise<{ res: Response; bytes: Buffer }> {
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

const fileRow = async (id: string) => (await server.query<FileRow>('select * from files where id = $1', [id]))[0];
const fileRowsOf = (ownerId: string) => server.query<FileRow>('select * from files where owner_id = $1 order by directory, name', [ownerId]);

async function objectSize(key: string): Promise<number | undefined> {
  try {
    return (await s3.statObject(bucket, key)).size;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'NotFound' || code === 'NoSuchKey') return undefined;
    throw error;
  }
}

async function objectBytes(key: string): Promise<Buffer> {
  return readBody(await s3.getObject(bucket, key));
}

/** Keys of the objects under `prefix`, sorted. */
async function objectKeys(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of s3.listObjectsV2(bucket, prefix, true) as AsyncIterable<{ name?: string }>) if (item.name) keys.push(item.name);
  return keys.sort();
}

/** Multipart uploads still open in the bucket (their parts are kept by storage): key and part count. */
function openMultipartUploads(prefix = ''): { key: string; parts: number }[] {
  const folder = path.join(storeDirectoryOf(bucket), '._S3rver_uploads');
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .map((uploadId) => {
      const dir = path.join(folder, uploadId);
      const keyFile = path.join(dir, 'key');
      if (!existsSync(keyFile)) return undefined;
      return { key: readFileSync(keyFile, 'utf8'), parts: readdirSync(dir).filter((entry) => /^\d+$/.test(entry)).length };
    })
    .filter((upload): upload is { key: string; parts: number } => upload !== undefined && upload.key.startsWith(prefix));
}

/** What the bucket holds for an account: objects (the files' own and staged single uploads) and open multipart uploads. */
async function storedFor(ownerId: string): Promise<{ objects: string[]; multipart: string[] }> {
  const prefix = `files/${ownerId}/`;
  return { objects: [...(await objectKeys(prefix)), ...(await objectKeys(stagingPrefixOf(ownerId)))].sort(), multipart: openMultipartUploads(prefix).map((upload) => upload.key) };
}

/** Where the presigned PUT of a single upload writes, before CompleteUpload moves the bytes to the file's own key. */
const stagingPrefixOf = (ownerId: string) => `uploads/${ownerId}/`;

const objectKeyPattern = /^files\/[0-9a-f-]{36}\/[0-9a-f-]{36}$/;

async function withSettings(settings: Record<string, unknown>, run: () => Promise<void>): Promise<void> {
  try {
    for (const [key, value] of Object.entries(settings)) await server.setSetting(key, value);
    await run();
  } finally {
    for (const key of Object.keys(settings)) await server.setSetting(key, null);
  }
}

/** Whether the name is safe to store: no separator, control character, `..`, leading dot or reserved name. */
function expectSafeName(name: string): void {
  expect(name).not.toBe('');
  expect(name).not.toMatch(/[/\\\u0000-\u001f\u007f]/);
  expect(name).not.toMatch(/^[.\s]|[.\s]$/);
  expect(name).not.toMatch(/^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i);
}


async function waitForJob(client: YardmasterClient, id: string, status: JobStatus, timeoutMs = 15_000): Promise<Job> {
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

async function untarGz(bytes: Buffer): Promise<{ name: string; bytes: Buffer }[]> {
  const entries: { name: string; bytes: Buffer }[] = [];
  const tar = extract();
  const reading = (async () => {
    for await (const entry of tar) entries.push({ name: entry.header.name, bytes: await readBody(entry as unknown as NodeJS.ReadableStream) });
  })();
  tar.end(zlib.gunzipSync(bytes));
  await reading;
  return entries;
}

// =======================================================================================

describe('presigned single upload', () => {
  test('a PNG PUT with fetch becomes AVAILABLE as image/png although the client claimed text/plain; the URL writes to uploads/<owner>/<id>, the bytes end at files/<owner>/<id>', async () => {
    const { user, client } = await server.createUser();
    const bytes = png();
    const plan = await createUpload(client, { directory: '/pictures', name: 'dot.png', contentType: 'text/plain' }, bytes);
    const created = plan.file!;
    expect(created).toMatchObject({ ownerId: user.id, directory: '/pictures', name: 'dot.png', size: BigInt(bytes.length), status: FileStatus.UPLOADING, sha256: '' });
    expect(plan.uploadUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
    expect(plan.parts).toEqual([]);
    expect(plan.partSize).toBe(0n);
    const expiresIn = timestampDate(plan.expireTime!).getTime() - Date.now();
    expect(expiresIn).toBeGreaterThan(23 * 3_600_000);
    expect(expiresIn).toBeLessThanOrEqual(24 * 3_600_000 + 5000);

    const row = (await fileRow(created.id))!;
    expect(row).toMatchObject({ status: 'uploading', upload_mode: 'single', object_key: `files/${user.id}/${created.id}` });
    expect(await objectSize(row.object_key)).toBeUndefined();
    const stagingKey = `${stagingPrefixOf(user.id)}${created.id}`;
    expect(new URL(plan.uploadUrl).pathname).toBe(`/${bucket}/${stagingKey}`);

    const res = await put(plan.uploadUrl, bytes);
    expect(res.headers.get('etag')).toBeTruthy();
    expect(await objectSize(stagingKey)).toBe(bytes.length);
    const { file } = await client.files.completeUpload({ fileId: created.id });
    expect(file).toMatchObject({ id: created.id, status: FileStatus.AVAILABLE, contentType: 'image/png', size: BigInt(bytes.length), sha256: '', name: 'dot.png' });
    expect(await fileRow(created.id)).toMatchObject({ status: 'available', content_type: 'image/png', upload_expires_at: null });
    expect(await objectBytes(row.object_key)).toEqual(bytes);
    expect(await objectKeys(stagingPrefixOf(user.id))).toEqual([]);

    // Completing again changes nothing and says the same.
    const again = await client.files.completeUpload({ fileId: created.id });
    expect(again.file).toMatchObject({ status: FileStatus.AVAILABLE, contentType: 'image/png' });
    expect((await client.files.getFile({ id: created.id })).file).toMatchObject({ status: FileStatus.AVAILABLE, contentType: 'image/png' });
  });

  test.each([
    ['a text claim on text is kept', 'text/csv', text('a,b\n1,2\n'), 'text/csv'],
    ['no claim on text is text/plain', '', text('plain words\n'), 'text/plain'],
    ['a binary claim on text is not trusted: text/plain', 'image/png', text('not an image at all\n'), 'text/plain'],
    ['an active claim (HTML) on text is not trusted: text/plain', 'text/html', text('no markup here\n'), 'text/plain'],
    ['an HTML page claimed as text is text/html', 'text/plain', text('<!doctype html><script>alert(1)</script>\n'), 'text/html'],
    ['binary bytes claimed as text are application/octet-stream', 'text/plain', Buffer.concat([Buffer.from('XYZ\u0000'), randomBytes(5000)]), 'application/octet-stream'],
    ['a PDF claimed as text is application/pdf', 'text/plain', pdf(), 'application/pdf'],
    ['an SVG root under a prefix is image/svg+xml, not XML', 'application/xml', text('<?xml version="1.0"?><s:svg xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></s:svg>'), 'image/svg+xml'],
    ['an XHTML script nested in other XML is text/html', 'text/plain', text('<?xml version="1.0"?><feed><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script></feed>'), 'text/html'],
  ])('content type: %s', async (_title, claim, bytes, expected) => {
    const { client } = await server.createUser();
    const file = await uploadPresigned(client, { name: 'sample', contentType: claim }, bytes);
    expect(file.contentType).toBe(expected);
    expect((await fileRow(file.id))!.content_type).toBe(expected);
  });

  test('a declared sha256 is checked: the right one is kept; a wrong one is InvalidArgument CHECKSUM_MISMATCH, the file FAILED and its object removed', async () => {
    const { user, client } = await server.createUser();
    const bytes = randomBytes(50 * kib);
    const good = await uploadPresigned(client, { directory: '/sums', name: 'good.bin', sha256: sha256(bytes).toUpperCase() }, bytes);
    expect(good.sha256).toBe(sha256(bytes));

    const plan = await createUpload(client, { directory: '/sums', name: 'bad.bin', sha256: sha256(text('something else')) }, bytes);
    await put(plan.uploadUrl, bytes);
    const key = `files/${user.id}/${plan.file!.id}`;
    const stagingKey = `${stagingPrefixOf(user.id)}${plan.file!.id}`;
    expect(await objectSize(stagingKey)).toBe(bytes.length);
    const error = await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id }), Code.InvalidArgument, 'CHECKSUM_MISMATCH');
    expect(violatedFields(error)).toEqual(['sha256']);
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'failed' });
    expect((await client.files.getFile({ id: plan.file!.id })).file!.status).toBe(FileStatus.FAILED);
    expect(await objectSize(key)).toBeUndefined();
    expect(await objectSize(stagingKey)).toBeUndefined();
    // A failed upload stays failed, and does not hold its name.
    await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id }), Code.FailedPrecondition, 'UPLOAD_FAILED');
    await expectConnectError(client.files.getDownloadUrl({ id: plan.file!.id }), Code.FailedPrecondition, 'FILE_NOT_AVAILABLE');
    const retry = await uploadPresigned(client, { directory: '/sums', name: 'bad.bin', sha256: sha256(bytes) }, bytes);
    expect(retry.id).not.toBe(plan.file!.id);

    // A malformed sha256 is refused before anything is written.
    const before = (await fileRowsOf(user.id)).length;
    const malformed = await expectConnectError(createUpload(client, { name: 'x.bin', sha256: 'abc' }, bytes), Code.InvalidArgument);
    expect(violatedFields(malformed)).toEqual(['sha256']);
    expect(await fileRowsOf(user.id)).toHaveLength(before);
  });

  test('CompleteUpload before the bytes arrived is FailedPrecondition INCOMPLETE_UPLOAD and the file stays UPLOADING; parts for a single upload are InvalidArgument `parts`', async () => {
    const { client } = await server.createUser();
    const bytes = text('late bytes\n');
    const plan = await createUpload(client, { name: 'late.txt' }, bytes);
    await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id }), Code.FailedPrecondition, 'INCOMPLETE_UPLOAD');
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'uploading' });
    const withParts = await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id, parts: [{ partNumber: 1, etag: 'x' }] }), Code.InvalidArgument);
    expect(violatedFields(withParts)).toEqual(['parts']);
    await expectConnectError(client.files.getDownloadUrl({ id: plan.file!.id }), Code.FailedPrecondition, 'FILE_NOT_AVAILABLE');
    await put(plan.uploadUrl, bytes);
    expect((await client.files.completeUpload({ fileId: plan.file!.id })).file!.status).toBe(FileStatus.AVAILABLE);
  });

  test('AbortUpload removes the row and the bytes already PUT; an AVAILABLE file cannot be aborted', async () => {
    const { user, client } = await server.createUser();
    const bytes = randomBytes(10 * kib);
    const plan = await createUpload(client, { name: 'abandoned.bin' }, bytes);
    await put(plan.uploadUrl, bytes);
    await client.files.abortUpload({ fileId: plan.file!.id });
    expect(await fileRow(plan.file!.id)).toBeUndefined();
    expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    await expectConnectError(client.files.getFile({ id: plan.file!.id }), Code.NotFound);

    const kept = await uploadPresigned(client, { name: 'kept.bin' }, bytes);
    await expectConnectError(client.files.abortUpload({ fileId: kept.id }), Code.FailedPrecondition, 'NOT_UPLOADING');
    expect(await fileRow(kept.id)).toMatchObject({ status: 'available' });
  });

  test('the same request_id returns the first result and writes one row: while uploading, once AVAILABLE (no URL), once FAILED, and when retries race', async () => {
    const { user, client } = await server.createUser();
    const first = await createUpload(client, { name: 'once.bin', size: 10, requestId: 'upload-1' });
    const second = await createUpload(client, { name: 'once.bin', size: 10, requestId: 'upload-1' });
    expect(second.file!.id).toBe(first.file!.id);
    expect(second.uploadUrl).not.toBe('');
    expect(await fileRowsOf(user.id)).toHaveLength(1);

    await put(first.uploadUrl, randomBytes(10));
    await client.files.completeUpload({ fileId: first.file!.id });
    const afterCompletion = await createUpload(client, { name: 'once.bin', size: 10, requestId: 'upload-1' });
    expect(afterCompletion.file).toMatchObject({ id: first.file!.id, status: FileStatus.AVAILABLE });
    expect(afterCompletion.uploadUrl).toBe('');
    expect(afterCompletion.parts).toEqual([]);

    const failing = await createUpload(client, { name: 'wrong-size.bin', size: 10, requestId: 'upload-2' });
    await put(failing.uploadUrl, randomBytes(11));
    await expectConnectError(client.files.completeUpload({ fileId: failing.file!.id }), Code.InvalidArgument, 'SIZE_MISMATCH');
    const afterFailure = await createUpload(client, { name: 'wrong-size.bin', size: 10, requestId: 'upload-2' });
    expect(afterFailure.file).toMatchObject({ id: failing.file!.id, status: FileStatus.FAILED });
    expect(afterFailure.uploadUrl).toBe('');

    const racing = await Promise.all(Array.from({ length: 5 }, () => createUpload(client, { name: 'raced.bin', size: 10, requestId: 'upload-3' })));
    expect(new Set(racing.map((plan) => plan.file!.id)).size).toBe(1);
    expect((await fileRowsOf(user.id)).map((row) => row.name)).toEqual(['once.bin', 'raced.bin', 'wrong-size.bin']);
  });

  test('the upload URL cannot touch a checked file: bytes PUT after CompleteUpload, AbortUpload or DeleteFile land beside it, and maintenance removes them, and fails uploads sent more bytes than declared', async () => {
    const { user, client } = await server.createUser();
    const bytes = text('the checked bytes\n');
    const plan = await createUpload(client, { name: 'checked.txt' }, bytes);
    await put(plan.uploadUrl, bytes);
    const { file } = await client.files.completeUpload({ fileId: plan.file!.id });
    // A larger file of another type, sent with the URL that is still within its expiry.
    await put(plan.uploadUrl, Buffer.concat([pdf(), randomBytes(64 * kib)]));
    expect((await client.files.getFile({ id: file!.id })).file).toMatchObject({ size: BigInt(bytes.length), contentType: 'text/plain' });
    expect((await download(client, file!.id)).bytes).toEqual(bytes);
    expect((await fetchBytes((await client.files.getDownloadUrl({ id: file!.id })).url)).bytes).toEqual(bytes);

    const aborted = await createUpload(client, { name: 'aborted.bin' }, randomBytes(kib));
    await client.files.abortUpload({ fileId: aborted.file!.id });
    await put(aborted.uploadUrl, randomBytes(kib));
    const deleted = await createUpload(client, { name: 'deleted.bin' }, randomBytes(kib));
    await client.files.deleteFile({ id: deleted.file!.id });
    await put(deleted.uploadUrl, randomBytes(kib));
    const inProgress = await createUpload(client, { name: 'in-progress.bin' }, randomBytes(kib));
    await put(inProgress.uploadUrl, randomBytes(kib));
    const staged = (id: string) => `${stagingPrefixOf(user.id)}${id}`;
    expect(await objectKeys(stagingPrefixOf(user.id))).toEqual([file!.id, aborted.file!.id, deleted.file!.id, inProgress.file!.id].map(staged).sort());

    // An upload whose staged bytes are already more than declared can never complete.
    const oversized = await createUpload(client, { name: 'oversized.bin', size: 10 });
    await put(oversized.uploadUrl, randomBytes(5 * kib));

    await server.app.runMaintenance();
    // Only the upload still in progress keeps its staged bytes, and can be completed.
    expect(await objectKeys(stagingPrefixOf(user.id))).toEqual([staged(inProgress.file!.id)]);
    expect(await fileRow(oversized.file!.id)).toMatchObject({ status: 'failed' });
    await expectConnectError(client.files.completeUpload({ fileId: oversized.file!.id }), Code.FailedPrecondition, 'UPLOAD_FAILED');
    expect(await objectBytes(`files/${user.id}/${file!.id}`)).toEqual(bytes);
    expect((await client.files.completeUpload({ fileId: inProgress.file!.id })).file!.status).toBe(FileStatus.AVAILABLE);
  });

  test('file calls without credentials are Unauthenticated', async () => {
    const anonymous = server.client();
    await expectConnectError(anonymous.files.createUpload({ name: 'x', size: 1n }), Code.Unauthenticated);
    await expectConnectError(anonymous.files.listFiles({}), Code.Unauthenticated);
  });
});

// =======================================================================================

describe('presigned multipart upload', () => {
  test('70 MiB: a plan of 16 MiB parts, each PUT with fetch; a wrong parts list is InvalidArgument `parts`; the downloaded bytes equal the original', async () => {
    const { user, client } = await server.createUser();
    const bytes = randomData(70 * mib);
    const plan = await createUpload(client, { directory: '/big', name: 'big.bin', sha256: sha256(bytes) }, bytes);
    const partSize = Number(plan.partSize);
    expect(plan.uploadUrl).toBe('');
    expect(partSize).toBe(16 * mib);
    expect(plan.parts.map((part) => part.partNumber)).toEqual([1, 2, 3, 4, 5]);
    expect(new Set(plan.parts.map((part) => part.url)).size).toBe(5);
    const row = (await fileRow(plan.file!.id))!;
    expect(row).toMatchObject({ status: 'uploading', upload_mode: 'multipart', size: String(bytes.length) });
    expect(row.upload_id).toBeTruthy();
    expect(openMultipartUploads(row.object_key)).toEqual([{ key: row.object_key, parts: 0 }]);

    const etags = await Promise.all(
      plan.parts.map(async (part) => {
        const res = await put(part.url, bytes.subarray((part.partNumber - 1) * partSize, part.partNumber * partSize));
        return { partNumber: part.partNumber, etag: res.headers.get('etag')! };
      }),
    );
    expect(etags.every((part) => part.etag !== '')).toBe(true);

    for (const parts of [
      [...etags].reverse(),
      etags.slice(0, 4),
      [etags[0]!, etags[2]!, etags[1]!, etags[3]!, etags[4]!],
      etags.map((part, index) => (index === 2 ? { ...part, etag: '' } : part)),
      [],
    ]) {
      const error = await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id, parts }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['parts']);
    }
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'uploading' });

    const { file } = await client.files.completeUpload({ fileId: plan.file!.id, parts: etags });
    expect(file).toMatchObject({ status: FileStatus.AVAILABLE, size: BigInt(bytes.length), sha256: sha256(bytes), contentType: 'application/octet-stream' });
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'available', upload_id: null });
    expect(await storedFor(user.id)).toEqual({ objects: [row.object_key], multipart: [] });

    const { url } = await client.files.getDownloadUrl({ id: file!.id });
    const fetched = await fetchBytes(url);
    expect(fetched.res.status).toBe(200);
    expect(fetched.bytes.length).toBe(bytes.length);
    expect(sha256(fetched.bytes)).toBe(sha256(bytes));
    // A range across the first part boundary, through the server.
    const range = await download(client, file!.id, 16 * mib - 100, 300);
    expect(range.bytes).toEqual(bytes.subarray(16 * mib - 100, 16 * mib + 200));
  });

  test('a part missing from storage or a wrong etag is FailedPrecondition INCOMPLETE_UPLOAD, the file stays UPLOADING, and completing with the right parts then works', async () => {
    const { user, client } = await server.createUser();
    const size = 64 * mib + 5 * mib;
    const bytes = randomData(size);
    const plan = await createUpload(client, { name: 'patchy.bin' }, bytes);
    const partSize = Number(plan.partSize);
    const sliceOf = (partNumber: number) => bytes.subarray((partNumber - 1) * partSize, partNumber * partSize);
    const etags: { partNumber: number; etag: string }[] = [];
    for (const part of plan.parts.slice(0, 4)) etags.push({ partNumber: part.partNumber, etag: (await put(part.url, sliceOf(part.partNumber))).headers.get('etag')! });

    // Part 5 was never sent.
    const missing = [...etags, { partNumber: 5, etag: '"0123456789abcdef0123456789abcdef"' }];
    await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id, parts: missing }), Code.FailedPrecondition, 'INCOMPLETE_UPLOAD');
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'uploading' });
    expect((await fileRow(plan.file!.id))!.upload_id).toBeTruthy();

    const last = plan.parts[4]!;
    etags.push({ partNumber: 5, etag: (await put(last.url, sliceOf(5))).headers.get('etag')! });
    const wrongEtag = etags.map((part) => (part.partNumber === 2 ? { ...part, etag: '"ffffffffffffffffffffffffffffffff"' } : part));
    await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id, parts: wrongEtag }), Code.FailedPrecondition, 'INCOMPLETE_UPLOAD');
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'uploading' });
    expect(await objectSize(`files/${user.id}/${plan.file!.id}`)).toBeUndefined();

    const { file } = await client.files.completeUpload({ fileId: plan.file!.id, parts: etags });
    expect(file!.status).toBe(FileStatus.AVAILABLE);
    expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${plan.file!.id}`], multipart: [] });
    const stored = await objectBytes(`files/${user.id}/${plan.file!.id}`);
    expect(stored.length).toBe(size);
    expect(sha256(stored)).toBe(sha256(bytes));
  });

  test('AbortUpload of a multipart upload aborts it in storage: no parts are left', async () => {
    const { user, client } = await server.createUser();
    const plan = await createUpload(client, { name: 'aborted-multipart.bin', size: 65 * mib });
    await put(plan.parts[0]!.url, randomBytes(mib));
    expect(openMultipartUploads(`files/${user.id}/`)).toHaveLength(1);
    await client.files.abortUpload({ fileId: plan.file!.id });
    expect(await fileRow(plan.file!.id)).toBeUndefined();
    expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
  });
});

// =======================================================================================

describe('sizes', () => {
  test.each([
    ['more', 150],
    ['fewer', 50],
  ])('%s bytes PUT than declared: InvalidArgument SIZE_MISMATCH, the file FAILED, its object gone', async (_title, actual) => {
    const { user, client } = await server.createUser();
    const plan = await createUpload(client, { name: 'liar.bin', size: 100 });
    await put(plan.uploadUrl, randomBytes(actual));
    const error = await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id }), Code.InvalidArgument, 'SIZE_MISMATCH');
    expect(violatedFields(error)).toEqual(['size']);
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'failed', size: '100' });
    expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
  });

  test('a size above files.max_upload_bytes is InvalidArgument FILE_TOO_LARGE at CreateUpload and at Upload, and nothing is written', async () => {
    const { user, client } = await server.createUser();
    await withSettings({ 'files.max_upload_bytes': 1000 }, async () => {
      const error = await expectConnectError(createUpload(client, { name: 'huge.bin', size: 1001 }), Code.InvalidArgument, 'FILE_TOO_LARGE');
      expect(violatedFields(error)).toEqual(['size']);
      const streamed = await expectConnectError(uploadStream(client, { name: 'huge.bin', size: 1001 }, randomBytes(1001)), Code.InvalidArgument, 'FILE_TOO_LARGE');
      expect(violatedFields(streamed)).toEqual(['metadata.size']);
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
      // The limit itself is allowed.
      expect((await uploadPresigned(client, { name: 'exact.bin' }, randomBytes(1000))).size).toBe(1000n);
    });
    const negative = await expectConnectError(client.files.createUpload({ name: 'neg.bin', size: -1n }), Code.InvalidArgument);
    expect(violatedFields(negative)).toEqual(['size']);
  });
});

// =======================================================================================

describe('allowed content types', () => {
  test('with ["image/*"], a PDF or a zip is CONTENT_TYPE_NOT_ALLOWED (FAILED, no object) whatever the claim; a PNG passes', async () => {
    const { user, client } = await server.createUser();
    await withSettings({ 'files.allowed_content_types': ['image/*'] }, async () => {
      for (const [name, bytes, sniffed] of [
        ['doc.pdf', pdf(), 'application/pdf'],
        ['bundle.zip', zip(), 'application/zip'],
      ] as const) {
        const plan = await createUpload(client, { name, contentType: 'image/png' }, bytes);
        await put(plan.uploadUrl, bytes);
        const error = await expectConnectError(client.files.completeUpload({ fileId: plan.file!.id }), Code.InvalidArgument, 'CONTENT_TYPE_NOT_ALLOWED');
        expect(error.findDetails(ErrorInfoSchema)[0]?.metadata['content_type']).toBe(sniffed);
        expect(violatedFields(error)).toEqual(['content_type']);
        expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'failed' });
      }
      const image = await uploadPresigned(client, { name: 'ok.png' }, png());
      expect(image.contentType).toBe('image/png');
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${image.id}`], multipart: [] });
    });
  });

  test('a streamed Upload of a disallowed type stops early: the server refuses it long before the declared bytes are sent, and keeps nothing', async () => {
    const { user, client } = await server.createUser({ protocol: 'grpc' });
    const declared = 64 * mib;
    let chunksPulled = 0;
    async function* pdfThenZeros(): AsyncGenerator<Uint8Array> {
      const header = pdf();
      yield Buffer.concat([header, Buffer.alloc(mib - header.length)]);
      chunksPulled++;
      for (let index = 1; index < declared / mib; index++) {
        yield Buffer.alloc(mib);
        chunksPulled++;
      }
    }
    await withSettings({ 'files.allowed_content_types': ['image/*'] }, async () => {
      const error = await expectConnectError(
        client.files.upload(uploadMessages({ name: 'sneaky.pdf', size: BigInt(declared), contentType: 'image/png' }, pdfThenZeros())),
        Code.InvalidArgument,
        'CONTENT_TYPE_NOT_ALLOWED',
      );
      expect(error.rawMessage).toContain('application/pdf');
    });
    expect(chunksPulled, 'MiB the client got to send before the refusal').toBeLessThan(24);
    await eventually(async () => {
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    }, 5000);
  });
});

// =======================================================================================

describe('quota', () => {
  test('an upload beyond the remaining quota is ResourceExhausted QUOTA_EXCEEDED with nothing written; uploads in progress count', async () => {
    const { user, client } = await server.createUser();
    await withSettings({ 'files.user_quota_bytes': 10_000 }, async () => {
      await uploadPresigned(client, { name: 'first.bin' }, randomBytes(6000));
      const over = await expectConnectError(createUpload(client, { name: 'second.bin', size: 4001 }), Code.ResourceExhausted, 'QUOTA_EXCEEDED');
      expect(over.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({ used_bytes: '6000', quota_bytes: '10000' });
      expect(await fileRowsOf(user.id)).toHaveLength(1);

      // 3000 bytes on their way count against the quota too.
      const pending = await createUpload(client, { name: 'pending.bin', size: 3000 });
      await expectConnectError(createUpload(client, { name: 'third.bin', size: 2000 }), Code.ResourceExhausted, 'QUOTA_EXCEEDED');
      await expectConnectError(uploadStream(client, { name: 'streamed.bin' }, randomBytes(2000)), Code.ResourceExhausted, 'QUOTA_EXCEEDED');
      expect((await fileRowsOf(user.id)).map((row) => row.name)).toEqual(['first.bin', 'pending.bin']);
      const usage = await client.files.getStorageUsage({});
      expect(usage).toMatchObject({ bytes: 6000n, quotaBytes: 10_000n, uploadingBytes: 3000n, fileCount: 1n });

      await client.files.abortUpload({ fileId: pending.file!.id });
      expect((await uploadStream(client, { name: 'streamed.bin' }, randomBytes(4000))).status).toBe(FileStatus.AVAILABLE);
      await expectConnectError(createUpload(client, { name: 'one-more.bin', size: 1 }), Code.ResourceExhausted, 'QUOTA_EXCEEDED');
      expect(await storedFor(user.id).then((stored) => stored.objects.length)).toBe(2);
    });
  });

  test('concurrent CreateUploads cannot together slip past the quota', async () => {
    const { user, client } = await server.createUser();
    await withSettings({ 'files.user_quota_bytes': 10_000 }, async () => {
      const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, index) => createUpload(client, { name: `racer-${index}.bin`, size: 3000 })));
      const accepted = outcomes.filter((outcome) => outcome.status === 'fulfilled');
      const refused = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      expect(accepted).toHaveLength(3);
      for (const outcome of refused) {
        expect(Code[(outcome.reason as { code: Code }).code]).toBe('ResourceExhausted');
        expect(reasonOf(outcome.reason)).toBe('QUOTA_EXCEEDED');
      }
      const rows = await fileRowsOf(user.id);
      expect(rows).toHaveLength(3);
      expect(rows.reduce((total, row) => total + Number(row.size), 0)).toBe(9000);
    });
  });
});

// =======================================================================================

describe('names and directories', () => {
  test('a NUL in a name is InvalidArgument naming the field (PostgreSQL text cannot hold it), and nothing is written', async () => {
    const { user, client } = await server.createUser();
    const error = await expectConnectError(createUpload(client, { name: 'bad\u0000name.txt' }, text('x')), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['name']);
    expect(await server.query('select id from files where owner_id = $1', [user.id])).toEqual([]);
  });

  test.each([
    ['../../etc/passwd', ['etc', 'passwd']],
    ['a/b', ['a', 'b']],
    ['a\\b', ['a', 'b']],
    ['con', ['con']],
    ['CON.txt', ['CON']],
    ['lpt1', ['lpt1']],
    ['  .hidden', ['hidden']],
    ['line\nbreak\ttab\u0007.txt', ['line', 'break', 'tab']],
    ['\u001b[31mred\u007f', ['red']],
    ['trailing dots...', ['trailing dots']],
    ['/leading/slash.txt', ['leading', 'slash.txt']],
  ])('the name %j is cleaned (no separator, control character, `..`, leading dot or reserved name) and keeps what it can', async (name, kept) => {
    const { user, client } = await server.createUser();
    const bytes = text('x');
    const plan = await createUpload(client, { name }, bytes);
    const stored = plan.file!.name;
    expectSafeName(stored);
    expect(stored).not.toBe('..');
    for (const part of kept) expect(stored).toContain(part);
    expect(plan.file!.directory).toBe('/');
    const row = (await fileRow(plan.file!.id))!;
    expect(row.name).toBe(stored);
    expect(row.object_key).toBe(`files/${user.id}/${plan.file!.id}`);
    expect(row.object_key).toMatch(objectKeyPattern);
    expect(new URL(plan.uploadUrl).pathname).toBe(`/${bucket}/${stagingPrefixOf(user.id)}${plan.file!.id}`);
    await put(plan.uploadUrl, bytes);
    await client.files.completeUpload({ fileId: plan.file!.id });
    // The streamed path cleans the same way.
    expect((await uploadStream(client, { directory: '/streamed', name }, bytes)).name).toBe(stored);
  });

  test.each(['..', '.', '///', '   ', '\u0000', '', '\\\\', '. .', '\u0001\u0002'])('the name %j leaves nothing usable: InvalidArgument `name`, nothing written', async (name) => {
    const { user, client } = await server.createUser();
    const error = await expectConnectError(createUpload(client, { name, size: 1 }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['name']);
    const streamed = await expectConnectError(uploadStream(client, { name }, text('x')), Code.InvalidArgument);
    expect(violatedFields(streamed)).toEqual(['metadata.name']);
    expect(await fileRowsOf(user.id)).toEqual([]);
  });

  test('directories are normalised: `..`, `.` and empty segments dropped, backslashes as separators, segments cleaned; too deep is InvalidArgument `directory`', async () => {
    const { client } = await server.createUser();
    const cases: [string, string][] = [
      ['/a/../../b', '/a/b'],
      ['/../..', '/'],
      ['', '/'],
      ['x\\y', '/x/y'],
      ['//p///q//', '/p/q'],
      ['/./c/.', '/c'],
      ['/con/d', '/_con/d'],
    ];
    for (const [index, [directory, expected]] of cases.entries()) {
      const plan = await createUpload(client, { directory, name: `f${index}.txt`, size: 1 });
      const stored = plan.file!.directory;
      expect(stored, `directory ${JSON.stringify(directory)}`).toBe(expected);
      expect(stored.split('/').slice(1).filter((segment) => segment !== '')).not.toContain('..');
      expect((await fileRow(plan.file!.id))!.directory).toBe(expected);
    }
    const deep = `/${Array.from({ length: 33 }, (_, index) => `d${index}`).join('/')}`;
    const error = await expectConnectError(createUpload(client, { directory: deep, name: 'deep.txt', size: 1 }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['directory']);
  });

  test('the same name twice in one directory is AlreadyExists FILE_EXISTS (also after cleaning, and while the first is still uploading); another directory is fine', async () => {
    const { user, client } = await server.createUser();
    await createUpload(client, { directory: '/dup', name: 'same.txt', size: 5 });
    for (const [directory, name] of [
      ['/dup', 'same.txt'],
      ['dup/', 'same.txt'],
      ['/dup/./', '  same.txt  '],
    ]) {
      const error = await expectConnectError(createUpload(client, { directory, name, size: 5 }), Code.AlreadyExists, 'FILE_EXISTS');
      expect(violatedFields(error)).toEqual(['name']);
    }
    await expectConnectError(uploadStream(client, { directory: '/dup', name: 'same.txt' }, text('12345')), Code.AlreadyExists, 'FILE_EXISTS');
    await uploadPresigned(client, { directory: '/dup', name: 'a_b' }, text('1'));
    await expectConnectError(createUpload(client, { directory: '/dup', name: 'a/b', size: 1 }), Code.AlreadyExists, 'FILE_EXISTS');
    await createUpload(client, { directory: '/elsewhere', name: 'same.txt', size: 5 });
    expect((await fileRowsOf(user.id)).map((row) => `${row.directory}/${row.name}`)).toEqual(['/dup/a_b', '/dup/same.txt', '/elsewhere/same.txt']);
    // Another account has a tree of its own.
    const { client: other } = await server.createUser();
    await createUpload(other, { directory: '/dup', name: 'same.txt', size: 5 });
  });
});

// =======================================================================================

describe("another user's files", () => {
  test('GetFile, Download, GetDownloadUrl, MoveFile, DeleteFile, CompleteUpload and AbortUpload are NotFound, exactly as for no file, and nothing changes', async () => {
    const { user: owner, client: ownerClient } = await server.createUser();
    const { client: stranger } = await server.createUser();
    const available = await uploadPresigned(ownerClient, { directory: '/private', name: 'secret.txt' }, text('top secret\n'));
    const uploadingPlan = await createUpload(ownerClient, { directory: '/private', name: 'coming.txt' }, text('soon'));
    await put(uploadingPlan.uploadUrl, text('soon'));
    const uploading = uploadingPlan.file!;
    const before = await fileRowsOf(owner.id);
    const nobody = '01a20540-c425-76c3-9669-8051ead8987d';

    const calls: [string, (id: string) => Promise<unknown>][] = [
      ['GetFile', (id) => stranger.files.getFile({ id })],
      ['Download', (id) => download(stranger, id)],
      ['GetDownloadUrl', (id) => stranger.files.getDownloadUrl({ id })],
      ['MoveFile', (id) => stranger.files.moveFile({ id, directory: '/mine', name: 'taken.txt' })],
      ['DeleteFile', (id) => stranger.files.deleteFile({ id })],
      ['CompleteUpload', (id) => stranger.files.completeUpload({ fileId: id })],
      ['AbortUpload', (id) => stranger.files.abortUpload({ fileId: id })],
    ];
    for (const [method, call] of calls) {
      const absent = await expectConnectError(() => call(nobody), Code.NotFound);
      for (const target of [available, uploading]) {
        const error = await connectErrorOf(() => call(target.id));
        expect(`${method}: ${Code[error.code]} ${error.rawMessage}`).toBe(`${method}: ${Code[absent.code]} ${absent.rawMessage}`);
      }
    }
    expect(await fileRowsOf(owner.id)).toEqual(before);
    expect(await objectSize(`files/${owner.id}/${available.id}`)).toBe(11);
    expect(await objectSize(`${stagingPrefixOf(owner.id)}${uploading.id}`)).toBe(4);

    for (const recursive of [false, true]) {
      for (const directory of ['/', '/private']) {
        const listing = await stranger.files.listFiles({ directory, recursive });
        expect(listing.files).toEqual([]);
        expect(listing.directories).toEqual([]);
      }
    }
    const listOther = await expectConnectError(stranger.files.listFiles({ ownerId: owner.id }), Code.InvalidArgument);
    expect(violatedFields(listOther)).toEqual(['owner_id']);
    const deleteOther = await expectConnectError(stranger.files.deleteDirectory({ directory: '/private', confirm: '/private', ownerId: owner.id }), Code.InvalidArgument);
    expect(violatedFields(deleteOther)).toEqual(['owner_id']);
    const usageOther = await expectConnectError(stranger.files.getStorageUsage({ userId: owner.id }), Code.InvalidArgument);
    expect(violatedFields(usageOther)).toEqual(['user_id']);
    // Deleting the same path in one's own tree touches only one's own files.
    expect((await stranger.files.deleteDirectory({ directory: '/private', confirm: '/private' })).deletedFiles).toBe(0n);
    expect(await fileRowsOf(owner.id)).toEqual(before);
    // And the owner's job inputs cannot be another user's file.
    const job = await expectConnectError(stranger.jobs.createJob({ type: 'checksum', inputFileIds: [available.id] }), Code.InvalidArgument);
    expect(violatedFields(job)).toEqual(['input_file_ids[0]']);
  });

  test("admins see, list, download, move and delete anyone's files; an admin's MoveFile and DeleteFile are audited with the file id as target", async () => {
    const { user: owner, client: ownerClient } = await server.createUser();
    const bytes = text('owned by a user\n');
    const file = await uploadPresigned(ownerClient, { directory: '/mine', name: 'note.txt' }, bytes);
    const other = await uploadPresigned(ownerClient, { directory: '/mine/sub', name: 'other.txt' }, bytes);
    const { user: adminUser } = await admin.auth.getMe({});

    expect((await admin.files.getFile({ id: file.id })).file).toMatchObject({ id: file.id, ownerId: owner.id });
    const listing = await admin.files.listFiles({ ownerId: owner.id, directory: '/mine' });
    expect(listing.files.map((listed) => listed.id)).toEqual([file.id]);
    expect(listing.directories).toEqual(['/mine/sub']);
    expect((await admin.files.listFiles({ directory: '/mine' })).files).toEqual([]);
    expect((await download(admin, file.id)).bytes).toEqual(bytes);
    const usage = await admin.files.getStorageUsage({ userId: owner.id });
    expect(usage).toMatchObject({ bytes: BigInt(bytes.length * 2), fileCount: 2n });

    await admin.files.moveFile({ id: other.id, directory: '/mine/sub', name: 'renamed.txt' });
    expect(await fileRow(other.id)).toMatchObject({ name: 'renamed.txt', owner_id: owner.id });
    const moves = await server.query<{ actor_id: string; outcome: string }>('select actor_id, outcome from audit_events where action = $1 and target = $2', ['yardmaster.v1.FilesService.MoveFile', other.id]);
    expect(moves).toEqual([{ actor_id: adminUser!.id, outcome: 'success' }]);

    await admin.files.deleteFile({ id: file.id });
    expect(await fileRow(file.id)).toBeUndefined();
    expect(await objectSize(`files/${owner.id}/${file.id}`)).toBeUndefined();
    const audits = await server.query<{ actor_id: string; target: string; outcome: string }>(
      'select actor_id, target, outcome from audit_events where action = $1 and target = $2',
      ['yardmaster.v1.FilesService.DeleteFile', file.id],
    );
    expect(audits).toEqual([{ actor_id: adminUser!.id, target: file.id, outcome: 'success' }]);

    // Reading another account's bytes is audited for admins; owners reading their own are not.
    await admin.files.getDownloadUrl({ id: other.id });
    await ownerClient.files.getDownloadUrl({ id: other.id });
    await download(ownerClient, other.id);
    const reads = await server.query<{ action: string; actor_id: string }>(
      'select action, actor_id from audit_events where target = $1 and action like $2 order by id',
      [other.id, 'yardmaster.v1.FilesService.%Download%'],
    );
    expect(reads).toEqual([{ action: 'yardmaster.v1.FilesService.GetDownloadUrl', actor_id: adminUser!.id }]);
    // The admin's Download of the first file, earlier.
    expect(await server.query('select actor_id from audit_events where action = $1 and target = $2', ['yardmaster.v1.FilesService.Download', file.id])).toEqual([{ actor_id: adminUser!.id }]);

    const { deletedFiles } = await admin.files.deleteDirectory({ directory: '/mine', confirm: '/mine', ownerId: owner.id });
    expect(deletedFiles).toBe(1n);
    expect(await server.query('select actor_id from audit_events where action = $1 and target = $2', ['yardmaster.v1.FilesService.DeleteDirectory', `${owner.id}:/mine`])).toEqual([
      { actor_id: adminUser!.id },
    ]);
    expect(await fileRow(other.id)).toBeUndefined();
    expect(await storedFor(owner.id)).toEqual({ objects: [], multipart: [] });
  });
});

// =======================================================================================

describe('browsing, moving and deleting', () => {
  async function tree(client: YardmasterClient): Promise<Map<string, File>> {
    const files = new Map<string, File>();
    for (const [directory, name] of [
      ['/', 'top.txt'],
      ['/docs', 'a.txt'],
      ['/docs', 'b.txt'],
      ['/docs/sub', 'c.txt'],
      ['/docs/sub/deeper', 'd.txt'],
      ['/docs2', 'e.txt'],
      ['/a_b', 'f.txt'],
      ['/axb', 'g.txt'],
    ] as const) {
      files.set(`${directory === '/' ? '' : directory}/${name}`, await uploadStream(client, { directory, name }, text(`${directory} ${name}\n`)));
    }
    return files;
  }

  test('ListFiles: the files of one directory and its immediate subdirectories as full paths; recursive: everything below, never a sibling that shares a prefix', async () => {
    const { client } = await server.createUser();
    await tree(client);
    const paths = (files: File[]) => files.map((file) => `${file.directory === '/' ? '' : file.directory}/${file.name}`);

    const root = await client.files.listFiles({});
    expect(paths(root.files)).toEqual(['/top.txt']);
    expect(root.directories).toEqual(['/a_b', '/axb', '/docs', '/docs2']);
    const docs = await client.files.listFiles({ directory: '/docs' });
    expect(paths(docs.files)).toEqual(['/docs/a.txt', '/docs/b.txt']);
    expect(docs.directories).toEqual(['/docs/sub']);
    expect(docs.nextPageToken).toBe('');
    expect((await client.files.listFiles({ directory: 'docs/' })).directories).toEqual(['/docs/sub']);
    const recursive = await client.files.listFiles({ directory: '/docs', recursive: true });
    expect(paths(recursive.files)).toEqual(['/docs/a.txt', '/docs/b.txt', '/docs/sub/c.txt', '/docs/sub/deeper/d.txt']);
    expect(recursive.directories).toEqual(['/docs/sub']);
    expect(paths((await client.files.listFiles({ directory: '/a_b', recursive: true })).files)).toEqual(['/a_b/f.txt']);
    const empty = await client.files.listFiles({ directory: '/nothing/here' });
    expect(empty).toMatchObject({ files: [], directories: [], nextPageToken: '' });
  });

  test('ListFiles pages: keyset pages of 3 visit every file once, in order; subdirectories come with the first page only; another listing\'s token is InvalidArgument', async () => {
    const { client } = await server.createUser();
    const files = await tree(client);
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await client.files.listFiles({ directory: '/', recursive: true, pageSize: 3, pageToken });
      expect(page.files.length).toBeLessThanOrEqual(3);
      expect(page.directories, `directories on page ${pages + 1}`).toEqual(pages === 0 ? ['/a_b', '/axb', '/docs', '/docs2'] : []);
      seen.push(...page.files.map((file) => file.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 10);
    expect(pages).toBe(3);
    expect([...seen].sort()).toEqual([...files.values()].map((file) => file.id).sort());
    // The same order as one page of everything.
    expect(seen).toEqual((await client.files.listFiles({ directory: '/', recursive: true, pageSize: 1000 })).files.map((file) => file.id));
    const first = await client.files.listFiles({ directory: '/', recursive: true, pageSize: 3 });
    const error = await expectConnectError(client.files.listFiles({ directory: '/docs', recursive: true, pageSize: 3, pageToken: first.nextPageToken }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['page_token']);
  });

  test('MoveFile renames and moves (path cleaned, bytes untouched); a taken path is AlreadyExists FILE_EXISTS and nothing changes; a name with nothing usable is InvalidArgument', async () => {
    const { user, client } = await server.createUser();
    const bytes = text('moving bytes\n');
    const file = await uploadPresigned(client, { directory: '/inbox', name: 'draft.txt' }, bytes);
    const taken = await uploadPresigned(client, { directory: '/archive/2024', name: 'final.txt' }, text('taken'));
    const key = `files/${user.id}/${file.id}`;

    const renamed = (await client.files.moveFile({ id: file.id, name: 'renamed.txt' })).file!;
    expect(renamed).toMatchObject({ directory: '/inbox', name: 'renamed.txt' });
    const moved = (await client.files.moveFile({ id: file.id, directory: 'archive/.//2024/' })).file!;
    expect(moved).toMatchObject({ directory: '/archive/2024', name: 'renamed.txt' });
    const both = (await client.files.moveFile({ id: file.id, directory: '/x', name: '../y.txt' })).file!;
    expect(both.directory).toBe('/x');
    expectSafeName(both.name);

    const before = await fileRow(file.id);
    const clash = await expectConnectError(client.files.moveFile({ id: file.id, directory: '/archive/2024', name: 'final.txt' }), Code.AlreadyExists, 'FILE_EXISTS');
    expect(violatedFields(clash)).toEqual(['name']);
    expect(await fileRow(file.id)).toEqual(before);
    expect((await client.files.getFile({ id: taken.id })).file).toMatchObject({ directory: '/archive/2024', name: 'final.txt' });
    const nameless = await expectConnectError(client.files.moveFile({ id: file.id, name: '..' }), Code.InvalidArgument);
    expect(violatedFields(nameless)).toEqual(['name']);
    expect(await fileRow(file.id)).toEqual(before);

    expect((await fileRow(file.id))!.object_key).toBe(key);
    expect((await download(client, file.id)).bytes).toEqual(bytes);
    expect((await client.files.listFiles({ directory: '/x' })).files.map((listed) => listed.id)).toEqual([file.id]);
  });

  test('DeleteFile removes the row and the object; a second DeleteFile is NotFound', async () => {
    const { user, client } = await server.createUser();
    const file = await uploadPresigned(client, { name: 'doomed.bin' }, randomBytes(4 * kib));
    const keep = await uploadPresigned(client, { name: 'kept.bin' }, randomBytes(4 * kib));
    await client.files.deleteFile({ id: file.id });
    expect(await fileRow(file.id)).toBeUndefined();
    expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${keep.id}`], multipart: [] });
    await expectConnectError(client.files.deleteFile({ id: file.id }), Code.NotFound);
    await expectConnectError(client.files.getFile({ id: file.id }), Code.NotFound);
    const bad = await expectConnectError(client.files.deleteFile({ id: 'not-a-uuid' }), Code.InvalidArgument);
    expect(violatedFields(bad)).toEqual(['id']);
  });

  test('DeleteDirectory needs confirm equal to the directory, refuses `/`, and deletes every file below it (rows, objects, uploads in progress) and nothing else', async () => {
    const { user, client } = await server.createUser();
    const files = await tree(client);
    const uploading = await createUpload(client, { directory: '/docs/sub', name: 'partial.txt' }, text('partial'));
    await put(uploading.uploadUrl, text('partial'));
    const multipart = await createUpload(client, { directory: '/docs', name: 'large.bin', size: 70 * mib });
    await put(multipart.parts[0]!.url, randomBytes(mib));

    const mismatch = await expectConnectError(client.files.deleteDirectory({ directory: '/docs', confirm: '/doc' }), Code.InvalidArgument);
    expect(violatedFields(mismatch)).toEqual(['confirm']);
    const unconfirmed = await expectConnectError(client.files.deleteDirectory({ directory: '/docs' }), Code.InvalidArgument);
    expect(violatedFields(unconfirmed)).toEqual(['confirm']);
    for (const directory of ['/', '', '/../']) {
      const root = await expectConnectError(client.files.deleteDirectory({ directory, confirm: directory }), Code.InvalidArgument);
      expect(violatedFields(root)).toEqual(['directory']);
    }
    expect(await fileRowsOf(user.id)).toHaveLength(files.size + 2);

    const { deletedFiles } = await client.files.deleteDirectory({ directory: '/docs', confirm: '/docs' });
    expect(deletedFiles).toBe(6n);
    const left = (await fileRowsOf(user.id)).map((row) => `${row.directory}/${row.name}`);
    expect(left).toEqual(['//top.txt', '/a_b/f.txt', '/axb/g.txt', '/docs2/e.txt']);
    const keys = [...files.entries()].filter(([filePath]) => !filePath.startsWith('/docs/')).map(([, file]) => `files/${user.id}/${file.id}`);
    expect(await storedFor(user.id)).toEqual({ objects: keys.sort(), multipart: [] });
    expect((await client.files.listFiles({})).directories).toEqual(['/a_b', '/axb', '/docs2']);
    const { deletedFiles: none } = await client.files.deleteDirectory({ directory: '/docs', confirm: '/docs' });
    expect(none).toBe(0n);
  });

  test('a file that is an input of a queued job cannot be deleted (FailedPrecondition FILE_IN_USE), alone or with its directory; once the job is cancelled it can', async () => {
    const { user, client } = await server.createUser();
    const input = await uploadPresigned(client, { directory: '/inputs', name: 'data.bin' }, randomBytes(kib));
    const sibling = await uploadPresigned(client, { directory: '/inputs', name: 'other.bin' }, randomBytes(kib));
    await admin.queue.pauseQueue({ queue: 'checksum' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { job } = await client.jobs.createJob({ type: 'checksum', inputFileIds: [input.id] });
      expect((await client.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.QUEUED);
      await expectConnectError(client.files.deleteFile({ id: input.id }), Code.FailedPrecondition, 'FILE_IN_USE');
      await expectConnectError(client.files.deleteDirectory({ directory: '/inputs', confirm: '/inputs' }), Code.FailedPrecondition, 'FILE_IN_USE');
      await expectConnectError(admin.files.deleteFile({ id: input.id }), Code.FailedPrecondition, 'FILE_IN_USE');
      expect((await fileRowsOf(user.id)).map((row) => row.id).sort()).toEqual([input.id, sibling.id].sort());
      expect((await storedFor(user.id)).objects).toHaveLength(2);
      // Moving it is fine: jobs refer to files by id.
      await client.files.moveFile({ id: input.id, name: 'renamed.bin' });

      await client.jobs.cancelJob({ id: job!.id });
      await client.files.deleteFile({ id: input.id });
      expect(await fileRow(input.id)).toBeUndefined();
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${sibling.id}`], multipart: [] });
    } finally {
      await admin.queue.resumeQueue({ queue: 'checksum' });
    }
  });
});

// =======================================================================================

describe('GetDownloadUrl', () => {
  test('a plain fetch of the URL returns the bytes as an attachment named after the file, with its content type', async () => {
    const { client } = await server.createUser();
    const bytes = png();
    const file = await uploadPresigned(client, { name: 'résumé 2024.png' }, bytes);
    const { url, expireTime } = await client.files.getDownloadUrl({ id: file.id });
    const expiresIn = timestampDate(expireTime!).getTime() - Date.now();
    expect(expiresIn).toBeGreaterThan(14 * 60_000);
    expect(expiresIn).toBeLessThanOrEqual(15 * 60_000 + 1000);
    const { res, bytes: fetched } = await fetchBytes(url);
    expect(res.status).toBe(200);
    expect(fetched).toEqual(bytes);
    const disposition = res.headers.get('content-disposition') ?? '';
    expect(disposition).toMatch(/^attachment;/);
    expect(disposition).toContain(`filename*=UTF-8''${encodeURIComponent('résumé 2024.png')}`);
    expect(disposition).toMatch(/filename="r_sum_ 2024\.png"|filename="résumé 2024\.png"/);
    expect(res.headers.get('content-type')).toBe('image/png');

    const week = await client.files.getDownloadUrl({ id: file.id, expires: { seconds: 7n * 86_400n } });
    expect((await fetchBytes(week.url)).bytes).toEqual(bytes);
    for (const expires of [{ seconds: 7n * 86_400n + 1n }, { seconds: 0n, nanos: 500_000_000 }, { seconds: -5n }]) {
      const error = await expectConnectError(client.files.getDownloadUrl({ id: file.id, expires }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['expires']);
    }
  });

  test('an UPLOADING file has no download: FailedPrecondition FILE_NOT_AVAILABLE for the URL and for Download', async () => {
    const { client } = await server.createUser();
    const plan = await createUpload(client, { name: 'not-yet.txt', size: 3 });
    await expectConnectError(client.files.getDownloadUrl({ id: plan.file!.id }), Code.FailedPrecondition, 'FILE_NOT_AVAILABLE');
    await expectConnectError(download(client, plan.file!.id), Code.FailedPrecondition, 'FILE_NOT_AVAILABLE');
  });
});

// =======================================================================================

describe('Upload and Download streams', () => {
  for (const protocol of ['connect', 'grpc'] as const) {
    test(`${protocol}: Upload computes the sha256 and sniffs the type; Download returns the bytes, or exactly a range`, async () => {
      const { user, client } = await server.createUser({ protocol });
      const bytes = Buffer.concat([png(), randomBytes(3 * mib)]);
      const file = await uploadStream(client, { directory: '/streamed', name: 'picture.png', contentType: 'application/pdf' }, bytes);
      expect(file).toMatchObject({ status: FileStatus.AVAILABLE, size: BigInt(bytes.length), sha256: sha256(bytes), contentType: 'image/png', directory: '/streamed' });
      expect(await fileRow(file.id)).toMatchObject({ status: 'available', sha256: sha256(bytes), upload_mode: 'stream' });
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${file.id}`], multipart: [] });
      expect(await objectBytes(`files/${user.id}/${file.id}`)).toEqual(bytes);

      const whole = await download(client, file.id);
      expect(whole.file).toMatchObject({ id: file.id, sha256: sha256(bytes) });
      expect(whole.bytes.length).toBe(bytes.length);
      expect(whole.bytes.equals(bytes)).toBe(true);
      // Messages stay well below the 4 MiB that gRPC clients accept by default.
      expect(whole.largestChunk).toBeLessThanOrEqual(1024 * kib);
      expect((await download(client, file.id, 100, 1000)).bytes).toEqual(bytes.subarray(100, 1100));
      expect((await download(client, file.id, bytes.length - 10)).bytes).toEqual(bytes.subarray(bytes.length - 10));
      expect((await download(client, file.id, 5, bytes.length * 2)).bytes).toEqual(bytes.subarray(5));
      const atEnd = await download(client, file.id, bytes.length);
      expect(atEnd.bytes.length).toBe(0);
      expect(atEnd.file?.id).toBe(file.id);
      const beyond = await expectConnectError(download(client, file.id, bytes.length + 1), Code.InvalidArgument);
      expect(violatedFields(beyond)).toEqual(['offset']);
      const negative = await expectConnectError(download(client, file.id, 0, -1), Code.InvalidArgument);
      expect(violatedFields(negative)).toEqual(['length']);

      // A declared sha256 is checked; an empty file is fine.
      const checked = await uploadStream(client, { name: 'checked.bin', sha256: sha256(bytes) }, bytes);
      expect(checked.sha256).toBe(sha256(bytes));
      await expectConnectError(uploadStream(client, { name: 'wrong.bin', sha256: sha256(text('no')) }, bytes), Code.InvalidArgument, 'CHECKSUM_MISMATCH');
      const empty = await uploadStream(client, { name: 'empty.txt' }, new Uint8Array());
      expect(empty).toMatchObject({ size: 0n, sha256: sha256(new Uint8Array()), status: FileStatus.AVAILABLE });
      expect((await download(client, empty.id)).bytes.length).toBe(0);
      expect((await fileRowsOf(user.id)).map((row) => row.name).sort()).toEqual(['checked.bin', 'empty.txt', 'picture.png']);
      expect(await storedFor(user.id).then((stored) => stored.multipart)).toEqual([]);
    });
  }

  test('a first message without metadata, an empty stream, or a second metadata message is InvalidArgument, and nothing is kept', async () => {
    const { user, client } = await server.createUser();
    async function* chunkFirst(): AsyncGenerator<UploadMessage> {
      yield { content: { case: 'chunk', value: text('no metadata') } };
    }
    const noMetadata = await expectConnectError(client.files.upload(chunkFirst()), Code.InvalidArgument);
    expect(violatedFields(noMetadata)).toEqual(['metadata']);
    async function* nothing(): AsyncGenerator<UploadMessage> {}
    const empty = await expectConnectError(client.files.upload(nothing()), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['metadata']);
    async function* twice(): AsyncGenerator<UploadMessage> {
      yield { content: { case: 'metadata', value: { name: 'twice.txt', size: 4n } } };
      yield { content: { case: 'chunk', value: text('ab') } };
      yield { content: { case: 'metadata', value: { name: 'again.txt', size: 2n } } };
    }
    const second = await expectConnectError(client.files.upload(twice()), Code.InvalidArgument);
    expect(violatedFields(second)).toEqual(['chunk']);
    await eventually(async () => {
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    }, 3000);
  });

  test.each([
    ['more', 9 * mib, 10 * mib],
    ['fewer', 2 * mib, mib],
  ])('%s bytes than declared: InvalidArgument SIZE_MISMATCH, no row, no object, no open multipart upload', async (_title, declared, sent) => {
    const { user, client } = await server.createUser();
    const error = await expectConnectError(uploadStream(client, { name: 'wrong-size.bin', size: declared }, randomData(sent)), Code.InvalidArgument, 'SIZE_MISMATCH');
    expect(violatedFields(error)).toEqual(['size']);
    await eventually(async () => {
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    }, 3000);
  });

  test('cancelling an Upload mid-way (the client aborts its signal) leaves no row, no object and no open multipart upload', async () => {
    const { user, client } = await server.createUser({ protocol: 'grpc' });
    const controller = new AbortController();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    async function* halfThenWait(): AsyncGenerator<Uint8Array> {
      for (let index = 0; index < 12; index++) yield randomBytes(mib);
      await held;
    }
    const call = client.files.upload(uploadMessages({ name: 'cancelled.bin', size: BigInt(64 * mib) }, halfThenWait()), { signal: controller.signal });
    call.catch(() => undefined);
    try {
      // The server has the row and has sent a first part to storage.
      await eventually(async () => {
        expect((await fileRowsOf(user.id)).map((row) => row.status)).toEqual(['uploading']);
        expect(openMultipartUploads(`files/${user.id}/`).map((upload) => upload.parts)).toEqual([1]);
      }, 10_000);
      controller.abort();
      await expectConnectError(call, Code.Canceled);
    } finally {
      release();
    }
    await eventually(async () => {
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    }, 5000);
  });
});

// =======================================================================================

describe('the embedded store', () => {
  test('refuses what is not signed with its secret: anonymous reads, writes, deletes and aborts, a presigned URL for another key or with another secret', async () => {
    const { user, client } = await server.createUser();
    const bytes = text('guarded bytes\n');
    const file = await uploadPresigned(client, { name: 'guarded.txt' }, bytes);
    const key = `files/${user.id}/${file.id}`;
    const objectUrl = `${new URL(inject('s3Endpoint')).origin}/${bucket}/${key}`;
    for (const [method, body] of [['GET', undefined], ['PUT', 'overwritten'], ['DELETE', undefined]] as const) {
      const res = await fetch(objectUrl, { method, body });
      expect(res.status, `${method} without a signature`).toBe(403);
      expect(await res.text()).toContain('<Code>AccessDenied</Code>');
    }
    expect((await fetch(`${new URL(inject('s3Endpoint')).origin}/${bucket}?list-type=2`)).status).toBe(403);

    const multipart = await createUpload(client, { name: 'open.bin', size: 70 * mib });
    const uploadId = new URL(multipart.parts[0]!.url).searchParams.get('uploadId')!;
    expect((await fetch(`${objectUrl.replace(file.id, multipart.file!.id)}?uploadId=${encodeURIComponent(uploadId)}`, { method: 'DELETE' })).status).toBe(403);
    expect(openMultipartUploads(`files/${user.id}/`).map((upload) => upload.key)).toEqual([`files/${user.id}/${multipart.file!.id}`]);

    // A signed URL for one key does not open another, and a guessed secret signs nothing.
    const { url } = await client.files.getDownloadUrl({ id: file.id });
    const elsewhere = new URL(url);
    elsewhere.pathname = `/${bucket}/files/${user.id}/${multipart.file!.id}`;
    expect((await fetch(elsewhere)).status).toBe(403);
    const forger = new S3Client({ endPoint: '127.0.0.1', port: Number(new URL(inject('s3Endpoint')).port), useSSL: false, accessKey: inject('s3Credentials').accessKey, secretKey: 'S3RVER', region: 'us-east-1', pathStyle: true });
    expect((await fetch(await forger.presignedGetObject(bucket, key, 60))).status).toBe(403);
    await expect(forger.removeObject(bucket, key)).rejects.toThrow();

    expect(await objectBytes(key)).toEqual(bytes);
    await client.files.abortUpload({ fileId: multipart.file!.id });
  });
});

describe('multipart parts larger than planned', () => {
  test('housekeeping fails a multipart upload whose parts hold more than their size (presigned part URLs cannot bound it) and aborts it; a fair one stays', async () => {
    const { user, client } = await server.createUser();
    const greedy = await createUpload(client, { name: 'greedy.bin', size: 70 * mib });
    const fair = await createUpload(client, { name: 'fair.bin', size: 70 * mib });
    expect(greedy.partSize).toBe(BigInt(16 * mib));
    await put(greedy.parts[0]!.url, randomBytes(16 * mib + 1));
    await put(fair.parts[0]!.url, randomBytes(16 * mib));
    await server.app.runMaintenance();
    expect(await fileRow(greedy.file!.id)).toMatchObject({ status: 'failed', upload_id: null });
    expect(await fileRow(fair.file!.id)).toMatchObject({ status: 'uploading' });
    expect(openMultipartUploads(`files/${user.id}/`).map((upload) => upload.key)).toEqual([`files/${user.id}/${fair.file!.id}`]);
    await client.files.abortUpload({ fileId: fair.file!.id });
  });
});

describe('uploads that race', () => {
  test('concurrent CompleteUploads of one upload all answer AVAILABLE', async () => {
    const { client } = await server.createUser();
    for (let round = 0; round < 5; round++) {
      const bytes = randomBytes(20 * kib);
      const plan = await createUpload(client, { name: `raced-${round}.bin` }, bytes);
      await put(plan.uploadUrl, bytes);
      const replies = await Promise.all(Array.from({ length: 4 }, () => client.files.completeUpload({ fileId: plan.file!.id })));
      expect(replies.map((reply) => reply.file!.status)).toEqual(Array(4).fill(FileStatus.AVAILABLE));
      expect((await download(client, plan.file!.id)).bytes).toEqual(bytes);
    }
  });

  test('an Upload stream whose upload is removed by housekeeping meanwhile fails UPLOAD_GONE and leaves no bytes', async () => {
    const { user, client } = await server.createUser();
    let release!: () => void;
    const paused = new Promise<void>((resolve) => (release = resolve));
    let firstSent!: () => void;
    const sentFirst = new Promise<void>((resolve) => (firstSent = resolve));
    async function* chunks() {
      yield randomBytes(kib);
      firstSent();
      await paused;
      yield randomBytes(kib);
    }
    const uploading = expectConnectError(client.files.upload(uploadMessages({ name: 'slow.bin', size: BigInt(2 * kib) }, chunks())), Code.FailedPrecondition, 'UPLOAD_GONE');
    await sentFirst;
    await eventually(async () => expect(await fileRowsOf(user.id)).toHaveLength(1), 5000, 20);
    await server.query(`update files set upload_expires_at = now() - interval '1 minute' where owner_id = $1`, [user.id]);
    await server.app.runMaintenance();
    release();
    await uploading;
    expect(await fileRowsOf(user.id)).toEqual([]);
    expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
  });
});

describe('stale uploads', () => {
  test('maintenance removes uploads past their expiry (row, object, multipart upload) and day-old failures; fresh uploads and available files stay', async () => {
    const { user, client } = await server.createUser();
    const single = await createUpload(client, { name: 'stale-single.bin' }, randomBytes(kib));
    await put(single.uploadUrl, randomBytes(kib));
    const multipart = await createUpload(client, { name: 'stale-multipart.bin', size: 65 * mib });
    await put(multipart.parts[0]!.url, randomBytes(mib));
    const fresh = await createUpload(client, { name: 'fresh.bin' }, randomBytes(kib));
    await put(fresh.uploadUrl, randomBytes(kib));
    const available = await uploadPresigned(client, { name: 'done.bin' }, randomBytes(kib));
    const failed = await createUpload(client, { name: 'failed.bin', size: 10 });
    await put(failed.uploadUrl, randomBytes(11));
    await expectConnectError(client.files.completeUpload({ fileId: failed.file!.id }), Code.InvalidArgument, 'SIZE_MISMATCH');
    const recentFailure = await createUpload(client, { name: 'failed-today.bin', size: 10 });
    await put(recentFailure.uploadUrl, randomBytes(11));
    await expectConnectError(client.files.completeUpload({ fileId: recentFailure.file!.id }), Code.InvalidArgument, 'SIZE_MISMATCH');

    await server.query(`update files set upload_expires_at = now() - interval '1 minute' where id = any($1)`, [[single.file!.id, multipart.file!.id]]);
    await server.query(`update files set updated_at = now() - interval '2 days' where id = $1`, [failed.file!.id]);
    expect(openMultipartUploads(`files/${user.id}/`)).toEqual([{ key: `files/${user.id}/${multipart.file!.id}`, parts: 1 }]);

    await server.app.runMaintenance();

    expect((await fileRowsOf(user.id)).map((row) => `${row.name} ${row.status}`)).toEqual(['done.bin available', 'failed-today.bin failed', 'fresh.bin uploading']);
    expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${available.id}`, `${stagingPrefixOf(user.id)}${fresh.file!.id}`].sort(), multipart: [] });
    // The fresh upload can still be completed.
    expect((await client.files.completeUpload({ fileId: fresh.file!.id })).file!.status).toBe(FileStatus.AVAILABLE);
  });
});

// =======================================================================================

describe('jobs with files', () => {
  test('input_file_ids must be the caller\'s AVAILABLE files: another user\'s or an UPLOADING one is InvalidArgument `input_file_ids[0]`', async () => {
    const { user, client } = await server.createUser();
    const { client: other } = await server.createUser();
    const theirs = await uploadPresigned(other, { name: 'theirs.bin' }, randomBytes(kib));
    const uploading = await createUpload(client, { name: 'uploading.bin', size: 10 });
    for (const id of [theirs.id, uploading.file!.id]) {
      const error = await expectConnectError(client.jobs.createJob({ type: 'checksum', inputFileIds: [id] }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['input_file_ids[0]']);
    }
    const jobs = await server.query<{ n: number }>('select count(*)::int as n from jobs where owner_id = $1', [user.id]);
    expect(jobs[0]!.n).toBe(0);
  });

  test('checksum on two files succeeds with the sha256 of each', async () => {
    const { client } = await server.createUser();
    const first = randomBytes(300 * kib);
    const second = text('second input\n');
    const a = await uploadPresigned(client, { name: 'a.bin' }, first);
    const b = await uploadStream(client, { directory: '/other', name: 'b.txt' }, second);
    const { job } = await client.jobs.createJob({ type: 'checksum', inputFileIds: [a.id, b.id] });
    const done = await waitForJob(client, job!.id, JobStatus.SUCCEEDED);
    expect(done.result).toEqual({
      files: [
        { id: a.id, name: 'a.bin', size: first.length, sha256: sha256(first) },
        { id: b.id, name: 'b.txt', size: second.length, sha256: sha256(second) },
      ],
    });
  });

  test('archive writes one .tar.gz output under /jobs/<job id>, made by the job, that contains the inputs byte for byte', async () => {
    const { user, client } = await server.createUser();
    const inputs = [
      { directory: '/in', name: 'one.bin', bytes: randomBytes(200 * kib) },
      { directory: '/in', name: 'two.txt', bytes: text('two\n'.repeat(1000)) },
      { directory: '/elsewhere', name: 'one.bin', bytes: randomBytes(10 * kib) },
    ];
    const files = [];
    for (const input of inputs) files.push(await uploadStream(client, { directory: input.directory, name: input.name }, input.bytes));
    const { job } = await client.jobs.createJob({ type: 'archive', inputFileIds: files.map((file) => file.id), params: { name: 'bundle.tar.gz' } });
    const done = await waitForJob(client, job!.id, JobStatus.SUCCEEDED);
    expect(done.outputFileIds).toHaveLength(1);
    const outputId = done.outputFileIds[0]!;
    expect(done.result).toMatchObject({ archiveFileId: outputId, files: 3 });
    const { file: output } = await client.files.getFile({ id: outputId });
    expect(output).toMatchObject({ ownerId: user.id, jobId: job!.id, directory: `/jobs/${job!.id}`, name: 'bundle.tar.gz', contentType: 'application/gzip', status: FileStatus.AVAILABLE });
    expect(await fileRow(outputId)).toMatchObject({ job_id: job!.id, status: 'available', object_key: `files/${user.id}/${outputId}` });
    expect((await client.files.listFiles({ directory: '/jobs' })).directories).toEqual([`/jobs/${job!.id}`]);

    const archive = await download(client, outputId);
    expect(BigInt(archive.bytes.length)).toBe(output!.size);
    expect(sha256(archive.bytes)).toBe(output!.sha256);
    const entries = await untarGz(archive.bytes);
    expect(entries.map((entry) => entry.name).slice(0, 2)).toEqual(['one.bin', 'two.txt']);
    expect(entries[2]!.name).not.toBe('one.bin');
    expect(entries[2]!.name).toContain('one.bin');
    expect(entries.map((entry) => sha256(entry.bytes))).toEqual(inputs.map((input) => sha256(input.bytes)));
    expect(await storedFor(user.id).then((stored) => stored.multipart)).toEqual([]);
  });

  test('an archive whose input\'s stored bytes disagree with its recorded size fails INPUT_CORRUPT (not retried) and the server keeps working', async () => {
    const { user, client } = await server.createUser();
    for (const replacement of [randomBytes(3 * kib), randomBytes(kib / 2)]) {
      const input = await uploadPresigned(client, { name: `changed-${replacement.length}.bin` }, randomBytes(kib));
      // Changed behind the server's back, in storage itself.
      await s3.putObject(bucket, `files/${user.id}/${input.id}`, replacement, replacement.length);
      const { job } = await client.jobs.createJob({ type: 'archive', inputFileIds: [input.id], maxAttempts: 3 });
      const failed = await waitForJob(client, job!.id, JobStatus.FAILED);
      expect(failed.error).toMatchObject({ code: 'INPUT_CORRUPT' });
      expect(failed.attempt).toBe(1);
    }
    const healthy = await uploadPresigned(client, { name: 'healthy.bin' }, randomBytes(kib));
    const { job } = await client.jobs.createJob({ type: 'archive', inputFileIds: [healthy.id] });
    await waitForJob(client, job!.id, JobStatus.SUCCEEDED);
  });

  test('an archive output beyond the remaining quota fails the job and leaves no output file', async () => {
    const { user, client } = await server.createUser();
    const input = await uploadStream(client, { name: 'incompressible.bin' }, randomData(200 * 1024));
    await withSettings({ 'files.user_quota_bytes': 300 * 1024 }, async () => {
      const { job } = await client.jobs.createJob({ type: 'archive', inputFileIds: [input.id], maxAttempts: 1 });
      const failed = await waitForJob(client, job!.id, JobStatus.FAILED);
      expect(failed.outputFileIds).toEqual([]);
      // The job says why it failed: its output did not fit the quota.
      expect(failed.error?.message).toMatch(/quota|limit/);
      await eventually(async () => {
        expect((await fileRowsOf(user.id)).map((row) => row.id)).toEqual([input.id]);
        expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${input.id}`], multipart: [] });
      }, 5000);
    });
  });

  test('a failing archive attempt leaves no output file: no row, no object, no open multipart upload', async () => {
    const { user, client } = await server.createUser();
    const big = await uploadStream(client, { name: 'big.bin' }, randomData(9 * mib));
    const lost = await uploadStream(client, { name: 'lost.txt' }, text('storage will lose me\n'));
    // Storage loses the second input's bytes behind the server's back.
    await s3.removeObject(bucket, `files/${user.id}/${lost.id}`);
    const { job } = await client.jobs.createJob({ type: 'archive', inputFileIds: [big.id, lost.id], maxAttempts: 1 });
    const failed = await waitForJob(client, job!.id, JobStatus.FAILED, 20_000);
    expect(failed.outputFileIds).toEqual([]);
    await eventually(async () => {
      expect(await server.query('select id from files where job_id = $1', [job!.id])).toEqual([]);
      expect((await fileRowsOf(user.id)).map((row) => row.id).sort()).toEqual([big.id, lost.id].sort());
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${big.id}`], multipart: [] });
    }, 5000);
  });
});

// =======================================================================================

describe('storage usage and metrics', () => {
  test('GetStorageUsage: bytes and counts of available files by content type, largest first; uploading bytes; the quota', async () => {
    const { user, client } = await server.createUser();
    const image = png();
    const first = text('a'.repeat(5000));
    const second = text('b'.repeat(3000));
    await uploadPresigned(client, { name: 'p.png' }, image);
    await uploadPresigned(client, { name: 'a.txt' }, first);
    await uploadStream(client, { name: 'b.txt' }, second);
    await createUpload(client, { name: 'pending.bin', size: 777 });
    const failing = await createUpload(client, { name: 'failing.bin', size: 5 });
    await put(failing.uploadUrl, randomBytes(6));
    await expectConnectError(client.files.completeUpload({ fileId: failing.file!.id }), Code.InvalidArgument, 'SIZE_MISMATCH');

    const usage = await client.files.getStorageUsage({});
    expect(usage).toMatchObject({ bytes: BigInt(image.length + 8000), fileCount: 3n, uploadingBytes: 777n, quotaBytes: 0n });
    expect(usage.byContentType.map((entry) => [entry.contentType, entry.bytes, entry.fileCount])).toEqual([
      ['text/plain', 8000n, 2n],
      ['image/png', BigInt(image.length), 1n],
    ]);
    expect(await client.files.getStorageUsage({ userId: user.id })).toEqual(usage);
    const byAdmin = await admin.files.getStorageUsage({ userId: user.id });
    expect(byAdmin).toEqual(usage);
    await withSettings({ 'files.user_quota_bytes': 1_000_000 }, async () => {
      expect((await client.files.getStorageUsage({})).quotaBytes).toBe(1_000_000n);
    });
    const { client: other } = await server.createUser();
    const refused = await expectConnectError(other.files.getStorageUsage({ userId: user.id }), Code.InvalidArgument);
    expect(violatedFields(refused)).toEqual(['user_id']);
  });

  test('AdminService.GetMetrics counts the available files and their bytes', async () => {
    const totals = async () => {
      const [row] = await server.query<{ files: number; bytes: string }>(`select count(*)::int as files, coalesce(sum(size), 0)::text as bytes from files where status = 'available'`);
      return { filesTotal: BigInt(row!.files), fileBytesTotal: BigInt(row!.bytes) };
    };
    const before = await admin.admin.getMetrics({});
    expect({ filesTotal: before.filesTotal, fileBytesTotal: before.fileBytesTotal }).toEqual(await totals());
    const { client } = await server.createUser();
    await uploadPresigned(client, { name: 'counted.bin' }, randomBytes(12_345));
    await createUpload(client, { name: 'not-counted.bin', size: 1000 });
    const after = await admin.admin.getMetrics({});
    expect(after.filesTotal - before.filesTotal).toBe(1n);
    expect(after.fileBytesTotal - before.fileBytesTotal).toBe(12_345n);
    expect({ filesTotal: after.filesTotal, fileBytesTotal: after.fileBytesTotal }).toEqual(await totals());
  });
});

// =======================================================================================

describe('deleting an account', () => {
  test("AdminService.DeleteUser removes the account's files from the bucket: objects, uploads in progress and multipart uploads", async () => {
    const { user, client } = await server.createUser();
    await uploadPresigned(client, { name: 'kept-forever.bin' }, randomBytes(2 * kib));
    await uploadStream(client, { directory: '/deep/down', name: 'streamed.bin' }, randomBytes(2 * kib));
    const single = await createUpload(client, { name: 'half.bin' }, randomBytes(kib));
    await put(single.uploadUrl, randomBytes(kib));
    const multipart = await createUpload(client, { name: 'large.bin', size: 70 * mib });
    await put(multipart.parts[0]!.url, randomBytes(mib));
    const { user: bystander, client: bystanderClient } = await server.createUser();
    const survivor = await uploadPresigned(bystanderClient, { name: 'survivor.bin' }, randomBytes(kib));
    const stored = await storedFor(user.id);
    expect(stored.objects).toHaveLength(3);
    expect(stored.multipart).toHaveLength(1);

    await admin.admin.deleteUser({ id: user.id, confirm: user.username });
    expect(await fileRowsOf(user.id)).toEqual([]);
    expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    expect(await storedFor(bystander.id)).toEqual({ objects: [`files/${bystander.id}/${survivor.id}`], multipart: [] });
  });
});
