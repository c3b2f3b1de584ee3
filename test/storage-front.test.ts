/**
 * The embedded store's front as an attacker meets it: a real server on a real database,
 * the run's embedded S3 store (s3rver behind its Signature V4 front), and raw HTTP
 * requests built from the presigned URLs the server hands out. Each test checks the
 * store's reply (status, S3 error code) and what the bucket holds afterwards.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { Code } from '@connectrpc/connect';
import { Client as S3Client } from 'minio';
import { presignSignatureV4, signV4 } from 'minio/dist/esm/signing.mjs';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { FileStatus } from '../gen/yardmaster/v1/files_pb.ts';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { expectConnectError } from './support/assertions.ts';
import { startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

let server: TestServer;
let victim: TestUser;
let attacker: TestUser;
let store: S3Client;
let bucket: string;
const endpoint = new URL(inject('s3Endpoint'));
const credentials = inject('s3Credentials');

/** What the victim keeps: their file's key and bytes. */
let victimKey: string;
const victimBytes = Buffer.from('the victim keeps this to themselves\n');

beforeAll(async () => {
  server = await startTestServer();
  [victim, attacker] = await Promise.all([server.createUser(), server.createUser()]);
  store = new S3Client({
    endPoint: endpoint.hostname,
    port: Number(endpoint.port),
    useSSL: false,
    ...credentials,
    region: 'us-east-1',
    pathStyle: true,
  });
  const plan = await victim.client.files.createUpload({ directory: '/private', name: 'secret.txt', size: BigInt(victimBytes.length) });
  bucket = new URL(plan.uploadUrl).pathname.split('/')[1]!;
  expect((await send(plan.uploadUrl, { method: 'PUT', body: victimBytes })).status).toBe(200);
  const { file } = await victim.client.files.completeUpload({ fileId: plan.file!.id });
  expect(file!.status).toBe(FileStatus.AVAILABLE);
  victimKey = `files/${victim.user.id}/${file!.id}`;
});

