/**
 * JobsService UpdateJob, CancelJob and DeleteJob.
 */
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { stubbornGraceMs } from '../support/job-types.ts';
import { eventually, expectConnectError, violatedFields } from '../support/assertions.ts';
import { server, admin, waitForStatus, create, queueEntriesOf, jobRowOf, eventsOf, useJobsServer } from './support.ts';

useJobsServer();

describe('UpdateJob', () => {
  test('name and labels change as the mask says; fields outside the mask stay; search finds the new name', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'held', name: 'before rename', labels: { a: '1' }, priority: 1 });
    const { job: updated } = await client.jobs.updateJob({
      job: { id: job.id, name: 'Renamed Quokka', labels: { b: '2' }, priority: 50 },
      updateMask: { paths: ['name', 'labels'] },
    });
    expect(updated).toMatchObject({ id: job.id, name: 'Renamed Quokka', labels: { b: '2' }, priority: 1, status: JobStatus.QUEUED });
    expect((await client.jobs.getJob({ id: job.id })).job).toMatchObject({ name: 'Renamed Quokka', labels: { b: '2' }, priority: 1 });
    expect(timestampDate(updated!.updateTime!).getTime()).toBeGreaterThanOrEqual(timestampDate(job.updateTime!).getTime());
    expect((await client.jobs.listJobs({ filter: { search: 'quokka' } })).jobs.map((found) => found.id)).toEqual([job.id]);
    expect((await client.jobs.listJobs({ filter: { search: 'rename' } })).jobs.map((found) => found.id)).toEqual([job.id]);
    expect((await client.jobs.listJobs({ filter: { search: 'before' } })).jobs).toEqual([]);
    expect((await client.jobs.listJobs({ filter: { labels: { b: '2' } } })).jobs.map((found) => found.id)).toEqual([job.id]);
    expect((await client.jobs.listJobs({ filter: { labels: { a: '1' } } })).jobs).toEqual([]);
    expect((await jobRowOf(job.id))!.priority).toBe(1);

    const events = await eventsOf(job.id);
    expect(events.map((event) => event.kind)).toEqual(['job.created', 'job.updated']);
    expect(events[1]!.payload).toMatchObject({ name: 'Renamed Quokka', labels: { b: '2' }, version: 2 });

    const audited = await server.query<{ target: string; outcome: string }>(
      `select target, outcome from audit_events where action = $1 and target = $2`,
      ['yardmaster.v1.JobsService.UpdateJob', job.id],
    );
    expect(audited).toEqual([{ target: job.id, outcome: 'success' }]);
  });

  test('the priority changes while QUEUED, in the pg-boss entry too; on a finished job it is FailedPrecondition JOB_NOT_QUEUED', async () => {
    const { client } = await server.createUser();
    const queued = await create(client, { type: 'held', priority: 1 });
    const { job: raised } = await client.jobs.updateJob({ job: { id: queued.id, priority: 9 }, updateMask: { paths: ['priority'] } });
    expect(raised!.priority).toBe(9);
    expect((await jobRowOf(queued.id))!.priority).toBe(9);
    const entries = await queueEntriesOf(queued.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ id: (await jobRowOf(queued.id))!.queue_job_id, priority: 9, state: 'created' });

    const finished = await create(client, { type: 'noop', priority: 1 });
    await waitForStatus(client, finished.id, JobStatus.SUCCEEDED);
    await expectConnectError(
      client.jobs.updateJob({ job: { id: finished.id, priority: 5 }, updateMask: { paths: ['priority'] } }),
      Code.FailedPrecondition,
      'JOB_NOT_QUEUED',
    );
    await expectConnectError(
      client.jobs.updateJob({ job: { id: finished.id, priority: 5, name: 'x' }, updateMask: { paths: ['name', 'priority'] } }),
      Code.FailedPrecondition,
      'JOB_NOT_QUEUED',
    );
    const after = (await client.jobs.getJob({ id: finished.id })).job!;
    expect(after.priority).toBe(1);
    expect(after.name).toBe('');
    // Name and labels of a finished job can still change.
    const { job: renamed } = await client.jobs.updateJob({
      job: { id: finished.id, name: 'done already' },
      updateMask: { paths: ['name'] },
    });
    expect(renamed!.name).toBe('done already');
    expect(renamed!.status).toBe(JobStatus.SUCCEEDED);
  });

  test('an empty mask, an unknown or immutable path, or bad values are InvalidArgument, and nothing changes', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'held', name: 'stays' });
    const empty = await expectConnectError(client.jobs.updateJob({ job: { id: job.id, name: 'x' } }), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['update_mask']);
    const emptyPaths = await expectConnectError(
      client.jobs.updateJob({ job: { id: job.id, name: 'x' }, updateMask: { paths: [] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(emptyPaths)).toEqual(['update_mask']);
    for (const path of ['status', 'type', 'owner_id', 'nonsense']) {
      const error = await expectConnectError(
        client.jobs.updateJob({ job: { id: job.id, name: 'x' }, updateMask: { paths: ['name', path] } }),
        Code.InvalidArgument,
      );
      expect(violatedFields(error), path).toEqual(['update_mask']);
    }
    const badLabel = await expectConnectError(
      client.jobs.updateJob({ job: { id: job.id, labels: { Bad: 'x' } }, updateMask: { paths: ['labels'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(badLabel)).toEqual(['job.labels.Bad']);
    const badPriority = await expectConnectError(
      client.jobs.updateJob({ job: { id: job.id, priority: 200 }, updateMask: { paths: ['priority'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(badPriority)).toEqual(['job.priority']);
    const longName = await expectConnectError(
      client.jobs.updateJob({ job: { id: job.id, name: 'n'.repeat(201) }, updateMask: { paths: ['name'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(longName)).toEqual(['job.name']);
    const noId = await expectConnectError(
      client.jobs.updateJob({ job: { name: 'x' }, updateMask: { paths: ['name'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(noId)).toEqual(['job.id']);
    expect((await client.jobs.getJob({ id: job.id })).job!.name).toBe('stays');
    expect((await eventsOf(job.id)).map((event) => event.kind)).toEqual(['job.created']);
  });

  test('another user job is NotFound and stays unchanged', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const job = await create(owner.client, { type: 'held', name: 'mine', priority: 2 });
    await expectConnectError(
      other.client.jobs.updateJob({ job: { id: job.id, name: 'stolen' }, updateMask: { paths: ['name'] } }),
      Code.NotFound,
    );
    await expectConnectError(
      other.client.jobs.updateJob({ job: { id: job.id, priority: 9 }, updateMask: { paths: ['priority'] } }),
      Code.NotFound,
    );
    const row = await jobRowOf(job.id);
    expect(row).toMatchObject({ name: 'mine', priority: 2 });
    expect((await queueEntriesOf(job.id))[0]!.priority).toBe(2);
    // An admin may.
    const { job: byAdmin } = await admin.jobs.updateJob({ job: { id: job.id, name: 'renamed by admin' }, updateMask: { paths: ['name'] } });
    expect(byAdmin!.name).toBe('renamed by admin');
  });
});

describe('CancelJob', () => {
  test('a queued job is CANCELLED at once and its pg-boss entry is cancelled; the call is audited', async () => {
    const { user, client } = await server.createUser();
    const job = await create(client, { type: 'held' });
    const { job: cancelled } = await client.jobs.cancelJob({ id: job.id, reason: 'changed my mind' });
    expect(cancelled).toMatchObject({
      status: JobStatus.CANCELLED,
      cancelReason: 'changed my mind',
      cancelRequested: false,
      abandoned: false,
      attempt: 0,
    });
    expect(cancelled!.finishTime).toBeDefined();
    expect((await jobRowOf(job.id))!.status).toBe('cancelled');
    expect((await queueEntriesOf(job.id)).map((entry) => entry.state)).toEqual(['cancelled']);
    const audited = await server.query<{ actor_id: string; target: string; outcome: string }>(
      'select actor_id, target, outcome from audit_events where action = $1 and target = $2',
      ['yardmaster.v1.JobsService.CancelJob', job.id],
    );
    expect(audited).toEqual([{ actor_id: user.id, target: job.id, outcome: 'success' }]);
    const last = (await eventsOf(job.id)).at(-1)!;
    expect(last.kind).toBe('job.updated');
    expect(last.payload).toMatchObject({ status: 'cancelled', cancelReason: 'changed my mind' });
  });

  test('a running job gets cancel_requested in the reply and ends CANCELLED within its grace', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'waiter' });
    await waitForStatus(client, job.id, JobStatus.RUNNING);
    const started = Date.now();
    const { job: requested } = await client.jobs.cancelJob({ id: job.id, reason: 'stop it' });
    expect(requested).toMatchObject({ status: JobStatus.RUNNING, cancelRequested: true, cancelReason: 'stop it' });
    const ended = await waitForStatus(client, job.id, JobStatus.CANCELLED, 2000 + 1000);
    expect(Date.now() - started).toBeLessThan(2000 + 1000);
    expect(ended).toMatchObject({ abandoned: false, cancelReason: 'stop it', attempt: 1 });
    expect(ended.finishTime).toBeDefined();
    expect(ended.error).toBeUndefined();
    await eventually(async () => expect((await queueEntriesOf(job.id)).map((entry) => entry.state)).toEqual(['completed']), 3000);
    // A second cancel of the now finished job.
    await expectConnectError(client.jobs.cancelJob({ id: job.id }), Code.FailedPrecondition, 'JOB_FINISHED');
  });

  test('a handler that ignores its signal ends CANCELLED with abandoned=true after the grace', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'stubborn' });
    await waitForStatus(client, job.id, JobStatus.RUNNING);
    const started = Date.now();
    const { job: requested } = await client.jobs.cancelJob({ id: job.id });
    expect(requested!.cancelRequested).toBe(true);
    const ended = await waitForStatus(client, job.id, JobStatus.CANCELLED, 2500);
    expect(Date.now() - started).toBeGreaterThanOrEqual(stubbornGraceMs - 50);
    expect(ended.abandoned).toBe(true);
    expect(ended.result).toBeUndefined();
  });

  test('cancelling a finished job is FailedPrecondition JOB_FINISHED; another user job is NotFound', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const done = await create(owner.client, { type: 'noop' });
    await waitForStatus(owner.client, done.id, JobStatus.SUCCEEDED);
    await expectConnectError(owner.client.jobs.cancelJob({ id: done.id }), Code.FailedPrecondition, 'JOB_FINISHED');
    const queued = await create(owner.client, { type: 'held' });
    await expectConnectError(other.client.jobs.cancelJob({ id: queued.id }), Code.NotFound);
    expect((await jobRowOf(queued.id))!.status).toBe('queued');
    expect((await queueEntriesOf(queued.id))[0]!.state).toBe('created');
    const tooLong = await expectConnectError(owner.client.jobs.cancelJob({ id: queued.id, reason: 'r'.repeat(501) }), Code.InvalidArgument);
    expect(violatedFields(tooLong)).toEqual(['reason']);
    const failures = await server.query<{ outcome: string; error_code: string }>(
      'select outcome, error_code from audit_events where action = $1 and target = $2 and actor_id = $3',
      ['yardmaster.v1.JobsService.CancelJob', queued.id, other.user.id],
    );
    expect(failures).toEqual([{ outcome: 'failure', error_code: expect.stringMatching(/not_found/i) }]);
    // An admin may cancel anyone's job.
    expect((await admin.jobs.cancelJob({ id: queued.id })).job!.status).toBe(JobStatus.CANCELLED);
  });
});

describe('DeleteJob', () => {
  test('a finished job is deleted with its log lines, and a job.deleted event is recorded', async () => {
    const { user, client } = await server.createUser();
    const job = await create(client, { type: 'sleep', params: { seconds: 0 } });
    await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    expect(await server.countRows('select count(*)::int as n from job_log_lines where job_id = $1', [job.id])).toBeGreaterThan(0);

    await client.jobs.deleteJob({ id: job.id });
    await expectConnectError(client.jobs.getJob({ id: job.id }), Code.NotFound);
    expect(await jobRowOf(job.id)).toBeUndefined();
    expect(await server.countRows('select count(*)::int as n from job_log_lines where job_id = $1', [job.id])).toBe(0);
    expect(await queueEntriesOf(job.id)).toEqual([]);
    const deleted = (await eventsOf(job.id)).filter((event) => event.kind === 'job.deleted');
    expect(deleted).toHaveLength(1);
    expect(deleted[0]).toMatchObject({ owner_id: user.id, subject_id: job.id });
    expect(deleted[0]!.payload).toMatchObject({ id: job.id, status: 'succeeded' });
    expect((await client.jobs.listJobs({})).jobs).toEqual([]);
    await expectConnectError(client.jobs.deleteJob({ id: job.id }), Code.NotFound);
    expect(
      await server.countRows('select count(*)::int as n from audit_events where action = $1 and target = $2 and outcome = $3', [
        'yardmaster.v1.JobsService.DeleteJob',
        job.id,
        'success',
      ]),
    ).toBe(1);
  });

  test('a QUEUED or RUNNING job is FailedPrecondition JOB_NOT_FINISHED; another user job is NotFound', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const queued = await create(owner.client, { type: 'held' });
    await expectConnectError(owner.client.jobs.deleteJob({ id: queued.id }), Code.FailedPrecondition, 'JOB_NOT_FINISHED');
    const running = await create(owner.client, { type: 'waiter' });
    await waitForStatus(owner.client, running.id, JobStatus.RUNNING);
    await expectConnectError(owner.client.jobs.deleteJob({ id: running.id }), Code.FailedPrecondition, 'JOB_NOT_FINISHED');
    await owner.client.jobs.cancelJob({ id: running.id });
    await waitForStatus(owner.client, running.id, JobStatus.CANCELLED, 4000);
    await expectConnectError(other.client.jobs.deleteJob({ id: running.id }), Code.NotFound);
    expect(await jobRowOf(queued.id)).toBeDefined();
    expect(await jobRowOf(running.id)).toBeDefined();
    expect(
      await server.countRows(`select count(*)::int as n from events where kind = 'job.deleted' and subject_id in ($1, $2)`, [
        queued.id,
        running.id,
      ]),
    ).toBe(0);
    // A cancelled job can be deleted.
    await owner.client.jobs.deleteJob({ id: running.id });
    expect(await jobRowOf(running.id)).toBeUndefined();
  });
});
