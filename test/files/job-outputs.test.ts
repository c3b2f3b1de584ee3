/**
 * Outputs an external worker uploaded, handed to the job's owner as CompleteJob does:
 * the files area's side (JobFiles.adoptOutputs, through the composition root's adapter)
 * called in a transaction of its own on the server's database, bucket and settings, with
 * the rows and the owner's storage usage checked afterwards.
 */
import { randomBytes } from 'node:crypto';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { FileIntake } from '../../src/files/file-intake.ts';
import { JobFileIo } from '../../src/files/job-file-io.ts';
import { jobFilesOf } from '../../src/job-files-adapter.ts';
import { Job } from '../../src/jobs/entities.ts';
import type { JobFiles } from '../../src/jobs/job-files.ts';
import { jobView } from '../../src/jobs/job-view.ts';
import { DomainError } from '../../src/platform/domain-errors.ts';
import { PgNotifications } from '../../src/platform/events/pg-notifications.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { SettingsStore } from '../../src/platform/settings/settings-store.ts';
import { ObjectStorage } from '../../src/platform/storage/object-storage.ts';
import { settingsCatalog } from '../../src/settings-catalog.ts';
import { eventually, expectConnectError } from '../support/assertions.ts';
import { kib, server, createUpload, uploadStream, download, fileRow, useFilesServer } from './support.ts';

useFilesServer();

const field = 'output_file_ids';
let notifications: PgNotifications;
let settings: SettingsStore<typeof settingsCatalog>;
let jobFiles: JobFiles;

// The files area as another instance of the server builds it: same database, bucket and settings.
beforeAll(async () => {
  const logger = createLogger('silent');
  notifications = new PgNotifications(server.databaseUrl, logger);
  await notifications.start();
  settings = new SettingsStore(server.app.orm, logger, settingsCatalog);
  await settings.start(notifications);
  const endpoint = inject('s3Endpoint');
  const storage = new ObjectStorage({
    endpoint,
    publicEndpoint: endpoint,
    ...inject('s3Credentials'),
    bucket: server.bucket,
    region: 'us-east-1',
  });
  jobFiles = jobFilesOf(new JobFileIo({ storage, intake: new FileIntake({ storage, settings }) }));
});
afterAll(() => notifications?.close());

async function setQuota(bytes: number | null): Promise<void> {
  await server.setSetting('files.user_quota_bytes', bytes);
  await eventually(async () => expect(settings.get('files.user_quota_bytes')).toBe(bytes ?? 0), 5000);
}

/** A queued job of `client`'s account (with one input of its own) that will not run during the test. */
async function queuedJob(client: YardmasterClient): Promise<string> {
  const input = await uploadStream(client, { name: `input-${randomBytes(4).toString('hex')}.bin` }, randomBytes(kib));
  const { job } = await client.jobs.createJob({
    type: 'checksum',
    inputFileIds: [input.id],
    runAfter: timestampFromDate(new Date(Date.now() + 24 * 3_600_000)),
  });
  return job!.id;
}

/** adoptOutputs in a transaction of its own, committed when it succeeds. */
async function adopt(jobId: string, uploaderId: string, fileIds: string[]): Promise<string[]> {
  return server.app.orm.em.fork().transactional(async (tx) => {
    const job = await tx.findOneOrFail(Job, jobId);
    return jobFiles.adoptOutputs(tx, jobView(job), uploaderId, fileIds, field);
  });
}

async function adoptionError(jobId: string, uploaderId: string, fileIds: string[]): Promise<DomainError> {
  try {
    await adopt(jobId, uploaderId, fileIds);
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    return error as DomainError;
  }
  throw new Error('expected adoptOutputs to fail');
}

const rowsOf = (ids: string[]) => Promise.all(ids.map((id) => fileRow(id)));

