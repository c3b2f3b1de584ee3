/**
 * WatchJob: the states of one job as a stream.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, test } from 'vitest';
import { JobEventKind, JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { violatedFields } from '../support/assertions.ts';
import { statusName } from '../support/job-names.ts';
import {
  heartbeatMs,
  watchJob,
  isHeartbeat,
  statesOf,
  server,
  admin,
  running,
  createStepped,
  createNoop,
  waitFinished,
  eventRows,
  eventVersion,
  useStreamsServer,
} from './support.ts';

useStreamsServer();

// ---------------------------------------------------------------------------------------

describe('WatchJob', () => {
  test('a queued job (paused queue): the current state first, then every change, and the stream ends by itself after SUCCEEDED', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'stepped' });
    const { job, script } = await createStepped(client);
    const stream = watchJob(client, job.id);

    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    const [first] = statesOf(stream.items);
    expect(first!.job?.id).toBe(job.id);
    expect(first!.job?.status).toBe(JobStatus.QUEUED);
    expect([JobEventKind.CREATED, JobEventKind.UPDATED]).toContain(first!.kind);
    expect(first!.job?.attempt).toBe(0);

    // Nothing happens while the queue is paused.
    await sleep(600);
    expect(statesOf(stream.items)).toHaveLength(1);

    await admin.queue.resumeQueue({ queue: 'stepped' });
    await running(script);
    await stream.waitFor((items) => statesOf(items).some((message) => message.job?.status === JobStatus.RUNNING), 'RUNNING');
    script.progress(40, 'forty');
    await stream.waitFor((items) => statesOf(items).some((message) => message.job?.progress?.percent === 40), 'progress 40');
    script.succeed({ answer: 42 });

    expect(await stream.end(), 'the stream should end by itself after the final state').toBeUndefined();
    const states = statesOf(stream.items);
    expect(states.map((message) => statusName(message.job!.status))).toEqual(['QUEUED', 'RUNNING', 'RUNNING', 'SUCCEEDED']);
    expect(states[1]!.job?.attempt).toBe(1);
    expect(states[1]!.job?.startTime).toBeDefined();
    expect(states[2]!.job?.progress).toMatchObject({ percent: 40, message: 'forty' });
    const last = states[3]!;
    expect(last.kind).toBe(JobEventKind.UPDATED);
    expect(last.job?.result).toEqual({ answer: 42 });
    expect(last.job?.finishTime).toBeDefined();
    expect(last.job?.progress?.percent).toBe(100);
    for (const heartbeat of stream.items.filter(isHeartbeat)) expect(heartbeat.job).toBeUndefined();

    // Changes carry their event's sequence, strictly increasing, and the job's version never goes back.
    const changes = states.slice(1);
    for (let index = 1; index < changes.length; index++) expect(changes[index]!.sequence).toBeGreaterThan(changes[index - 1]!.sequence);
    // (The first state may be one not yet sequenced, with sequence 0: here the job as created, version 1.)
    expect(changes.every((message) => message.sequence > 0n)).toBe(true);
    const versions = await Promise.all(
      states.map((message) => (message.sequence === 0n ? Promise.resolve(1) : eventVersion(message.sequence))),
    );
    for (let index = 1; index < versions.length; index++) expect(versions[index]).toBeGreaterThan(versions[index - 1]!);
    for (let index = 1; index < states.length; index++) {
      expect(timestampDate(states[index]!.job!.updateTime!).getTime()).toBeGreaterThanOrEqual(
        timestampDate(states[index - 1]!.job!.updateTime!).getTime(),
      );
    }
    // The last message is the newest event of the job, and the row agrees.
    const rows = await eventRows('subject_id = $1', [job.id]);
    expect(last.sequence).toBe(BigInt(rows.at(-1)!.sequence));
    expect(rows.map((row) => row.payload.status)).toEqual(['queued', 'running', 'running', 'succeeded']);
    const [row] = await server.query<{ status: string; version: number }>('select status, version from jobs where id = $1', [job.id]);
    expect(row).toEqual({ status: 'succeeded', version: versions.at(-1) });
  });

  test('a running job: first message RUNNING; the stream ends after FAILED', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    await server.app.sequencer.flush();
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    const first = statesOf(stream.items)[0]!;
    expect(first.job?.status).toBe(JobStatus.RUNNING);
    expect(first.job?.attempt).toBe(1);
    const [latest] = await server.query<{ sequence: string }>('select max(sequence) as sequence from events where subject_id = $1', [
      job.id,
    ]);
    expect(first.sequence).toBe(BigInt(latest!.sequence));

    script.fail('the script failed on purpose');
    expect(await stream.end()).toBeUndefined();
    const states = statesOf(stream.items);
    expect(states.map((message) => statusName(message.job!.status))).toEqual(['RUNNING', 'FAILED']);
    expect(states[1]!.job?.error?.message).toBe('the script failed on purpose');
    expect(states[1]!.job?.error?.code).toBe('HANDLER_ERROR');
    expect(states[1]!.sequence).toBeGreaterThan(states[0]!.sequence);
  });

  test('a running job cancelled by its owner: cancel_requested, then CANCELLED, then the stream ends', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');

    await client.jobs.cancelJob({ id: job.id, reason: 'no longer needed' });
    expect(await stream.end()).toBeUndefined();
    const states = statesOf(stream.items);
    expect(states.map((message) => statusName(message.job!.status))).toEqual(['RUNNING', 'RUNNING', 'CANCELLED']);
    expect(states[1]!.job?.cancelRequested).toBe(true);
    expect(states[2]!.job?.cancelReason).toBe('no longer needed');
    const [row] = await server.query<{ status: string; cancel_reason: string }>('select status, cancel_reason from jobs where id = $1', [
      job.id,
    ]);
    expect(row).toEqual({ status: 'cancelled', cancel_reason: 'no longer needed' });
  });

  test('a queued job cancelled while its queue is paused: QUEUED, then CANCELLED, then the end', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'stepped' });
    const { job } = await createStepped(client);
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    await client.jobs.cancelJob({ id: job.id });
    expect(await stream.end()).toBeUndefined();
    expect(statesOf(stream.items).map((message) => statusName(message.job!.status))).toEqual(['QUEUED', 'CANCELLED']);
  });

  test('watched while they finish: every stream ends after the final state, each state above the one before by sequence', async () => {
    // The first state's sequence is what a resuming client dedupes by: it must never be
    // that of a later state than the one it carries, or the client drops the final state.
    const { client } = await server.createUser();
    const streams = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const job = await createNoop(client);
        return watchJob(client, job.id);
      }),
    );
    for (const stream of streams) {
      expect(await stream.end(10_000)).toBeUndefined();
      const states = statesOf(stream.items);
      expect(states.at(-1)!.job?.status).toBe(JobStatus.SUCCEEDED);
      for (let index = 1; index < states.length; index++)
        expect(states[index]!.sequence, `state #${index} of ${statusName(states[index]!.job!.status)}`).toBeGreaterThan(
          states[index - 1]!.sequence,
        );
    }
  });

  test('a job already finished yields exactly one message, then the stream ends', async () => {
    const { client } = await server.createUser();
    const job = await createNoop(client);
    await waitFinished([job.id]);
    await server.app.sequencer.flush();
    const stream = watchJob(client, job.id);
    expect(await stream.end()).toBeUndefined();
    expect(stream.items).toHaveLength(1);
    const [only] = stream.items;
    expect(only!.job?.id).toBe(job.id);
    expect(only!.job?.status).toBe(JobStatus.SUCCEEDED);
    const [latest] = await server.query<{ sequence: string }>('select max(sequence) as sequence from events where subject_id = $1', [
      job.id,
    ]);
    expect(only!.sequence).toBe(BigInt(latest!.sequence));
  });

  test("another user's job is NotFound, as is an unknown one; a malformed id is InvalidArgument; an admin may watch any job", async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const job = await createNoop(owner.client);
    await waitFinished([job.id]);

    const foreign = await watchJob(other.client, job.id).end();
    expect(foreign && Code[foreign.code]).toBe(Code[Code.NotFound]);
    expect(foreign!.rawMessage).not.toContain(job.id);
    const unknown = await watchJob(owner.client, '01900000-0000-7000-8000-000000000000').end();
    expect(unknown && Code[unknown.code]).toBe(Code[Code.NotFound]);
    const malformed = await watchJob(owner.client, 'not-a-uuid').end();
    expect(malformed && Code[malformed.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(malformed!)).toEqual(['id']);

    const asAdmin = watchJob(admin, job.id);
    expect(await asAdmin.end()).toBeUndefined();
    expect(asAdmin.items.map((message) => message.job?.status)).toEqual([JobStatus.SUCCEEDED]);
  });

  test('heartbeats (kind HEARTBEAT, no job) arrive while the job is quiet', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = watchJob(client, job.id);
    await stream.waitFor((items) => items.length >= 1, 'the current state');
    await stream.waitFor((items) => items.filter(isHeartbeat).length >= 4, 'four heartbeats', 3000);
    const heartbeats = stream.items.filter(isHeartbeat);
    for (const heartbeat of heartbeats) {
      expect(heartbeat.job).toBeUndefined();
      expect(heartbeat.sequence).toBeGreaterThan(0n);
    }
    for (let index = 1; index < heartbeats.length; index++)
      expect(heartbeats[index]!.sequence).toBeGreaterThanOrEqual(heartbeats[index - 1]!.sequence);
    // Quiet means a heartbeat about every interval, not a flood and not a long silence.
    const gaps = stream.arrivals.slice(1).map((at, index) => at - stream.arrivals[index]!);
    expect(Math.max(...gaps)).toBeLessThan(heartbeatMs * 5);
    expect(Math.min(...gaps)).toBeGreaterThan(heartbeatMs / 2);
    expect(statesOf(stream.items)).toHaveLength(1);
    script.succeed();
    expect(await stream.end()).toBeUndefined();
    expect(statesOf(stream.items).at(-1)!.job?.status).toBe(JobStatus.SUCCEEDED);
  });

  test('over gRPC: the current state, the changes, and the end', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const { job, script } = await createStepped(grpc);
    await running(script);
    const stream = watchJob(grpc, job.id);
    await stream.waitFor((items) => statesOf(items).length >= 1, 'the current state');
    script.progress(10, 'ten');
    await stream.waitFor((items) => statesOf(items).some((message) => message.job?.progress?.percent === 10), 'progress 10');
    script.succeed({ via: 'grpc' });
    expect(await stream.end()).toBeUndefined();
    expect(statesOf(stream.items).map((message) => statusName(message.job!.status))).toEqual(['RUNNING', 'RUNNING', 'SUCCEEDED']);
    expect(statesOf(stream.items).at(-1)!.job?.result).toEqual({ via: 'grpc' });
    const foreign = await watchJob(admin, job.id).end();
    expect(foreign).toBeUndefined();
    const other = await server.createUser();
    const grpcOther = server.client({ protocol: 'grpc' });
    await grpcOther.login(other.user.username, other.password);
    const notFound = await watchJob(grpcOther, job.id).end();
    expect(notFound && Code[notFound.code]).toBe(Code[Code.NotFound]);
  });
});
