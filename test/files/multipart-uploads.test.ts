/**
 * FilesService multipart uploads by presigned part URLs, and parts larger than planned.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  mib,
  server,
  sha256,
  randomData,
  createUpload,
  put,
  download,
  fetchBytes,
  fileRow,
  objectSize,
  objectBytes,
  openMultipartUploads,
  storedFor,
  useFilesServer,
} from './support.ts';

useFilesServer();

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
    expect(file).toMatchObject({
      status: FileStatus.AVAILABLE,
      size: BigInt(bytes.length),
      sha256: sha256(bytes),
      contentType: 'application/octet-stream',
    });
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
    for (const part of plan.parts.slice(0, 4))
      etags.push({ partNumber: part.partNumber, etag: (await put(part.url, sliceOf(part.partNumber))).headers.get('etag')! });

    // Part 5 was never sent.
    const missing = [...etags, { partNumber: 5, etag: '"0123456789abcdef0123456789abcdef"' }];
    await expectConnectError(
      client.files.completeUpload({ fileId: plan.file!.id, parts: missing }),
      Code.FailedPrecondition,
      'INCOMPLETE_UPLOAD',
    );
    expect(await fileRow(plan.file!.id)).toMatchObject({ status: 'uploading' });
    expect((await fileRow(plan.file!.id))!.upload_id).toBeTruthy();

    const last = plan.parts[4]!;
    etags.push({ partNumber: 5, etag: (await put(last.url, sliceOf(5))).headers.get('etag')! });
    const wrongEtag = etags.map((part) => (part.partNumber === 2 ? { ...part, etag: '"ffffffffffffffffffffffffffffffff"' } : part));
    await expectConnectError(
      client.files.completeUpload({ fileId: plan.file!.id, parts: wrongEtag }),
      Code.FailedPrecondition,
      'INCOMPLETE_UPLOAD',
    );
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
