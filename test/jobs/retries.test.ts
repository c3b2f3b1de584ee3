/**
 * Job failures and retries, and RetryJob.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { deadlineTimeoutMs, flakyRuns } from '../support/job-types.ts';
import { expectConnectError, uniqueName } from '../support/assertions.ts';
import { server, pollSlackMs, waitForStatus, create, queueEntriesOf, jobRowOf, eventsOf, useJobsServer } from './support.ts';

useJobsServer();

describe('failures and retries', () => {
  test('a handler that fails twice then succeeds ends SUCCEEDED on attempt 3 with the error cleared; its log lines carry their attempts', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 2 } });
    expect(job.maxAttempts).toBe(3);
    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED, 2 * pollSlackMs + 2000);
    expect(done.attempt).toBe(3);
    expect(done.error).toBeUndefined();
    expect(done.result).toEqual({ runs: 3 });
    const entries = await queueEntriesOf(job.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ state: 'completed', retry_count: 2 });
    // Each failed attempt was recorded, then cleared by the success.
    const events = await eventsOf(job.id);
    expect(events.map((event) => `${event.payload.status}#${event.payload.attempt}`)).toEqual([
      'queued#0',
      'running#1',
      'queued#1',
      'running#2',
      'queued#2',
      'running#3',
      'succeeded#3',
    ]);
    for (const index of [2, 4])
      expect(events[index]!.payload).toMatchObject({ errorCode: 'HANDLER_ERROR', errorMessage: `flaky failure on attempt ${index / 2}` });
    expect(events.at(-1)!.payload).toMatchObject({ errorCode: null, errorMessage: null });
    // One log line per attempt, numbered without gaps.
    const { lines } = await client.jobs.listJobLogs({ id: job.id });
    expect(lines.map((line) => [Number(line.sequence), line.attempt, line.message])).toEqual([
      [1, 1, 'attempt 1'],
      [2, 2, 'attempt 2'],
      [3, 3, 'attempt 3'],
    ]);
  });

  test('a handler that always fails ends FAILED with attempt == max_attempts, HANDLER_ERROR and the thrown message', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 99 } });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED, 2 * pollSlackMs + 2000);
    expect(failed.attempt).toBe(3);
    expect(failed.maxAttempts).toBe(3);
    expect(failed.error).toMatchObject({ code: 'HANDLER_ERROR', message: 'flaky failure on attempt 3' });
    expect(failed.finishTime).toBeDefined();
    expect(failed.result).toBeUndefined();
    const entries = await queueEntriesOf(job.id);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.state).toBe('failed');
  });

  test('max_attempts chosen at creation bounds the attempts', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 99 }, maxAttempts: 1 });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED);
    expect(failed).toMatchObject({ attempt: 1, maxAttempts: 1 });
    expect(failed.error?.message).toBe('flaky failure on attempt 1');
  });

  test('JobFailure with retryable: false fails at once on attempt 1 even with attempts left', async () => {
    const { client } = await server.createUser();
    const key = uniqueName('k');
    const job = await create(client, { type: 'flaky', params: { key, failures: 0, fatal: true } });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED);
    expect(failed).toMatchObject({ attempt: 1, maxAttempts: 3 });
    expect(failed.error).toMatchObject({ code: 'INVALID_INPUT', message: 'the input can never work' });
    await sleep(300);
    expect(flakyRuns.get(key)).toBe(1);
    expect((await client.jobs.getJob({ id: job.id })).job!.attempt).toBe(1);
    const [entry] = await queueEntriesOf(job.id);
    expect(entry!.state).toBe('failed');
    expect(entry!.retry_count).toBe(0);
  });

  test('a handler running past its timeout fails with DEADLINE_EXCEEDED', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'deadline' });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED, 5000);
    expect(failed.attempt).toBe(1);
    expect(failed.error?.code).toBe('DEADLINE_EXCEEDED');
    expect(failed.abandoned).toBe(false);
    const ranMs = timestampDate(failed.finishTime!).getTime() - timestampDate(failed.startTime!).getTime();
    expect(ranMs).toBeGreaterThanOrEqual(deadlineTimeoutMs - 20);
  });
});

describe('RetryJob', () => {
  test('a FAILED job is QUEUED again with attempt reset and error cleared, under a new queue entry, and runs again', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'flaky', params: { key: uniqueName('k'), failures: 1 }, maxAttempts: 1 });
    const failed = await waitForStatus(client, job.id, JobStatus.FAILED);
    expect(failed.error).toBeDefined();
    const oldEntry = (await jobRowOf(job.id))!.queue_job_id;

    const { job: retried } = await client.jobs.retryJob({ id: job.id });
    expect(retried).toMatchObject({ status: JobStatus.QUEUED, attempt: 0, maxAttempts: 1, cancelRequested: false, abandoned: false });
    expect(retried!.error).toBeUndefined();
    expect(retried!.finishTime).toBeUndefined();
    expect(retried!.startTime).toBeUndefined();
    const newEntry = (await jobRowOf(job.id))!.queue_job_id;
    expect(newEntry).not.toBe(oldEntry);
    const entries = await queueEntriesOf(job.id);
    expect(entries.map((entry) => entry.id)).toEqual([oldEntry, newEntry]);
    expect(entries[1]).toMatchObject({ name: 'flaky', retry_limit: 0 });

    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(1);
    expect(done.error).toBeUndefined();
    expect(done.result).toEqual({ runs: 2 });
  });

  test('a CANCELLED job runs again', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'waiter' });
    await waitForStatus(client, job.id, JobStatus.RUNNING);
    await client.jobs.cancelJob({ id: job.id, reason: 'first run' });
    await waitForStatus(client, job.id, JobStatus.CANCELLED, 4000);
    const oldEntry = (await jobRowOf(job.id))!.queue_job_id;

    const { job: retried } = await client.jobs.retryJob({ id: job.id });
    expect(retried).toMatchObject({ status: JobStatus.QUEUED, attempt: 0, cancelRequested: false, cancelReason: '' });
    const running = await waitForStatus(client, job.id, JobStatus.RUNNING);
    expect(running.attempt).toBe(1);
    expect(running.finishTime).toBeUndefined();
    const row = await jobRowOf(job.id);
    expect(row!.queue_job_id).not.toBe(oldEntry);
    expect((await queueEntriesOf(job.id)).find((entry) => entry.id === row!.queue_job_id)?.state).toBe('active');

    await client.jobs.cancelJob({ id: job.id });
    await waitForStatus(client, job.id, JobStatus.CANCELLED, 4000);
  });

  test('a queued held job can be cancelled, then retried into its queue again', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'held' });
    await client.jobs.cancelJob({ id: job.id });
    const { job: retried } = await client.jobs.retryJob({ id: job.id });
    expect(retried!.status).toBe(JobStatus.QUEUED);
    const entries = await queueEntriesOf(job.id);
    expect(entries.map((entry) => entry.state)).toEqual(['cancelled', 'created']);
    expect(entries[1]!.id).toBe((await jobRowOf(job.id))!.queue_job_id);
  });

  test('retrying a SUCCEEDED, QUEUED or RUNNING job is FailedPrecondition JOB_NOT_RETRYABLE; another user job is NotFound', async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const done = await create(owner.client, { type: 'noop' });
    await waitForStatus(owner.client, done.id, JobStatus.SUCCEEDED);
    await expectConnectError(owner.client.jobs.retryJob({ id: done.id }), Code.FailedPrecondition, 'JOB_NOT_RETRYABLE');
    const queued = await create(owner.client, { type: 'held' });
    await expectConnectError(owner.client.jobs.retryJob({ id: queued.id }), Code.FailedPrecondition, 'JOB_NOT_RETRYABLE');
    expect(await queueEntriesOf(queued.id)).toHaveLength(1);
    const running = await create(owner.client, { type: 'waiter' });
    await waitForStatus(owner.client, running.id, JobStatus.RUNNING);
    await expectConnectError(owner.client.jobs.retryJob({ id: running.id }), Code.FailedPrecondition, 'JOB_NOT_RETRYABLE');
    await owner.client.jobs.cancelJob({ id: running.id });

    const failed = await create(owner.client, { type: 'flaky', params: { key: uniqueName('k'), failures: 0, fatal: true } });
    await waitForStatus(owner.client, failed.id, JobStatus.FAILED);
    await expectConnectError(other.client.jobs.retryJob({ id: failed.id }), Code.NotFound);
    expect((await jobRowOf(failed.id))!.status).toBe('failed');
    await waitForStatus(owner.client, running.id, JobStatus.CANCELLED, 4000);
  });
});
