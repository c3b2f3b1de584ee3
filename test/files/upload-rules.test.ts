/**
 * FilesService upload rules: sizes, allowed content types and the quota.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { ErrorInfoSchema } from '../../gen/yardmaster/v1/common_pb.ts';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { eventually, expectConnectError, reasonOf, violatedFields } from '../support/assertions.ts';
import {
  mib,
  server,
  png,
  pdf,
  zip,
  createUpload,
  put,
  uploadPresigned,
  uploadMessages,
  uploadStream,
  fileRow,
  fileRowsOf,
  storedFor,
  withSettings,
  useFilesServer,
} from './support.ts';

useFilesServer();

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
      const error = await expectConnectError(
        createUpload(client, { name: 'huge.bin', size: 1001 }),
        Code.InvalidArgument,
        'FILE_TOO_LARGE',
      );
      expect(violatedFields(error)).toEqual(['size']);
      const streamed = await expectConnectError(
        uploadStream(client, { name: 'huge.bin', size: 1001 }, randomBytes(1001)),
        Code.InvalidArgument,
        'FILE_TOO_LARGE',
      );
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
        const error = await expectConnectError(
          client.files.completeUpload({ fileId: plan.file!.id }),
          Code.InvalidArgument,
          'CONTENT_TYPE_NOT_ALLOWED',
        );
        expect(error.findDetails(ErrorInfoSchema)[0]?.metadata.content_type).toBe(sniffed);
        expect(violatedFields(error)).toEqual(['content_type']);
        expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'failed' });
      }
      const image = await uploadPresigned(client, { name: 'ok.png' }, png());
      expect(image.contentType).toBe('image/png');
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${image.id}`], multipart: [] });
    });
  });

  test('a streamed Upload of a disallowed type stops early: the server refuses it long before the declared bytes are sent, and keeps nothing', async () => {
    const { user, client } = await server.createUser({ clientOptions: { protocol: 'grpc' } });
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
      const over = await expectConnectError(
        createUpload(client, { name: 'second.bin', size: 4001 }),
        Code.ResourceExhausted,
        'QUOTA_EXCEEDED',
      );
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
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, (_, index) => createUpload(client, { name: `racer-${index}.bin`, size: 3000 })),
      );
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
