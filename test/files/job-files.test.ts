/**
 * Files as job inputs and outputs.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { eventually, expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  kib,
  mib,
  server,
  s3,
  bucket,
  sha256,
  text,
  randomData,
  createUpload,
  uploadPresigned,
  uploadStream,
  download,
  fileRow,
  fileRowsOf,
  storedFor,
  withSettings,
  waitForJob,
  untarGz,
  useFilesServer,
} from './support.ts';

useFilesServer();

// =======================================================================================

describe('jobs with files', () => {
  test("input_file_ids must be the caller's AVAILABLE files: another user's or an UPLOADING one is InvalidArgument `input_file_ids[0]`", async () => {
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
    const { job } = await client.jobs.createJob({
      type: 'archive',
      inputFileIds: files.map((file) => file.id),
      params: { name: 'bundle.tar.gz' },
    });
    const done = await waitForJob(client, job!.id, JobStatus.SUCCEEDED);
    expect(done.outputFileIds).toHaveLength(1);
    const outputId = done.outputFileIds[0]!;
    expect(done.result).toMatchObject({ archiveFileId: outputId, files: 3 });
    const { file: output } = await client.files.getFile({ id: outputId });
    expect(output).toMatchObject({
      ownerId: user.id,
      jobId: job!.id,
      directory: `/jobs/${job!.id}`,
      name: 'bundle.tar.gz',
      contentType: 'application/gzip',
      status: FileStatus.AVAILABLE,
    });
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

  test("an archive whose input's stored bytes disagree with its recorded size fails INPUT_CORRUPT (not retried) and the server keeps working", async () => {
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
