/**
 * The embedded store answers CORS as a browser on the console's origin needs it: the
 * preflight of a presigned PUT, the actual PUT and GET (with the part's ETag readable by
 * the page), and its error replies (so a page can show why storage refused). The browser's
 * view of the same is in test/browser/files.test.ts; here every header is checked.
 */
import { describe, expect, test } from 'vitest';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { createUpload, mib, randomData, server, text, useFilesServer, withSettings } from './support.ts';

useFilesServer();

/** The console's origin: the server's own URL (another port than the store: another origin). */
const consoleOrigin = () => new URL(server.url).origin;

function preflight(url: string, method: string, headers = 'content-type') {
  return fetch(url, {
    method: 'OPTIONS',
    headers: { origin: consoleOrigin(), 'access-control-request-method': method, 'access-control-request-headers': headers },
  });
}

describe('CORS of the embedded store', () => {
  test('the preflight of a presigned PUT allows it with the headers asked for, without a signature', async () => {
    const { client } = await server.createUser();
    const plan = await createUpload(client, { directory: '/cors', name: 'a.txt' }, text('hello'));
    const res = await preflight(plan.uploadUrl, 'PUT', 'content-type,x-requested-with');
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-methods')).toBe('GET, PUT, HEAD');
    expect(res.headers.get('access-control-allow-headers')).toBe('content-type,x-requested-with');
    expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThan(0);
    // No cookie or other ambient credential is ever honoured: the signature is the permission.
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    // The preflight reached nothing: the upload is still empty.
    expect((await client.files.getFile({ id: plan.file!.id })).file!.status).toBe(FileStatus.UPLOADING);
  });

  test('a preflight for anything but GET, PUT and HEAD, or without an origin or method, is refused', async () => {
    const { client } = await server.createUser();
    const plan = await createUpload(client, { directory: '/cors', name: 'b.txt' }, text('hello'));
    for (const method of ['DELETE', 'POST']) {
      const res = await preflight(plan.uploadUrl, method);
      expect(res.status, method).toBe(403);
      expect(await res.text()).toContain('<Code>CORSResponse</Code>');
    }
    const withoutMethod = await fetch(plan.uploadUrl, { method: 'OPTIONS', headers: { origin: consoleOrigin() } });
    expect(withoutMethod.status).toBe(400);
    const withoutOrigin = await fetch(plan.uploadUrl, { method: 'OPTIONS', headers: { 'access-control-request-method': 'PUT' } });
    expect(withoutOrigin.status).toBe(400);
    expect(withoutOrigin.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('a presigned PUT and GET from another origin carry Allow-Origin and expose the ETag', async () => {
    const { client } = await server.createUser();
    const bytes = text('bytes from a page on another origin\n');
    const plan = await createUpload(client, { directory: '/cors', name: 'c.txt' }, bytes);
    const put = await fetch(plan.uploadUrl, {
      method: 'PUT',
      body: bytes,
      headers: { origin: consoleOrigin(), 'content-type': 'text/plain' },
    });
    expect(put.status).toBe(200);
    expect(put.headers.get('access-control-allow-origin')).toBe('*');
    expect(put.headers.get('access-control-expose-headers')).toBe('ETag');
    expect(put.headers.get('etag')).toMatch(/^"[0-9a-f]{32}"$/);
    const { file } = await client.files.completeUpload({ fileId: plan.file!.id });
    expect(file!.status).toBe(FileStatus.AVAILABLE);

    const { url } = await client.files.getDownloadUrl({ id: file!.id });
    const get = await fetch(url, { headers: { origin: consoleOrigin() } });
    expect(get.status).toBe(200);
    expect(get.headers.get('access-control-allow-origin')).toBe('*');
    expect(Buffer.from(await get.arrayBuffer())).toEqual(bytes);
    // Without an Origin (not a cross-origin request) no CORS header is added, as S3 does.
    expect((await fetch(url)).headers.get('access-control-allow-origin')).toBeNull();
  });

  test('each multipart part PUT exposes its ETag, and the ETags complete the upload', async () => {
    await withSettings({ 'files.multipart_threshold_bytes': mib }, async () => {
      const { client } = await server.createUser();
      const bytes = randomData(2 * mib);
      const plan = await createUpload(client, { directory: '/cors', name: 'parts.bin' }, bytes);
      expect(plan.uploadUrl).toBe('');
      expect(plan.parts).toHaveLength(1);
      const preflightReply = await preflight(plan.parts[0]!.url, 'PUT');
      expect(preflightReply.status).toBe(200);
      const put = await fetch(plan.parts[0]!.url, {
        method: 'PUT',
        body: bytes as Uint8Array<ArrayBuffer>,
        headers: { origin: consoleOrigin() },
      });
      expect(put.status).toBe(200);
      expect(put.headers.get('access-control-expose-headers')).toBe('ETag');
      const etag = put.headers.get('etag')!;
      const { file } = await client.files.completeUpload({ fileId: plan.file!.id, parts: [{ partNumber: 1, etag }] });
      expect(file!.status).toBe(FileStatus.AVAILABLE);
      expect(file!.size).toBe(BigInt(bytes.length));
    });
  });

  test('a refused request still carries CORS headers, so the page can read why', async () => {
    const { client } = await server.createUser();
    const plan = await createUpload(client, { directory: '/cors', name: 'd.txt' }, text('hello'));
    const tampered = new URL(plan.uploadUrl);
    tampered.searchParams.set('X-Amz-Signature', '0'.repeat(64));
    const res = await fetch(tampered, { method: 'PUT', body: text('hello'), headers: { origin: consoleOrigin() } });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(await res.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
    expect((await client.files.getFile({ id: plan.file!.id })).file!.status).toBe(FileStatus.UPLOADING);
  });
});
