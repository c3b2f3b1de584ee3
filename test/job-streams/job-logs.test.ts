/**
 * StreamJobLogs: a job's log lines, followed or not.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import type { StreamJobLogsResponse } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { violatedFields } from '../support/assertions.ts';
import { heartbeatMs, streamLogs, server, admin, running, createStepped, createNoop, waitFinished, useStreamsServer } from './support.ts';

useStreamsServer();

// ---------------------------------------------------------------------------------------

describe('StreamJobLogs', () => {
  const linesOf = (messages: StreamJobLogsResponse[]) => messages.flatMap((message) => message.lines);

  test('with follow: stored lines, then live ones, every line exactly once and in order, and the end after the job finishes', async () => {
    const { client } = await server.createUser();
    const total = 40;
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: total, intervalMs: 40 } });
    // Start following once part of the log is stored.
    const deadline = Date.now() + 10_000;
    while ((await server.countRows('select count(*) as n from job_log_lines where job_id = $1', [job!.id])) < 6) {
      if (Date.now() > deadline) throw new Error('the job wrote no lines');
      await sleep(20);
    }
    const stream = streamLogs(client, { id: job!.id, follow: true });
    expect(await stream.end(15_000), 'the stream should end by itself once the job has finished').toBeUndefined();

    const lines = linesOf(stream.items);
    expect(lines.map((line) => Number(line.sequence))).toEqual(Array.from({ length: total }, (_, index) => index + 1));
    expect(lines.map((line) => line.message)).toEqual(Array.from({ length: total }, (_, index) => `line ${index + 1}`));
    expect(lines.every((line) => line.attempt === 1 && line.time !== undefined)).toBe(true);
    // The first message held the lines already stored; later ones came live.
    expect(stream.items[0]!.lines.length).toBeGreaterThanOrEqual(6);
    expect(stream.items.filter((message) => message.lines.length > 0).length).toBeGreaterThan(1);
    const [row] = await server.query<{ status: string; log_count: number }>('select status, log_count from jobs where id = $1', [job!.id]);
    expect(row).toEqual({ status: 'succeeded', log_count: total });
  });

  test('without follow: the stored lines, then the end (also while the job still runs)', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    for (let line = 1; line <= 3; line++) script.log(`early ${line}`);
    const deadline = Date.now() + 5000;
    while ((await server.countRows('select count(*) as n from job_log_lines where job_id = $1', [job.id])) < 3) {
      if (Date.now() > deadline) throw new Error('the lines were not stored');
      await sleep(20);
    }
    const whileRunning = streamLogs(client, { id: job.id });
    expect(await whileRunning.end()).toBeUndefined();
    expect(linesOf(whileRunning.items).map((line) => line.message)).toEqual(['early 1', 'early 2', 'early 3']);

    script.log('late');
    script.succeed();
    await waitFinished([job.id]);
    const finished = streamLogs(client, { id: job.id, follow: false });
    expect(await finished.end()).toBeUndefined();
    expect(linesOf(finished.items).map((line) => `${line.sequence}:${line.message}`)).toEqual([
      '1:early 1',
      '2:early 2',
      '3:early 3',
      '4:late',
    ]);
    // A job without lines: no lines, and the end.
    const quiet = await createNoop(client);
    await waitFinished([quiet.id]);
    const empty = streamLogs(client, { id: quiet.id, follow: true });
    expect(await empty.end()).toBeUndefined();
    expect(linesOf(empty.items)).toEqual([]);
  });

  test('following a job that never runs (queued, then cancelled) ends when it is cancelled', async () => {
    const { client } = await server.createUser();
    await admin.queue.pauseQueue({ queue: 'chatty' });
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: 3, intervalMs: 0 } });
    const stream = streamLogs(client, { id: job!.id, follow: true });
    await stream.waitFor((items) => items.length >= 2, 'heartbeats while queued', 3000);
    expect(stream.done).toBe(false);
    await client.jobs.cancelJob({ id: job!.id });
    expect(await stream.end(3000)).toBeUndefined();
    expect(linesOf(stream.items)).toEqual([]);
  });

  test('after_sequence skips the lines up to it, with and without follow', async () => {
    const { client } = await server.createUser();
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: 20, intervalMs: 20 } });
    const following = streamLogs(client, { id: job!.id, follow: true, afterSequence: 12n });
    expect(await following.end(10_000)).toBeUndefined();
    expect(linesOf(following.items).map((line) => Number(line.sequence))).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
    const stored = streamLogs(client, { id: job!.id, afterSequence: 18n });
    expect(await stored.end()).toBeUndefined();
    expect(linesOf(stored.items).map((line) => line.message)).toEqual(['line 19', 'line 20']);
    const beyond = streamLogs(client, { id: job!.id, afterSequence: 50n });
    expect(await beyond.end()).toBeUndefined();
    expect(linesOf(beyond.items)).toEqual([]);
  });

  test('while following a quiet job, heartbeats are empty messages', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = streamLogs(client, { id: job.id, follow: true });
    await stream.waitFor((items) => items.length >= 4, 'four heartbeats', 3000);
    expect(stream.items.every((message) => message.lines.length === 0)).toBe(true);
    script.log('finally something');
    await stream.waitFor((items) => linesOf(items).length === 1, 'the line');
    script.succeed();
    expect(await stream.end()).toBeUndefined();
    expect(linesOf(stream.items).map((line) => line.message)).toEqual(['finally something']);
  });

  test('while following, heartbeats keep coming even when the job changes often without writing lines', async () => {
    const { client } = await server.createUser();
    const { job, script } = await createStepped(client);
    await running(script);
    const stream = streamLogs(client, { id: job.id, follow: true });
    await stream.waitFor((items) => items.length >= 1, 'a first heartbeat', 3000);
    // Job events (renames) far more often than the heartbeat interval, for at least 1.5 s
    // and at least a dozen of them (a loaded machine makes each call slower).
    const until = Date.now() + 1500;
    let renames = 0;
    const countBefore = stream.items.length;
    while (Date.now() < until || renames < 12) {
      await client.jobs.updateJob({ job: { id: job.id, name: `rename ${renames++}` }, updateMask: { paths: ['name'] } });
      await sleep(30);
    }
    const heartbeats = stream.items.length - countBefore;
    script.succeed();
    expect(await stream.end()).toBeUndefined();
    expect(renames).toBeGreaterThan(10);
    // 1.5 s or more at one heartbeat per 200 ms of silence: several empty messages, whatever else happens.
    expect(heartbeats, `heartbeats received in 1.5 s of job events without log lines (interval ${heartbeatMs} ms)`).toBeGreaterThanOrEqual(
      3,
    );
  });

  test("another user's job is NotFound; an admin may read any job's log; a malformed id is InvalidArgument", async () => {
    const owner = await server.createUser();
    const other = await server.createUser();
    const { job } = await owner.client.jobs.createJob({ type: 'chatty', params: { lines: 2, intervalMs: 0 } });
    await waitFinished([job!.id]);
    for (const follow of [false, true]) {
      const error = await streamLogs(other.client, { id: job!.id, follow }).end();
      expect(error && Code[error.code]).toBe(Code[Code.NotFound]);
    }
    const unknown = await streamLogs(owner.client, { id: '01900000-0000-7000-8000-000000000000' }).end();
    expect(unknown && Code[unknown.code]).toBe(Code[Code.NotFound]);
    const malformed = await streamLogs(owner.client, { id: 'nope' }).end();
    expect(malformed && Code[malformed.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(malformed!)).toEqual(['id']);
    const asAdmin = streamLogs(admin, { id: job!.id, follow: true });
    expect(await asAdmin.end()).toBeUndefined();
    expect(linesOf(asAdmin.items).map((line) => line.message)).toEqual(['line 1', 'line 2']);
  });

  test('over gRPC: follows to the end', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const { job } = await grpc.jobs.createJob({ type: 'chatty', params: { lines: 15, intervalMs: 30 } });
    const stream = streamLogs(grpc, { id: job!.id, follow: true });
    expect(await stream.end(10_000)).toBeUndefined();
    expect(linesOf(stream.items).map((line) => Number(line.sequence))).toEqual(Array.from({ length: 15 }, (_, index) => index + 1));
    const other = await server.createUser();
    const grpcOther = server.client({ protocol: 'grpc' });
    await grpcOther.login(other.user.username, other.password);
    const error = await streamLogs(grpcOther, { id: job!.id }).end();
    expect(error && Code[error.code]).toBe(Code[Code.NotFound]);
  });
});