describe("CompleteJob's outputs become the job owner's files", () => {
  test('they move to the owner, into /jobs/<job id> under their names, linked to the job, and count in the owner’s usage', async () => {
    const { user, client: owner } = await server.createUser();
    const { user: workerAccount, client: worker } = await server.createUser({ role: Role.WORKER });
    const jobId = await queuedJob(owner);
    const stats = await uploadStream(worker, { directory: '/work', name: 'stats.txt' }, randomBytes(3 * kib));
    const summary = await uploadStream(worker, { name: 'summary.json' }, Buffer.from('{"lines": 3}'));
    const usedBefore = (await owner.files.getStorageUsage({})).bytes;
    const outputBytes = stats.size + summary.size;
    // Exactly at the quota still fits.
    await setQuota(Number(usedBefore + outputBytes));
    try {
      expect(await adopt(jobId, workerAccount.id, [summary.id, stats.id])).toEqual([summary.id, stats.id]);
    } finally {
      await setQuota(null);
    }

    for (const [file, name] of [
      [stats, 'stats.txt'],
      [summary, 'summary.json'],
    ] as const) {
      expect(await fileRow(file.id)).toMatchObject({
        owner_id: user.id,
        job_id: jobId,
        directory: `/jobs/${jobId}`,
        name,
        status: 'available',
        // The bytes stay where the worker put them.
        object_key: `files/${workerAccount.id}/${file.id}`,
      });
    }
    const usage = await owner.files.getStorageUsage({});
    expect(usage.bytes).toBe(usedBefore + outputBytes);
    expect((await worker.files.getStorageUsage({})).bytes).toBe(0n);
    const listed = await owner.files.listFiles({ directory: `/jobs/${jobId}` });
    expect(listed.files.map((file) => file.name)).toEqual(['stats.txt', 'summary.json']);
    expect((await download(owner, stats.id)).bytes.length).toBe(3 * kib);
    // The worker's no longer: without a lease on a job that reads it, it is NotFound.
    await expectConnectError(worker.files.getFile({ id: stats.id }), Code.NotFound);
  });

  test('outputs beyond the owner’s quota are ResourceExhausted QUOTA_EXCEEDED and stay the worker’s', async () => {
    const { client: owner } = await server.createUser();
    const { user: workerAccount, client: worker } = await server.createUser({ role: Role.WORKER });
    const jobId = await queuedJob(owner);
    const output = await uploadStream(worker, { name: 'big.bin' }, randomBytes(4 * kib));
    const usedBefore = (await owner.files.getStorageUsage({})).bytes;
    const before = await fileRow(output.id);
    await setQuota(Number(usedBefore + output.size) - 1);
    try {
      const error = await adoptionError(jobId, workerAccount.id, [output.id]);
      expect(error).toMatchObject({ kind: 'resource_exhausted', reason: 'QUOTA_EXCEEDED' });
    } finally {
      await setQuota(null);
    }
    expect(await fileRow(output.id)).toEqual(before);
    expect(before).toMatchObject({ owner_id: workerAccount.id, job_id: null, directory: '/' });
    expect((await owner.files.getStorageUsage({})).bytes).toBe(usedBefore);
  });

  test("files that are not the worker's AVAILABLE unlinked ones are InvalidArgument, one violation each, and nothing moves", async () => {
    const { client: owner } = await server.createUser();
    const { user: workerAccount, client: worker } = await server.createUser({ role: Role.WORKER });
    const { client: stranger } = await server.createUser();
    const jobId = await queuedJob(owner);
    const good = await uploadStream(worker, { name: 'good.txt' }, Buffer.from('good\n'));
    const sameName = await uploadStream(worker, { directory: '/elsewhere', name: 'good.txt' }, Buffer.from('same name\n'));
    const strangers = await uploadStream(stranger, { name: 'theirs.txt' }, Buffer.from('not yours\n'));
    const uploading = await createUpload(worker, { name: 'half.bin', size: 10 });
    const ids = [good.id, strangers.id, uploading.file!.id, 'not-a-uuid', good.id, sameName.id];
    const before = await rowsOf([good.id, sameName.id, strangers.id, uploading.file!.id]);

    const error = await adoptionError(jobId, workerAccount.id, ids);
    expect(error.kind).toBe('invalid_argument');
    expect(error.violations).toEqual([
      // Another account's file is as unknown as one that does not exist.
      { field: `${field}[1]`, description: 'no such file' },
      { field: `${field}[2]`, description: 'the file is uploading, not available' },
      { field: `${field}[3]`, description: 'must be a UUID' },
      { field: `${field}[4]`, description: `repeats ${field}[0]` },
      { field: `${field}[5]`, description: 'an output named good.txt already exists for this job' },
    ]);
    expect(await rowsOf([good.id, sameName.id, strangers.id, uploading.file!.id])).toEqual(before);

    const tooMany = await adoptionError(
      jobId,
      workerAccount.id,
      Array.from({ length: 101 }, () => good.id),
    );
    expect(tooMany.violations).toEqual([{ field, description: 'must name at most 100 files' }]);
  });

  test('a file already linked to a job, or whose name the job’s directory already holds, is InvalidArgument', async () => {
    // An admin may work a job of its own, so it is both uploader and owner.
    const admin = await server.adminClient();
    const adminAccount = (await admin.auth.getMe({})).user!;
    const jobId = await queuedJob(admin);
    const output = await uploadStream(admin, { name: 'result.txt' }, Buffer.from('result\n'));
    expect(await adopt(jobId, adminAccount.id, [output.id])).toEqual([output.id]);
    expect(await fileRow(output.id)).toMatchObject({ owner_id: adminAccount.id, job_id: jobId, directory: `/jobs/${jobId}` });

    const otherJobId = await queuedJob(admin);
    const linked = await adoptionError(otherJobId, adminAccount.id, [output.id]);
    expect(linked.violations).toEqual([{ field: `${field}[0]`, description: 'the file is already an output of a job' }]);

    const again = await uploadStream(admin, { name: 'result.txt' }, Buffer.from('second result\n'));
    const clash = await adoptionError(jobId, adminAccount.id, [again.id]);
    expect(clash.violations).toEqual([{ field: `${field}[0]`, description: 'an output named result.txt already exists for this job' }]);
    expect(await fileRow(again.id)).toMatchObject({ job_id: null, directory: '/' });
  });

  test("nothing is committed by adoptOutputs itself: the caller's rollback undoes it", async () => {
    const { client: owner } = await server.createUser();
    const { user: workerAccount, client: worker } = await server.createUser({ role: Role.WORKER });
    const jobId = await queuedJob(owner);
    const output = await uploadStream(worker, { name: 'out.txt' }, Buffer.from('out\n'));
    const before = await fileRow(output.id);
    const rolledBack = new Error('the rest of CompleteJob failed');
    await expect(
      server.app.orm.em.fork().transactional(async (tx) => {
        const job = await tx.findOneOrFail(Job, jobId);
        await jobFiles.adoptOutputs(tx, jobView(job), workerAccount.id, [output.id], field);
        throw rolledBack;
      }),
    ).rejects.toBe(rolledBack);
    expect(await fileRow(output.id)).toEqual(before);
  });
});