afterAll(async () => {
  await server?.close();
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request with exactly these headers (and the Host Node adds). */
function send(url: string, options: { method: string; headers?: Record<string, string>; body?: Buffer }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: options.method,
        headers: { ...(options.body ? { 'content-length': String(options.body.length) } : {}), ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(options.body);
  });
}

const codeOf = (reply: Reply) => /<Code>([^<]*)<\/Code>/.exec(reply.body)?.[1];

async function objectBytes(key: string): Promise<Buffer | undefined> {
  try {
    const chunks: Buffer[] = [];
    for await (const chunk of await store.getObject(bucket, key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  } catch {
    return undefined;
  }
}

/** A fresh upload plan of the attacker: their own staging key and its presigned PUT URL. */
async function attackerUpload(client: YardmasterClient = attacker.client, size = victimBytes.length) {
  const plan = await client.files.createUpload({
    directory: '/loot',
    name: `copy-${Math.random().toString(36).slice(2)}.txt`,
    size: BigInt(size),
  });
  const url = new URL(plan.uploadUrl);
  return { fileId: plan.file!.id, url: plan.uploadUrl, stagingKey: decodeURIComponent(url.pathname.split('/').slice(2).join('/')) };
}

/** A URL presigned with the store's own credentials, with extra signed headers and query. */
function presign(method: string, key: string, options: { query?: string; headers?: Record<string, string> } = {}): string {
  const path = `/${bucket}${key ? `/${key}` : ''}${options.query ? `?${options.query}` : ''}`;
  return presignSignatureV4(
    { method, protocol: 'http:', path, headers: { host: endpoint.host, ...options.headers } },
    credentials.accessKey,
    credentials.secretKey,
    '',
    'us-east-1',
    new Date(),
    60,
  );
}

describe('unsigned x-amz-* headers', () => {
  test("the replay: the attacker's presigned PUT with an unsigned x-amz-copy-source of the victim's key is refused, and CompleteUpload finds no bytes", async () => {
    const upload = await attackerUpload();
    const reply = await send(upload.url, { method: 'PUT', headers: { 'x-amz-copy-source': `/${bucket}/${victimKey}` } });
    expect(reply.status, reply.body).toBe(403);
    expect(codeOf(reply)).toBe('AccessDenied');
    expect(reply.body).toContain('<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>');
    expect(await objectBytes(upload.stagingKey)).toBeUndefined();
    await expectConnectError(attacker.client.files.completeUpload({ fileId: upload.fileId }), Code.FailedPrecondition, 'INCOMPLETE_UPLOAD');
    expect((await attacker.client.files.getFile({ id: upload.fileId })).file!.status).toBe(FileStatus.UPLOADING);
    // Percent-encoded, with a version id, or as a part copy of a multipart plan: the same.
    for (const source of [encodeURIComponent(`/${bucket}/${victimKey}`), `${bucket}/${victimKey}?versionId=null`]) {
      expect((await send(upload.url, { method: 'PUT', headers: { 'x-amz-copy-source': source } })).status).toBe(403);
    }
    const multipart = await attacker.client.files.createUpload({ directory: '/loot', name: 'big.bin', size: BigInt(70 * 1024 * 1024) });
    const partReply = await send(multipart.parts[0]!.url, { method: 'PUT', headers: { 'x-amz-copy-source': `/${bucket}/${victimKey}` } });
    expect(partReply.status, partReply.body).toBe(403);
    expect(partReply.body).toContain('<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>');
    expect(await objectBytes(upload.stagingKey)).toBeUndefined();
    expect(await objectBytes(victimKey)).toEqual(victimBytes);
    await attacker.client.files.abortUpload({ fileId: multipart.file!.id });
  });

  test.each([
    ['x-amz-acl', 'public-read'],
    ['x-amz-tagging', 'owner=attacker'],
    ['x-amz-meta-note', 'planted'],
    ['x-amz-storage-class', 'GLACIER'],
    ['x-amz-website-redirect-location', 'https://attacker.example/'],
    ['x-amz-metadata-directive', 'REPLACE'],
    ['x-amz-server-side-encryption', 'AES256'],
    ['x-amz-content-sha256', 'UNSIGNED-PAYLOAD'],
    ['x-amz-copy-source-range', 'bytes=0-3'],
    ['X-Amz-Grant-Read', 'uri=http://acs.amazonaws.com/groups/global/AllUsers'],
  ])('a presigned PUT with an unsigned %s header is refused and writes nothing', async (name, value) => {
    const upload = await attackerUpload();
    const reply = await send(upload.url, { method: 'PUT', headers: { [name]: value }, body: victimBytes });
    expect(reply.status, reply.body).toBe(403);
    expect(codeOf(reply)).toBe('AccessDenied');
    expect(reply.body).toContain(`<HeadersNotSigned>${name.toLowerCase()}</HeadersNotSigned>`);
    expect(await objectBytes(upload.stagingKey)).toBeUndefined();
  });

  test('a presigned GET with an unsigned x-amz-* header is refused; with response overrides, Range and conditional headers it works', async () => {
    const { id } = (await victim.client.files.listFiles({ directory: '/private' })).files[0]!;
    const { url } = await victim.client.files.getDownloadUrl({ id });
    const refused = await send(url, { method: 'GET', headers: { 'x-amz-checksum-mode': 'ENABLED' } });
    expect(refused.status, refused.body).toBe(403);
    expect(refused.body).toContain('<HeadersNotSigned>x-amz-checksum-mode</HeadersNotSigned>');
    const whole = await send(url, { method: 'GET' });
    expect(whole.status).toBe(200);
    expect(whole.body).toBe(victimBytes.toString());
    expect(whole.headers['content-disposition']).toContain('attachment; filename="secret.txt"');
    expect(whole.headers['content-type']).toBe('text/plain');
    const range = await send(url, { method: 'GET', headers: { range: 'bytes=4-9', 'if-match': whole.headers.etag! } });
    expect(range.status).toBe(206);
    expect(range.body).toBe(victimBytes.subarray(4, 10).toString());
  });

  test('a presigned PUT may carry Content-Type and Content-MD5 unsigned (as browsers and curl send them): the bytes are stored', async () => {
    const upload = await attackerUpload(attacker.client, 5);
    const body = Buffer.from('hello');
    const reply = await send(upload.url, {
      method: 'PUT',
      headers: { 'content-type': 'text/plain', 'content-md5': createHash('md5').update(body).digest('base64') },
      body,
    });
    expect(reply.status, reply.body).toBe(200);
    expect(await objectBytes(upload.stagingKey)).toEqual(body);
  });

  test('a request signed in the Authorization header with an unsigned x-amz-copy-source is refused too', async () => {
    const upload = await attackerUpload();
    const date = new Date();
    const amzDate = date.toISOString().replace(/[-:]|\.\d{3}/g, '');
    const path = `/${bucket}/${upload.stagingKey}`;
    const signed = { host: endpoint.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' };
    const authorization = signV4(
      { method: 'PUT', protocol: 'http:', path, headers: signed },
      credentials.accessKey,
      credentials.secretKey,
      'us-east-1',
      date,
      'UNSIGNED-PAYLOAD',
    );
    const reply = await send(`${endpoint.origin}${path}`, {
      method: 'PUT',
      headers: { ...signed, authorization, 'x-amz-copy-source': `/${bucket}/${victimKey}` },
    });
    expect(reply.status, reply.body).toBe(403);
    expect(reply.body).toContain('<HeadersNotSigned>x-amz-copy-source</HeadersNotSigned>');
    expect(await objectBytes(upload.stagingKey)).toBeUndefined();
  });
});

describe('what a presigned URL may do', () => {
  test.each([
    ['PUT ?acl', 'PUT', 'object', 'acl='],
    ['GET ?acl', 'GET', 'object', 'acl='],
    ['PUT ?tagging', 'PUT', 'object', 'tagging='],
    ['GET ?tagging', 'GET', 'object', 'tagging='],
    ['DELETE ?tagging', 'DELETE', 'object', 'tagging='],
    ['DELETE an object', 'DELETE', 'object', ''],
    ['POST ?uploads (start a multipart upload)', 'POST', 'object', 'uploads='],
    ['GET ?uploadId (list parts)', 'GET', 'object', 'uploadId=abc'],
    ['DELETE ?uploadId (abort)', 'DELETE', 'object', 'uploadId=abc'],
    ['POST ?uploadId (complete)', 'POST', 'object', 'uploadId=abc'],
    ['PUT ?partNumber without uploadId', 'PUT', 'object', 'partNumber=1'],
    ['PUT ?partNumber&uploadId&acl', 'PUT', 'object', 'acl=&partNumber=1&uploadId=abc'],
    ['GET ?partNumber', 'GET', 'object', 'partNumber=1'],
    ['POST ?delete on the bucket', 'POST', '', 'delete='],
    ['GET the bucket (list)', 'GET', '', 'list-type=2'],
    ['PUT ?copy', 'PUT', 'object', 'copy='],
    ['PUT ?cors on the bucket', 'PUT', '', 'cors='],
  ])('%s is refused (403) and changes nothing', async (_title, method, target, query) => {
    const key = target === 'object' ? victimKey : '';
    const reply = await send(presign(method, key, { query }), {
      method,
      body: method === 'PUT' || method === 'POST' ? Buffer.from('<x/>') : undefined,
    });
    expect(reply.status, reply.body).toBe(403);
    expect(codeOf(reply)).toBe('AccessDenied');
    expect(await objectBytes(victimKey)).toEqual(victimBytes);
    const tags = await store.getObjectTagging(bucket, victimKey);
    expect(tags).toEqual([]);
  });

  test('a copy is refused even when the presigner signed x-amz-copy-source, as object or as part', async () => {
    const upload = await attackerUpload();
    const copySource = `/${bucket}/${victimKey}`;
    const whole = await send(presign('PUT', upload.stagingKey, { headers: { 'x-amz-copy-source': copySource } }), {
      method: 'PUT',
      headers: { 'x-amz-copy-source': copySource },
    });
    expect(whole.status, whole.body).toBe(403);
    expect(codeOf(whole)).toBe('AccessDenied');
    const uploadId = await store.initiateNewMultipartUpload(bucket, upload.stagingKey, {});
    const part = await send(
      presign('PUT', upload.stagingKey, { query: `partNumber=1&uploadId=${uploadId}`, headers: { 'x-amz-copy-source': copySource } }),
      {
        method: 'PUT',
        headers: { 'x-amz-copy-source': copySource },
      },
    );
    expect(part.status, part.body).toBe(403);
    await store.abortMultipartUpload(bucket, upload.stagingKey, uploadId);
    expect(await objectBytes(upload.stagingKey)).toBeUndefined();
  });

  test('the operations the server presigns still work: PUT, PUT of a part, GET and HEAD', async () => {
    const upload = await attackerUpload(attacker.client, 3);
    expect((await send(upload.url, { method: 'PUT', body: Buffer.from('abc') })).status).toBe(200);
    expect((await send(presign('HEAD', upload.stagingKey), { method: 'HEAD' })).status).toBe(200);
    expect((await send(presign('GET', upload.stagingKey, { query: 'response-content-type=text%2Fplain' }), { method: 'GET' })).body).toBe(
      'abc',
    );
  });
});

describe('duplicated query parameters', () => {
  test.each([
    ['a second X-Amz-Signature', (url: URL) => `${url}&X-Amz-Signature=${url.searchParams.get('X-Amz-Signature')}`],
    ['a second, different X-Amz-Signature', (url: URL) => `${url}&X-Amz-Signature=${'0'.repeat(64)}`],
    ['a second X-Amz-Credential', (url: URL) => `${url}&X-Amz-Credential=${encodeURIComponent(url.searchParams.get('X-Amz-Credential')!)}`],
    ['a second X-Amz-Date', (url: URL) => `${url}&X-Amz-Date=${url.searchParams.get('X-Amz-Date')}`],
    [
      'a repeated name with another spelling of its value',
      (url: URL) => `${url.origin}${url.pathname}?X-Amz-Expires=60&${url.search.slice(1)}`,
    ],
  ])('%s is 400 InvalidArgument and writes nothing', async (_title, tamper) => {
    const upload = await attackerUpload();
    const reply = await send(tamper(new URL(upload.url)), { method: 'PUT', body: victimBytes });
    expect(reply.status, reply.body).toBe(400);
    expect(codeOf(reply)).toBe('InvalidArgument');
    expect(await objectBytes(upload.stagingKey)).toBeUndefined();
  });

  test('a duplicated response override on a presigned GET is 400', async () => {
    const { id } = (await victim.client.files.listFiles({ directory: '/private' })).files[0]!;
    const { url } = await victim.client.files.getDownloadUrl({ id });
    const reply = await send(`${url}&response-content-type=text%2Fhtml`, { method: 'GET' });
    expect(reply.status, reply.body).toBe(400);
    expect(codeOf(reply)).toBe('InvalidArgument');
  });
});
