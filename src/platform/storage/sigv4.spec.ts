import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from 'minio';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { checkPresignedOperation, signSigV4, verifySigV4, type SignatureCheck, type SignedRequest } from './sigv4.ts';

const accessKey = 'TESTKEY';
const secretKey = 'test-secret-of-the-store';
const secretOf = (key: string) => (key === accessKey ? secretKey : undefined);

/** Records each request that reaches it, as the embedded store's front sees it, and answers 404. */
let server: http.Server;
let seen: SignedRequest[] = [];
let port: number;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers });
    req.resume();
    res.writeHead(404, { 'content-type': 'application/xml' }).end('<Error><Code>NoSuchKey</Code></Error>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => server.close());

const client = (secret = secretKey) =>
  new Client({ endPoint: '127.0.0.1', port, useSSL: false, accessKey, secretKey: secret, region: 'us-east-1', pathStyle: true });

function presignedRequest(url: string, method = 'PUT'): SignedRequest {
  const parsed = new URL(url);
  return { method, url: `${parsed.pathname}${parsed.search}`, headers: { host: parsed.host } };
}

const failure = (check: SignatureCheck) => (check.ok ? 'ok' : check.code);

test('a presigned PUT verifies; another path, method, host or secret, or a later time, does not', async () => {
  const url = await client().presignedPutObject('bucket', 'uploads/a b/ü.txt', 60);
  const request = presignedRequest(url);
  expect(verifySigV4(request, secretOf)).toEqual({ ok: true });
  expect(failure(verifySigV4({ ...request, url: request.url.replace('uploads/', 'files/') }, secretOf))).toBe('SignatureDoesNotMatch');
  expect(failure(verifySigV4({ ...request, method: 'DELETE' }, secretOf))).toBe('SignatureDoesNotMatch');
  expect(failure(verifySigV4({ ...request, headers: { host: 'elsewhere:9000' } }, secretOf))).toBe('SignatureDoesNotMatch');
  expect(failure(verifySigV4(presignedRequest(await client('another secret').presignedPutObject('bucket', 'k', 60)), secretOf))).toBe(
    'SignatureDoesNotMatch',
  );
  expect(failure(verifySigV4(request, secretOf, new Date(Date.now() + 61_000)))).toBe('AccessDenied');
});

test('a presigned part URL (extra query parameters) and a presigned GET with response overrides verify', async () => {
  const part = await client().presignedUrl('PUT', 'bucket', 'files/x', 60, { partNumber: '3', uploadId: 'abc-123' });
  expect(verifySigV4(presignedRequest(part), secretOf)).toEqual({ ok: true });
  expect(failure(verifySigV4(presignedRequest(part.replace('partNumber=3', 'partNumber=4')), secretOf))).toBe('SignatureDoesNotMatch');
  const get = await client().presignedGetObject('bucket', 'files/x', 60, {
    'response-content-disposition': 'attachment; filename="a b.txt"',
  });
  expect(verifySigV4(presignedRequest(get, 'GET'), secretOf)).toEqual({ ok: true });
});

test('requests signed in the Authorization header verify; a changed signed header or an unknown key does not', async () => {
  seen = [];
  await client()
    .statObject('bucket', 'files/some key')
    .catch(() => undefined);
  await client()
    .putObject('bucket', 'files/put', Buffer.from('hello'), 5)
    .catch(() => undefined);
  expect(seen.length).toBeGreaterThanOrEqual(2);
  for (const request of seen) expect(verifySigV4(request, secretOf), `${request.method} ${request.url}`).toEqual({ ok: true });
  const [first] = seen;
  expect(failure(verifySigV4({ ...first!, headers: { ...first!.headers, 'x-amz-date': '20200101T000000Z' } }, secretOf))).not.toBe('ok');
  expect(failure(verifySigV4(first!, () => undefined))).toBe('InvalidAccessKeyId');
});

test('anonymous, V2 and malformed requests are refused, without throwing', () => {
  expect(failure(verifySigV4({ method: 'GET', url: '/bucket/files/x', headers: { host: 'h' } }, secretOf))).toBe('AccessDenied');
  expect(
    failure(
      verifySigV4(
        { method: 'GET', url: '/bucket/x?AWSAccessKeyId=TESTKEY&Signature=abc&Expires=9999999999', headers: { host: 'h' } },
        secretOf,
      ),
    ),
  ).toBe('AccessDenied');
  expect(
    failure(verifySigV4({ method: 'GET', url: '/bucket/x', headers: { host: 'h', authorization: 'AWS TESTKEY:abc' } }, secretOf)),
  ).toBe('AccessDenied');
  expect(
    failure(
      verifySigV4(
        { method: 'GET', url: '/bucket/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%E0%A4%A', headers: { host: 'h' } },
        secretOf,
      ),
    ),
  ).toBe('AccessDenied');
  expect(
    failure(verifySigV4({ method: 'GET', url: '/bucket/x', headers: { host: 'h', authorization: 'AWS4-HMAC-SHA256 garbage' } }, secretOf)),
  ).toBe('AccessDenied');
});

const refusal = (check: SignatureCheck) =>
  check.ok ? { ok: true } : { status: check.status, code: check.code, headersNotSigned: check.headersNotSigned };

test('an x-amz-* header outside the signed headers is refused, presigned or header-signed; signed ones pass', async () => {
  const put = presignedRequest(await client().presignedPutObject('bucket', 'uploads/u/f', 60));
  for (const name of [
    'x-amz-copy-source',
    'x-amz-acl',
    'x-amz-tagging',
    'x-amz-meta-a',
    'x-amz-date',
    'x-amz-content-sha256',
    'X-Amz-Storage-Class',
  ]) {
    expect(refusal(verifySigV4({ ...put, headers: { ...put.headers, [name]: 'x' } }, secretOf)), name).toEqual({
      status: 403,
      code: 'AccessDenied',
      headersNotSigned: [name.toLowerCase()],
    });
  }
  // Headers S3 does not read as instructions stay allowed unsigned, as browsers and curl send them.
  expect(
    verifySigV4(
      {
        ...put,
        headers: { ...put.headers, 'content-type': 'image/png', 'content-md5': 'XUFAKrxLKna5cZ2REBfFkg==', 'x-amzn-trace-id': 'a' },
      },
      secretOf,
    ),
  ).toEqual({ ok: true });

  seen = [];
  await client()
    .copyObject('bucket', 'files/copy', '/bucket/files/source')
    .catch(() => undefined);
  const copy = seen.find((request) => request.headers['x-amz-copy-source'] !== undefined)!;
  expect(verifySigV4(copy, secretOf)).toEqual({ ok: true });
  seen = [];
  await client()
    .statObject('bucket', 'files/some key')
    .catch(() => undefined);
  const stat = seen[0]!;
  expect(refusal(verifySigV4({ ...stat, headers: { ...stat.headers, 'x-amz-copy-source': '/bucket/files/other' } }, secretOf))).toEqual({
    status: 403,
    code: 'AccessDenied',
    headersNotSigned: ['x-amz-copy-source'],
  });
});

test('a query parameter named twice is a 400, whichever it is', async () => {
  const url = new URL(await client().presignedPutObject('bucket', 'uploads/u/f', 60));
  const request = presignedRequest(url.toString());
  for (const name of ['X-Amz-Signature', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires']) {
    expect(
      refusal(verifySigV4({ ...request, url: `${request.url}&${name}=${encodeURIComponent(url.searchParams.get(name)!)}` }, secretOf)),
      name,
    ).toEqual({ status: 400, code: 'InvalidArgument' });
  }
  // The same name percent-encoded is the same parameter.
  expect(refusal(verifySigV4({ ...request, url: `${request.url}&X-Amz%2DSignature=${'0'.repeat(64)}` }, secretOf))).toEqual({
    status: 400,
    code: 'InvalidArgument',
  });
  const get = presignedRequest(
    await client().presignedGetObject('bucket', 'files/x', 60, { 'response-content-type': 'text/plain' }),
    'GET',
  );
  expect(refusal(verifySigV4({ ...get, url: `${get.url}&response-content-type=text%2Fhtml` }, secretOf))).toEqual({
    status: 400,
    code: 'InvalidArgument',
  });
});

test('a presigned URL may only get or head an object (with response overrides), put an object, or put a part', async () => {
  const signed = async (method: string, key: string, query: Record<string, string> = {}) =>
    presignedRequest(await client().presignedUrl(method, 'bucket', key, 60, query), method);
  for (const [method, key, query] of [
    ['GET', 'files/x', { 'response-content-disposition': 'attachment', 'response-cache-control': 'no-store' }],
    ['HEAD', 'files/x', {}],
    ['PUT', 'uploads/x', {}],
    ['PUT', 'files/x', { partNumber: '2', uploadId: 'u' }],
  ] as const) {
    expect(verifySigV4(await signed(method, key, query), secretOf), `${method} ${JSON.stringify(query)}`).toEqual({ ok: true });
  }
  for (const [method, key, query] of [
    ['PUT', 'files/x', { acl: '' }],
    ['GET', 'files/x', { acl: '' }],
    ['PUT', 'files/x', { tagging: '' }],
    ['GET', 'files/x', { tagging: '' }],
    ['DELETE', 'files/x', {}],
    ['POST', 'files/x', { uploads: '' }],
    ['POST', 'files/x', { uploadId: 'u' }],
    ['GET', 'files/x', { uploadId: 'u' }],
    ['DELETE', 'files/x', { uploadId: 'u' }],
    ['PUT', 'files/x', { partNumber: '1' }],
    ['PUT', 'files/x', { uploadId: 'u' }],
    ['PUT', 'files/x', { partNumber: '1', uploadId: 'u', tagging: '' }],
    ['GET', 'files/x', { partNumber: '1' }],
    ['GET', 'files/x', { versionId: 'v' }],
    ['POST', '', { delete: '' }],
    ['GET', '', { 'list-type': '2' }],
    ['PUT', '', { cors: '' }],
  ] as const) {
    expect(refusal(verifySigV4(await signed(method, key, query), secretOf)), `${method} /${key} ${JSON.stringify(query)}`).toEqual({
      status: 403,
      code: 'AccessDenied',
    });
  }
  // Not even a header the presigner signed: a copy in a presigned URL is refused too.
  const copy = presignedRequest(await client().presignedPutObject('bucket', 'uploads/x', 60));
  expect(checkPresignedOperation({ ...copy, headers: { ...copy.headers, 'x-amz-copy-source': '/bucket/files/y' } })).toMatchObject({
    ok: false,
    code: 'AccessDenied',
  });
});

test('a GET signed by signSigV4 verifies; another range, path or secret does not', () => {
  const credentials = { accessKey: 'AKIDEXAMPLE', secretKey: 'secret', region: 'us-east-1' };
  const path = '/bucket/files/a%20b/%21%27%28%29%2A';
  const headers = signSigV4({ method: 'GET', path, headers: { host: '127.0.0.1:9000', range: 'bytes=5-9' } }, credentials);
  const secretOf = (key: string) => (key === 'AKIDEXAMPLE' ? 'secret' : undefined);
  expect(verifySigV4({ method: 'GET', url: path, headers }, secretOf)).toEqual({ ok: true });
  expect(verifySigV4({ method: 'GET', url: path, headers: { ...headers, range: 'bytes=0-9' } }, secretOf)).toMatchObject({ ok: false });
  expect(verifySigV4({ method: 'GET', url: '/bucket/other', headers }, secretOf)).toMatchObject({ ok: false });
  expect(verifySigV4({ method: 'GET', url: path, headers }, () => 'another')).toMatchObject({ ok: false });
});
