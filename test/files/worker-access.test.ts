/**
 * What an external worker (a ROLE_WORKER account) may read: its own files, and the input
 * files of the jobs whose lease it holds, while it holds it, through GetFile, Download
 * and GetDownloadUrl only. The leases are rows of `job_leases` written here as ClaimJobs
 * writes them, on a job kept queued by a run_after far ahead.
 */
import { randomBytes } from 'node:crypto';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { expectConnectError } from '../support/assertions.ts';
import { kib, server, text, uploadPresigned, uploadStream, download, fetchBytes, fileRow, useFilesServer } from './support.ts';

useFilesServer();

/** A queued job of `owner` with `inputFileIds` that will not run during the test. */
async function queuedJob(owner: YardmasterClient, inputFileIds: string[]): Promise<string> {
  const { job } = await owner.jobs.createJob({
    type: 'checksum',
    inputFileIds,
    runAfter: timestampFromDate(new Date(Date.now() + 24 * 3_600_000)),
  });
  return job!.id;
}

/** A lease of the job's next attempt held by `accountId`, as ClaimJobs records it. */
async function insertLease(jobId: string, accountId: string, expiresInMs = 60_000): Promise<void> {
  await server.query(
    `insert into job_leases (id, job_id, attempt, worker_id, account_id, queue, queue_entry_id, lease_ms, claimed_at, expires_at, deadline_at)
     select gen_random_uuid(), id, attempt + 1, $2, $3, type, queue_job_id, 30000, now(), now() + $4 * interval '1 millisecond', now() + interval '1 hour'
       from jobs where id = $1`,
    [jobId, `worker-${accountId}`, accountId, expiresInMs],
  );
}

async function expectCanRead(client: YardmasterClient, id: string, bytes: Buffer): Promise<void> {
  const { file } = await client.files.getFile({ id });
  expect(file).toMatchObject({ id, status: FileStatus.AVAILABLE });
  expect((await download(client, id)).bytes.equals(bytes)).toBe(true);
  const { url } = await client.files.getDownloadUrl({ id });
  const fetched = await fetchBytes(url);
  expect(fetched.res.status).toBe(200);
  expect(fetched.bytes.equals(bytes)).toBe(true);
}

async function expectCannotRead(client: YardmasterClient, id: string): Promise<void> {
  await expectConnectError(client.files.getFile({ id }), Code.NotFound);
  await expectConnectError(download(client, id), Code.NotFound);
  await expectConnectError(client.files.getDownloadUrl({ id }), Code.NotFound);
}

describe('a worker reads the input files of the jobs it holds', () => {
  test('with an active lease it may GetFile, Download and GetDownloadUrl an input, and nothing else of the owner', async () => {
    const { user, client: owner } = await server.createUser();
    const { user: workerAccount, client: worker } = await server.createUser({ role: Role.WORKER });
    const inputBytes = randomBytes(3 * kib);
    const input = await uploadPresigned(owner, { name: 'input.bin' }, inputBytes);
    const other = await uploadPresigned(owner, { name: 'other.bin' }, randomBytes(kib));
    const jobId = await queuedJob(owner, [input.id]);

    // No lease yet: the owner's file is as unknown to the worker as to anyone.
    await expectCannotRead(worker, input.id);
    await insertLease(jobId, workerAccount.id);

    await expectCanRead(worker, input.id, inputBytes);
    // Another file of the same owner, not an input of the held job.
    await expectCannotRead(worker, other.id);
    // Reading is all it may do with the input: it is not among the worker's files, and
    // the owner's tree stays closed to it.
    expect((await worker.files.listFiles({ recursive: true })).files).toEqual([]);
    await expectConnectError(worker.files.listFiles({ ownerId: user.id, recursive: true }), Code.InvalidArgument);
    await expectConnectError(worker.files.getStorageUsage({ userId: user.id }), Code.InvalidArgument);
    await expectConnectError(worker.files.moveFile({ id: input.id, name: 'taken.bin' }), Code.NotFound);
    await expectConnectError(worker.files.deleteFile({ id: input.id }), Code.NotFound);
    expect(await fileRow(input.id)).toMatchObject({ owner_id: user.id, directory: '/', name: 'input.bin', status: 'available' });
  });

  test('once the lease has ended, or its expiry has passed before anything ended it, the input is NotFound again', async () => {
    const { client: owner } = await server.createUser();
    const { user: workerAccount, client: worker } = await server.createUser({ role: Role.WORKER });
    const bytes = randomBytes(kib);
    const input = await uploadPresigned(owner, { name: 'input.bin' }, bytes);
    const jobId = await queuedJob(owner, [input.id]);
    await insertLease(jobId, workerAccount.id);
    await expectCanRead(worker, input.id, bytes);

    await server.query('update job_leases set ended_at = now() where job_id = $1', [jobId]);
    await expectCannotRead(worker, input.id);

    await server.query(`update job_leases set ended_at = null, expires_at = now() - interval '1 second' where job_id = $1`, [jobId]);
    await expectCannotRead(worker, input.id);
  });

  test("a plain user's lease-like row grants nothing: only worker accounts read others' inputs", async () => {
    const { client: owner } = await server.createUser();
    const { user: plainAccount, client: plain } = await server.createUser();
    const input = await uploadPresigned(owner, { name: 'input.bin' }, randomBytes(kib));
    const jobId = await queuedJob(owner, [input.id]);
    await insertLease(jobId, plainAccount.id);
    await expectCannotRead(plain, input.id);
  });

  test('a worker keeps files of its own, as outputs are uploaded, and another worker cannot read them', async () => {
    const { client: worker } = await server.createUser({ role: Role.WORKER });
    const { client: otherWorker } = await server.createUser({ role: Role.WORKER });
    const bytes = text('lines: 3\nwords: 12\n');
    const output = await uploadStream(worker, { directory: '/out', name: 'stats.txt' }, bytes);
    await expectCanRead(worker, output.id, bytes);
    expect((await worker.files.listFiles({ directory: '/out' })).files.map((file) => file.id)).toEqual([output.id]);
    await expectCannotRead(otherWorker, output.id);
  });
});
