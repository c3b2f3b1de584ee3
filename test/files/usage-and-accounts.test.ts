/**
 * Storage usage and metrics, and what deleting an account does to its files.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  kib,
  mib,
  server,
  admin,
  png,
  text,
  createUpload,
  put,
  uploadPresigned,
  uploadStream,
  fileRowsOf,
  storedFor,
  withSettings,
  useFilesServer,
} from './support.ts';

useFilesServer();

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
      const [row] = await server.query<{ files: number; bytes: string }>(
        `select count(*)::int as files, coalesce(sum(size), 0)::text as bytes from files where status = 'available'`,
      );
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
