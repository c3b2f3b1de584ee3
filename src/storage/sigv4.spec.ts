import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from 'minio';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { verifySigV4, type SignatureCheck, type SignedRequest } from './sigv4.ts';

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

const client = (secret = secretKey) => new Client({ endPoint: '127.0.0.1', port, useSSL: false, accessKey, secretKey: secret, region: 'us-east-1', pathStyle: true });

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
  expect(failure(verifySigV4(presignedRequest(await client('another secret').presignedPutObject('bucket', 'k', 60)), secretOf))).toBe('SignatureDoesNotMatch');
  expect(failure(verifySigV4(request, secretOf, new Date(Date.now() + 61_000)))).toBe('AccessDenied');
});

test('a presigned part URL (extra query parameters) and a presigned GET with response overrides verify', async () => {
  const part = await client().presignedUrl('PUT', 'bucket', 'files/x', 60, { partNumber: '3', uploadId: 'abc-123' });
  expect(verifySigV4(presignedRequest(part), secretOf)).toEqual({ ok: true });
  expect(failure(verifySigV4(presignedRequest(part.replace('partNumber=3', 'partNumber=4')), secretOf))).toBe('SignatureDoesNotMatch');
  const get = await client().presignedGetObject('bucket', 'files/x', 60, { 'response-content-disposition': 'attachment; filename="a b.txt"' });
  expect(verifySigV4(presignedRequest(get, 'GET'), secretOf)).toEqual({ ok: true });
});

test('requests signed in the Authorization header verify; a changed signed header or an unknown key does not', async () => {
  seen = [];
  await client().statObject('bucket', 'files/some key').catch(() => undefined);
  await client().putObject('bucket', 'files/put', Buffer.from('hello'), 5).catch(() => undefined);
  expect(seen.length).toBeGreaterThanOrEqual(2);
  for (const request of seen) expect(verifySigV4(request, secretOf), `${request.method} ${request.url}`).toEqual({ ok: true });
  const [first] = seen;
  expect(failure(verifySigV4({ ...first!, headers: { ...first!.headers, 'x-amz-date': '20200101T000000Z' } }, secretOf))).not.toBe('ok');
  expect(failure(verifySigV4(first!, () => undefined))).toBe('InvalidAccessKeyId');
});

test('anonymous, V2 and malformed requests are refused, without throwing', () => {
  expect(failure(verifySigV4({ method: 'GET', url: '/bucket/files/x', headers: { host: 'h' } }, secretOf))).toBe('AccessDenied');
  expect(failure(verifySigV4({ method: 'GET', url: '/bucket/x?AWSAccessKeyId=TESTKEY&Signature=abc&Expires=9999999999', headers: { host: 'h' } }, secretOf))).toBe('AccessDenied');
  expect(failure(verifySigV4({ method: 'GET', url: '/bucket/x', headers: { host: 'h', authorization: 'AWS TESTKEY:abc' } }, secretOf))).toBe('AccessDenied');
  expect(failure(verifySigV4({ method: 'GET', url: '/bucket/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%E0%A4%A', headers: { host: 'h' } }, secretOf))).toBe('AccessDenied');
  expect(failure(verifySigV4({ method: 'GET', url: '/bucket/x', headers: { host: 'h', authorization: 'AWS4-HMAC-SHA256 garbage' } }, secretOf))).toBe('AccessDenied');
});
