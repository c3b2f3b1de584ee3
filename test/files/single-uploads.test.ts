/**
 * FilesService uploads by presigned URL: single uploads, uploads that race, stale uploads.
 */
import { randomBytes } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { eventually, expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  kib,
  mib,
  server,
  bucket,
  sha256,
  png,
  pdf,
  text,
  createUpload,
  put,
  uploadPresigned,
  uploadMessages,
  download,
  fetchBytes,
  fileRow,
  fileRowsOf,
  objectSize,
  objectBytes,
  objectKeys,
  openMultipartUploads,
  storedFor,
  stagingPrefixOf,
  useFilesServer,
} from './support.ts';

useFilesServer();

// =======================================================================================

describe('presigned single upload', () => {
  test('a PNG PUT with fetch becomes AVAILABLE as image/png although the client claimed text/plain; the URL writes to uploads/<owner>/<id>, the bytes end at files/<owner>/<id>', async () => {
    const { user, client } = await server.createUser();
    const bytes = png();
    const plan = await createUpload(client, { directory: '/pictures', name: 'dot.png', contentType: 'text/plain' }, bytes);
    const created = plan.file!;
    expect(created).toMatchObject({
      ownerId: user.id,
      directory: '/pictures',
      name: 'dot.png',
      size: BigInt(bytes.length),
      status: FileStatus.UPLOADING,
      sha256: '',
    });
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
    expect(file).toMatchObject({
      id: created.id,
      status: FileStatus.AVAILABLE,
      contentType: 'image/png',
      size: BigInt(bytes.length),
      sha256: '',
      name: 'dot.png',
    });
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
    [
      'binary bytes claimed as text are application/octet-stream',
      'text/plain',
      Buffer.concat([Buffer.from('XYZ\u0000'), randomBytes(5000)]),
      'application/octet-stream',
    ],
    ['a PDF claimed as text is application/pdf', 'text/plain', pdf(), 'application/pdf'],
    [
      'an SVG root under a prefix is image/svg+xml, not XML',
      'application/xml',
      text('<?xml version="1.0"?><s:svg xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></s:svg>'),
      'image/svg+xml',
    ],
    [
      'an XHTML script nested in other XML is text/html',
      'text/plain',
      text('<?xml version="1.0"?><feed><x:script xmlns:x="http://www.w3.org/1999/xhtml">alert(1)</x:script></feed>'),
      'text/html',
    ],
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
    const error = await expectConnectError(
      client.files.completeUpload({ fileId: plan.file!.id }),
      Code.InvalidArgument,
      'CHECKSUM_MISMATCH',
    );
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
    const withParts = await expectConnectError(
      client.files.completeUpload({ fileId: plan.file!.id, parts: [{ partNumber: 1, etag: 'x' }] }),
      Code.InvalidArgument,
    );
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

    const racing = await Promise.all(
      Array.from({ length: 5 }, () => createUpload(client, { name: 'raced.bin', size: 10, requestId: 'upload-3' })),
    );
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
    expect(await objectKeys(stagingPrefixOf(user.id))).toEqual(
      [file!.id, aborted.file!.id, deleted.file!.id, inProgress.file!.id].map(staged).sort(),
    );

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
    const uploading = expectConnectError(
      client.files.upload(uploadMessages({ name: 'slow.bin', size: BigInt(2 * kib) }, chunks())),
      Code.FailedPrecondition,
      'UPLOAD_GONE',
    );
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

    await server.query(`update files set upload_expires_at = now() - interval '1 minute' where id = any($1)`, [
      [single.file!.id, multipart.file!.id],
    ]);
    await server.query(`update files set updated_at = now() - interval '2 days' where id = $1`, [failed.file!.id]);
    expect(openMultipartUploads(`files/${user.id}/`)).toEqual([{ key: `files/${user.id}/${multipart.file!.id}`, parts: 1 }]);

    await server.app.runMaintenance();

    expect((await fileRowsOf(user.id)).map((row) => `${row.name} ${row.status}`)).toEqual([
      'done.bin available',
      'failed-today.bin failed',
      'fresh.bin uploading',
    ]);
    expect(await storedFor(user.id)).toEqual({
      objects: [`files/${user.id}/${available.id}`, `${stagingPrefixOf(user.id)}${fresh.file!.id}`].sort(),
      multipart: [],
    });
    // The fresh upload can still be completed.
    expect((await client.files.completeUpload({ fileId: fresh.file!.id })).file!.status).toBe(FileStatus.AVAILABLE);
  });
});
