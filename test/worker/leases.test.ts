/**
 * WorkerService over a real server: claiming with leases (woken by notifications),
 * heartbeats, progress and logs, completing and failing, lapsed leases retried by policy,
 * cancels delivered through heartbeats, pauses, and who may touch what.
 */
import { durationFromMs, timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { JobLogLevel, JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { WorkerCommandKind } from '../../gen/yardmaster/v1/worker_pb.ts';
import { expectConnectError, violatedFields } from '../support/assertions.ts';
import { admin, declareType, leaseRows, server, useWorkerServer, waitForJob, workerAccount, workerId } from './support.ts';

useWorkerServer();

describe('claiming', () => {
  test('a worker claims a job with its params and a lease, reports progress and logs, and completes it', async () => {
    const type = await declareType('complete');
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const { job } = await owner.jobs.createJob({ type, params: { text: 'hello world' } });

    const before = Date.now();
    const { jobs, heartbeatInterval } = await worker.worker.claimJobs({ workerId: id, queues: [type], maxJobs: 5 });
    expect(jobs).toHaveLength(1);
    const claimed = jobs[0]!;
    expect(claimed.job!.id).toBe(job!.id);
    expect(claimed.job!.params).toEqual({ text: 'hello world' });
    expect(claimed.job!.attempt).toBe(1);
    expect(claimed.job!.status).toBe(JobStatus.RUNNING);
    const leaseEnd = timestampDate(claimed.leaseExpireTime!).getTime();
    expect(leaseEnd).toBeGreaterThanOrEqual(before + 4000);
    expect(leaseEnd).toBeLessThanOrEqual(Date.now() + 5000);
    expect(Number(heartbeatInterval!.seconds) * 1000 + heartbeatInterval!.nanos / 1e6).toBeLessThanOrEqual(5000 / 3 + 1);

    expect((await worker.worker.reportProgress({ jobId: job!.id, percent: 40, message: 'counting' })).cancelRequested).toBe(false);
    const { lastSequence } = await worker.worker.appendJobLogs({
      jobId: job!.id,
      workerId: id,
      lines: [{ message: 'read 2 words' }, { message: 'odd line', level: JobLogLevel.WARN }],
    });
    expect(lastSequence).toBe(2n);
    const running = (await owner.jobs.getJob({ id: job!.id })).job!;
    expect(running.progress).toMatchObject({ percent: 40, message: 'counting' });

    const { job: done } = await worker.worker.completeJob({ jobId: job!.id, workerId: id, result: { words: 2 } });
    expect(done!.status).toBe(JobStatus.SUCCEEDED);
    const seen = (await owner.jobs.getJob({ id: job!.id })).job!;
    expect(seen.status).toBe(JobStatus.SUCCEEDED);
    expect(seen.result).toEqual({ words: 2 });
    const { lines } = await owner.jobs.listJobLogs({ id: job!.id });
    expect(lines.map((line) => [line.message, line.level, line.attempt])).toEqual([
      ['read 2 words', JobLogLevel.INFO, 1],
      ['odd line', JobLogLevel.WARN, 1],
    ]);
    // Settled in pg-boss too: nothing left to hand out.
    expect(await server.countRows("select count(*) as n from pgboss.job where name = $1 and state < 'completed'", [type])).toBe(0);
    expect((await leaseRows(job!.id))[0]!.ended_at).not.toBeNull();
    // The attempt is over: a second completion is refused and changes nothing.
    await expectConnectError(worker.worker.completeJob({ jobId: job!.id, result: { words: 3 } }), Code.FailedPrecondition, 'LEASE_EXPIRED');
    expect((await owner.jobs.getJob({ id: job!.id })).job!.result).toEqual({ words: 2 });
  });

  test('a waiting ClaimJobs returns as soon as a job is queued, long before its re-check interval', async () => {
    const type = await declareType('wake');
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const claim = worker.worker.claimJobs({ workerId: workerId(), queues: [type], wait: durationFromMs(20_000) });
    let returnedAt = 0;
    void claim.then(() => {
      returnedAt = Date.now();
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(returnedAt).toBe(0);
    const { job } = await owner.jobs.createJob({ type, params: {} });
    const createdAt = Date.now();
    const { jobs } = await claim;
    expect(jobs.map((claimed) => claimed.job!.id)).toEqual([job!.id]);
    // Woken by the notification: the re-check runs every 5 s, the wake-up takes milliseconds.
    expect(returnedAt - createdAt).toBeLessThan(1000);
  });

  test('jobs go out by priority, at most max_jobs, and never to two workers', async () => {
    const type = await declareType('share');
    const owner = (await server.createUser()).client;
    const low = (await owner.jobs.createJob({ type, params: {}, priority: -5 })).job!;
    const high = (await owner.jobs.createJob({ type, params: {}, priority: 10 })).job!;
    const mid = (await owner.jobs.createJob({ type, params: {} })).job!;
    const first = await workerAccount();
    const second = await workerAccount();
    const a = await first.worker.claimJobs({ workerId: workerId(), queues: [type], maxJobs: 2 });
    expect(a.jobs.map((claimed) => claimed.job!.id)).toEqual([high.id, mid.id]);
    const [b, c] = await Promise.all([
      second.worker.claimJobs({ workerId: workerId(), queues: [type], maxJobs: 5 }),
      first.worker.claimJobs({ workerId: workerId(), queues: [type], maxJobs: 5 }),
    ]);
    expect([...b.jobs, ...c.jobs].map((claimed) => claimed.job!.id)).toEqual([low.id]);
  });

  test('a paused queue yields nothing; resuming it wakes the waiting claim', async () => {
    const type = await declareType('paused');
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    await admin.queue.pauseQueue({ queue: type });
    const { job } = await owner.jobs.createJob({ type, params: {} });
    const started = Date.now();
    expect((await worker.worker.claimJobs({ workerId: id, queues: [type], wait: durationFromMs(700) })).jobs).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(650);
    const claim = worker.worker.claimJobs({ workerId: id, queues: [type], wait: durationFromMs(20_000) });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const resumedAt = Date.now();
    await admin.queue.resumeQueue({ queue: type });
    const { jobs } = await claim;
    expect(jobs.map((claimed) => claimed.job!.id)).toEqual([job!.id]);
    expect(Date.now() - resumedAt).toBeLessThan(2000);
  });

  test('bad claims are InvalidArgument naming the field; in-process and unknown queues cannot be claimed', async () => {
    const worker = await workerAccount();
    const error = await expectConnectError(
      worker.worker.claimJobs({ workerId: '', queues: ['noop', 'no-such-type'], maxJobs: 500, wait: durationFromMs(61_000) }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error).sort()).toEqual(['max_jobs', 'queues[0]', 'queues[1]', 'wait', 'worker_id']);
    await expectConnectError(worker.worker.claimJobs({ workerId: 'has space', queues: ['noop'] }), Code.InvalidArgument);
  });

  test("a worker id is one account's while that worker is live", async () => {
    const type = await declareType('ids');
    const id = workerId();
    const first = await workerAccount();
    const second = await workerAccount();
    await first.worker.heartbeat({ workerId: id });
    await expectConnectError(second.worker.claimJobs({ workerId: id, queues: [type] }), Code.FailedPrecondition, 'WORKER_ID_IN_USE');
    await expectConnectError(second.worker.heartbeat({ workerId: id }), Code.FailedPrecondition, 'WORKER_ID_IN_USE');
    // Lost (not heard from for a while): the id may be taken over.
    await server.query("update external_workers set last_seen_at = now() - interval '1 minute' where id = $1", [id]);
    await second.worker.heartbeat({ workerId: id });
    const [row] = await server.query<{ account_id: string }>('select account_id from external_workers where id = $1', [id]);
    expect(row!.account_id).toBe((await second.auth.getMe({})).user!.id);
  });
});

describe('leases', () => {
  test('CompleteJob and FailJob calls sent at once each end their own job; a second call about the same lease and a job not held are refused alone', async () => {
    const type = await declareType('together', { maxAttempts: 2 });
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const created = await owner.jobs.batchCreateJobs({ requests: Array.from({ length: 6 }, () => ({ type })) });
    const ids = created.jobs.map((job) => job.id);
    const { jobs } = await worker.worker.claimJobs({ workerId: id, queues: [type], maxJobs: 6 });
    expect(jobs.map((claimed) => claimed.job!.id).sort()).toEqual([...ids].sort());
    const [first, second, third, ...rest] = ids as [string, string, string, ...string[]];
    const stranger = await owner.jobs.createJob({ type });

    const calls = await Promise.allSettled([
      worker.worker.completeJob({ jobId: first, workerId: id, result: { n: 1 } }),
      worker.worker.completeJob({ jobId: first, workerId: id, result: { n: 2 } }),
      worker.worker.failJob({ jobId: second, workerId: id, error: 'try again', retryable: true }),
      worker.worker.failJob({ jobId: third, workerId: id, error: 'broken', retryable: false }),
      worker.worker.completeJob({ jobId: stranger.job!.id, workerId: id }),
      ...rest.map((jobId) => worker.worker.completeJob({ jobId, workerId: id })),
    ]);
    const statusOf = (index: number) => (calls[index]!.status === 'fulfilled' ? calls[index].value.job!.status : undefined);
    // Exactly one of the two calls about the same lease ends it; the other is told it ended.
    const onFirst = [calls[0]!, calls[1]!];
    expect(onFirst.filter((call) => call.status === 'fulfilled')).toHaveLength(1);
    const refused = onFirst.find((call) => call.status === 'rejected');
    expect(ConnectError.from((refused as PromiseRejectedResult).reason).code).toBe(Code.FailedPrecondition);
    expect(statusOf(2)).toBe(JobStatus.QUEUED);
    expect(statusOf(3)).toBe(JobStatus.FAILED);
    expect(calls[4]!.status).toBe('rejected');
    expect(ConnectError.from((calls[4] as PromiseRejectedResult).reason).code).toBe(Code.NotFound);
    for (const index of rest.keys()) expect(statusOf(5 + index)).toBe(JobStatus.SUCCEEDED);

    expect((await owner.jobs.getJob({ id: first })).job!.status).toBe(JobStatus.SUCCEEDED);
    for (const jobId of [first, third, ...rest]) expect((await leaseRows(jobId))[0]!.ended_at).not.toBeNull();
    // Each job's events still come one per transition, in order: created, running, then its end.
    const events = await server.query<{ subject_id: string; version: number }>(
      "select subject_id, (payload->>'version')::int as version from events where subject_id = any($1::uuid[]) order by id",
      [ids],
    );
    for (const jobId of ids) {
      expect(events.filter((event) => event.subject_id === jobId).map((event) => event.version)).toEqual([1, 2, 3]);
    }
    // Settled in pg-boss: the retried job's entry waits for its retry, nothing else is left to hand out.
    expect(await server.countRows("select count(*) as n from pgboss.job where name = $1 and state = 'active'", [type])).toBe(0);
  });

  test('a worker that stops heartbeating loses the job: it is retried, the next worker runs attempt 2, the first is refused', async () => {
    const type = await declareType('lapse', { leaseMs: 5000 });
    const owner = (await server.createUser()).client;
    const { job } = await owner.jobs.createJob({ type, params: {} });
    const dead = await workerAccount();
    const next = await workerAccount();
    const deadId = workerId('dead');
    const nextId = workerId('next');
    expect((await dead.worker.claimJobs({ workerId: deadId, queues: [type] })).jobs).toHaveLength(1);
    // Held: nobody else gets it while the lease lasts.
    expect((await next.worker.claimJobs({ workerId: nextId, queues: [type], wait: durationFromMs(1000) })).jobs).toEqual([]);

    const claimed = await next.worker.claimJobs({ workerId: nextId, queues: [type], wait: durationFromMs(15_000) });
    expect(claimed.jobs.map((c) => [c.job!.id, c.job!.attempt])).toEqual([[job!.id, 2]]);
    expect(claimed.jobs[0]!.job!.error).toMatchObject({ code: 'LEASE_EXPIRED' });
    expect((await leaseRows(job!.id)).map((row) => [row.attempt, row.worker_id, row.ended_at !== null])).toEqual([
      [1, deadId, true],
      [2, nextId, false],
    ]);

    await expectConnectError(dead.worker.completeJob({ jobId: job!.id, result: { late: true } }), Code.FailedPrecondition, 'LEASE_EXPIRED');
    await expectConnectError(dead.worker.reportProgress({ jobId: job!.id, percent: 90 }), Code.FailedPrecondition, 'LEASE_EXPIRED');
    const beat = await dead.worker.heartbeat({ workerId: deadId, jobIds: [job!.id] });
    expect(beat.releasedJobIds).toEqual([job!.id]);
    expect(beat.leases).toEqual([]);

    await next.worker.completeJob({ jobId: job!.id, workerId: nextId, result: { ok: true } });
    const done = await waitForJob(owner, job!.id, JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(2);
    expect(done.result).toEqual({ ok: true });
  });

  test('deleting the worker account mid-lease loses nothing: the lease lapses and the job is retried', async () => {
    const type = await declareType('orphan', { leaseMs: 5000 });
    const owner = (await server.createUser()).client;
    const doomed = await server.createUser({ role: Role.WORKER });
    const { job } = await owner.jobs.createJob({ type, params: {} });
    await doomed.client.worker.claimJobs({ workerId: workerId(), queues: [type] });
    await admin.admin.deleteUser({ id: doomed.user.id, confirm: doomed.user.username });
    const retried = await waitForJob(owner, job!.id, JobStatus.QUEUED, 15_000);
    expect(retried.error).toMatchObject({ code: 'LEASE_EXPIRED' });
    const next = await workerAccount();
    expect((await next.worker.claimJobs({ workerId: workerId(), queues: [type], wait: durationFromMs(5000) })).jobs[0]!.job!.attempt).toBe(
      2,
    );
  });

  test('heartbeats keep a lease past its length; a lapsed lease with no attempts left fails the job', async () => {
    const type = await declareType('beats', { leaseMs: 5000, maxAttempts: 1 });
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const { job } = await owner.jobs.createJob({ type, params: {} });
    await worker.worker.claimJobs({ workerId: id, queues: [type] });
    for (let beat = 0; beat < 3; beat++) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const { leases, releasedJobIds } = await worker.worker.heartbeat({ workerId: id, jobIds: [job!.id] });
      expect(releasedJobIds).toEqual([]);
      expect(timestampDate(leases[0]!.leaseExpireTime!).getTime()).toBeGreaterThan(Date.now() + 4000);
    }
    // Six seconds in, past the 5 s lease: still running, still its.
    expect((await owner.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.RUNNING);
    const failed = await waitForJob(owner, job!.id, JobStatus.FAILED, 15_000);
    expect(failed.error).toMatchObject({ code: 'LEASE_EXPIRED' });
    expect(await server.countRows("select count(*) as n from pgboss.job where name = $1 and state < 'completed'", [type])).toBe(0);
  });

  test('a cancel reaches the worker through its heartbeat; its FailJob ends the job CANCELLED', async () => {
    const type = await declareType('cancel', { leaseMs: 30_000 });
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const { job } = await owner.jobs.createJob({ type, params: {} });
    await worker.worker.claimJobs({ workerId: id, queues: [type] });
    expect((await worker.worker.heartbeat({ workerId: id, jobIds: [job!.id] })).commands).toEqual([]);
    await owner.jobs.cancelJob({ id: job!.id, reason: 'wrong input' });
    const { commands, leases } = await worker.worker.heartbeat({ workerId: id, jobIds: [job!.id] });
    expect(commands.map((command) => [command.kind, command.jobId, command.reason])).toEqual([
      [WorkerCommandKind.CANCEL_JOB, job!.id, 'wrong input'],
    ]);
    expect(leases).toEqual([]);
    expect((await worker.worker.reportProgress({ jobId: job!.id, percent: 50 })).cancelRequested).toBe(true);
    const { job: ended } = await worker.worker.failJob({ jobId: job!.id, workerId: id, error: 'stopped on request' });
    expect(ended!.status).toBe(JobStatus.CANCELLED);
    expect(ended!.abandoned).toBe(false);
  });

  test('a cancelled job whose worker never answers ends CANCELLED when the lease lapses', async () => {
    const type = await declareType('deaf', { leaseMs: 5000 });
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const { job } = await owner.jobs.createJob({ type, params: {} });
    await worker.worker.claimJobs({ workerId: workerId(), queues: [type] });
    await owner.jobs.cancelJob({ id: job!.id });
    const ended = await waitForJob(owner, job!.id, JobStatus.CANCELLED, 15_000);
    expect(ended.abandoned).toBe(true);
  });

  test('FailJob retries a retryable failure by policy and fails a permanent one', async () => {
    const type = await declareType('fails', { maxAttempts: 3 });
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const { job } = await owner.jobs.createJob({ type, params: {} });
    await worker.worker.claimJobs({ workerId: id, queues: [type] });
    const { job: retried } = await worker.worker.failJob({ jobId: job!.id, error: 'network blip', retryable: true, code: 'FLAKY_NETWORK' });
    expect(retried!.status).toBe(JobStatus.QUEUED);
    expect(retried!.error).toMatchObject({ message: 'network blip', code: 'FLAKY_NETWORK' });
    const again = await worker.worker.claimJobs({ workerId: id, queues: [type], wait: durationFromMs(10_000) });
    expect(again.jobs.map((c) => c.job!.attempt)).toEqual([2]);
    const { job: failed } = await worker.worker.failJob({ jobId: job!.id, error: 'bad input', retryable: false });
    expect(failed!.status).toBe(JobStatus.FAILED);
    expect(failed!.error).toMatchObject({ message: 'bad input', code: 'HANDLER_ERROR' });
    // Failed for good with an attempt left: pg-boss must not offer it again.
    expect((await worker.worker.claimJobs({ workerId: id, queues: [type], wait: durationFromMs(1500) })).jobs).toEqual([]);
    expect(await server.countRows("select count(*) as n from pgboss.job where name = $1 and state < 'completed'", [type])).toBe(0);

    // RetryJob starts a fresh series of attempts, numbered from 1 again, under new leases.
    await owner.jobs.retryJob({ id: job!.id });
    const fresh = await worker.worker.claimJobs({ workerId: id, queues: [type], wait: durationFromMs(10_000) });
    expect(fresh.jobs.map((c) => c.job!.attempt)).toEqual([1]);
    expect((await worker.worker.completeJob({ jobId: job!.id, result: {} })).job!.status).toBe(JobStatus.SUCCEEDED);
    expect((await leaseRows(job!.id)).map((row) => [row.attempt, row.ended_at !== null])).toEqual([
      [1, true],
      [2, true],
      [1, true],
    ]);
  });
});

describe('files', () => {
  async function uploadText(client: Awaited<ReturnType<typeof workerAccount>>, name: string, content: string) {
    const bytes = Buffer.from(content);
    async function* messages() {
      yield { content: { case: 'metadata' as const, value: { directory: '/', name, size: BigInt(bytes.byteLength) } } };
      yield { content: { case: 'chunk' as const, value: bytes } };
    }
    return (await client.files.upload(messages())).file!;
  }
  async function downloadText(client: Awaited<ReturnType<typeof workerAccount>>, id: string) {
    const chunks: Uint8Array[] = [];
    for await (const message of client.files.download({ id })) if (message.chunk.byteLength > 0) chunks.push(message.chunk);
    return Buffer.concat(chunks).toString();
  }

  test('a worker reads the inputs of the job it holds and hands its outputs to the job owner with CompleteJob', async () => {
    const type = await declareType('files', { maxInputFiles: 1 });
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const input = await uploadText(owner, 'words.txt', 'one two three');
    const { job } = await owner.jobs.createJob({ type, params: {}, inputFileIds: [input.id] });
    // Not held yet: the owner's file is none of the worker's business.
    await expectConnectError(worker.files.getFile({ id: input.id }), Code.NotFound);
    const [claimed] = (await worker.worker.claimJobs({ workerId: id, queues: [type] })).jobs;
    expect(claimed!.inputFiles.map((file) => [file.id, file.name, file.size])).toEqual([[input.id, 'words.txt', 13n]]);
    expect(await downloadText(worker, input.id)).toBe('one two three');

    const output = await uploadText(worker, 'count.txt', '3');
    // A file that is not the worker's is refused and nothing changes: the lease still holds.
    const error = await expectConnectError(
      worker.worker.completeJob({ jobId: job!.id, result: {}, outputFileIds: [output.id, input.id] }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['output_file_ids[1]']);
    expect((await owner.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.RUNNING);

    const { job: done } = await worker.worker.completeJob({ jobId: job!.id, result: { words: 3 }, outputFileIds: [output.id] });
    expect(done!.outputFileIds).toEqual([output.id]);
    const adopted = (await owner.files.getFile({ id: output.id })).file!;
    expect(adopted.directory).toBe(`/jobs/${job!.id}`);
    expect(await downloadText(owner, output.id)).toBe('3');
    // Held no more: the input is closed to the worker again, and the output is the owner's.
    await expectConnectError(worker.files.getFile({ id: input.id }), Code.NotFound);
    await expectConnectError(worker.files.getFile({ id: output.id }), Code.NotFound);
  });
});

describe('commands from admins', () => {
  test('StopService tells a worker to drain while it holds jobs and to stop once it holds none, and hands it nothing; RestartService asks once', async () => {
    const type = await declareType('stop');
    const owner = (await server.createUser()).client;
    const worker = await workerAccount();
    const id = workerId();
    const { job } = await owner.jobs.createJob({ type, params: {} });
    const queued = (await owner.jobs.createJob({ type, params: {} })).job!;
    await worker.worker.claimJobs({ workerId: id, queues: [type] });
    await admin.system.stopService({ name: `worker/${id}` });
    const kinds = async () => (await worker.worker.heartbeat({ workerId: id, jobIds: [job!.id] })).commands.map((command) => command.kind);
    expect(await kinds()).toEqual([WorkerCommandKind.DRAIN]);
    const refused = await worker.worker.claimJobs({ workerId: id, queues: [type], wait: durationFromMs(500) });
    expect(refused.jobs).toEqual([]);
    expect(refused.commands.map((command) => command.kind)).toEqual([WorkerCommandKind.DRAIN]);
    await worker.worker.completeJob({ jobId: job!.id, result: {} });
    expect(await kinds()).toEqual([WorkerCommandKind.STOP]);
    expect((await owner.jobs.getJob({ id: queued.id })).job!.status).toBe(JobStatus.QUEUED);

    await admin.system.startService({ name: `worker/${id}` });
    await admin.system.restartService({ name: `worker/${id}` });
    const claimed = await worker.worker.claimJobs({ workerId: id, queues: [type] });
    expect(claimed.jobs.map((c) => c.job!.id)).toEqual([queued.id]);
    expect(claimed.commands.map((command) => command.kind)).toEqual([WorkerCommandKind.RESTART]);
    expect(await kinds()).toEqual([]);
  });
});

describe('who may touch what', () => {
  test('a worker cannot touch a job it does not hold (NotFound) and a user cannot call WorkerService', async () => {
    const type = await declareType('mine');
    const owner = (await server.createUser()).client;
    const holder = await workerAccount();
    const stranger = await workerAccount();
    const { job } = await owner.jobs.createJob({ type, params: {} });
    const queued = (await owner.jobs.createJob({ type, params: {} })).job!;
    const holderId = workerId();
    await holder.worker.claimJobs({ workerId: holderId, queues: [type] });

    for (const call of [
      () => stranger.worker.completeJob({ jobId: job!.id, result: {} }),
      () => stranger.worker.failJob({ jobId: job!.id, error: 'x' }),
      () => stranger.worker.reportProgress({ jobId: job!.id, percent: 1 }),
      () => stranger.worker.appendJobLogs({ jobId: job!.id, lines: [{ message: 'x' }] }),
      () => holder.worker.completeJob({ jobId: queued.id, result: {} }),
      () => holder.worker.completeJob({ jobId: 'not-a-uuid', result: {} }),
    ]) {
      await expectConnectError(call, Code.NotFound);
    }
    // Same account, another worker id: not the holder either.
    await expectConnectError(holder.worker.completeJob({ jobId: job!.id, workerId: workerId(), result: {} }), Code.NotFound);
    expect((await stranger.worker.heartbeat({ workerId: workerId(), jobIds: [job!.id] })).releasedJobIds).toEqual([job!.id]);
    expect((await owner.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.RUNNING);

    await expectConnectError(owner.worker.claimJobs({ workerId: workerId(), queues: [type] }), Code.PermissionDenied);
    await expectConnectError(owner.worker.heartbeat({ workerId: workerId() }), Code.PermissionDenied);
    await expectConnectError(owner.worker.completeJob({ jobId: job!.id, result: {} }), Code.PermissionDenied);
  });
});
