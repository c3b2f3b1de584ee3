/**
 * The example external worker (clients/worker-example) as an operator runs it: a child
 * process talking gRPC to a real server. It counts a text file and uploads its word
 * counts; killed mid-job its job runs again on the next worker, never on two at once; a
 * cancel, a restart and a stop reach it through its heartbeats; SIGTERM drains it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { afterAll, describe, expect, test } from 'vitest';
import { restartExitCode } from '../../clients/worker-example/src/external-worker.ts';
import { textStatsParamsSchema } from '../../clients/worker-example/src/text-stats-job.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { JobLogLevel, JobStatus, type Job } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { eventually, randomHex } from '../support/assertions.ts';
import { adminPassword } from '../support/test-server.ts';
import { admin, server, useWorkerServer, waitForJob, workerAccount, workerId } from './support.ts';

useWorkerServer();

const repoRoot = path.resolve(import.meta.dirname, '../..');
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

interface WorkerProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/** Runs the example worker (or its --setup) with the test's Node.js, as `npm run worker:example` does. */
function startWorker(env: Record<string, string>, args: string[] = []): WorkerProcess {
  const child = spawn(process.execPath, ['--import', './src/check-node.js', 'clients/worker-example/src/main.ts', ...args], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', YARDMASTER_URL: server.url, ...env },
  });
  children.push(child);
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** A job type like setup's text-stats, under a name of its own and with a 5 s lease. */
async function declareTextStats(): Promise<string> {
  const name = `text-stats-${randomHex()}`;
  await admin.admin.createJobType({
    jobType: {
      name,
      description: 'text statistics, by the example worker',
      paramsSchema: textStatsParamsSchema,
      lease: durationFromMs(5000),
      maxAttempts: 3,
      retryDelay: durationFromMs(0),
      timeout: durationFromMs(600_000),
      minInputFiles: 1,
      maxInputFiles: 1,
    },
  });
  return name;
}

/** A ROLE_WORKER account's API key. */
async function workerApiKey(): Promise<string> {
  const worker = await workerAccount();
  return (await worker.auth.createApiKey({ name: 'example worker' })).secret;
}

async function uploadText(client: YardmasterClient, name: string, bytes: Uint8Array, contentType = 'text/plain') {
  const { file } = await client.files.upload(
    (async function* () {
      yield { content: { case: 'metadata' as const, value: { name, size: BigInt(bytes.byteLength), contentType } } };
      for (let at = 0; at < bytes.byteLength; at += 256 * 1024)
        yield { content: { case: 'chunk' as const, value: bytes.subarray(at, at + 256 * 1024) } };
    })(),
  );
  return file!;
}

async function downloadBytes(client: YardmasterClient, id: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const { chunk } of client.files.download({ id })) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** `lines` lines of "alpha beta gamma": over 1 MiB for 70 000, so words straddle the download's chunks. */
function threeWordText(lines: number): Uint8Array {
  return new TextEncoder().encode('alpha beta gamma\n'.repeat(lines));
}

const finalStatuses: JobStatus[] = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED];

/** Every state WatchJob shows until the job ends, collected in the background. */
function watchStates(client: YardmasterClient, id: string): { states: Job[]; ended: Promise<void> } {
  const states: Job[] = [];
  const ended = (async () => {
    for await (const { job } of client.jobs.watchJob({ id })) {
      if (!job) continue;
      states.push(job);
      if (finalStatuses.includes(job.status)) return;
    }
  })();
  return { states, ended };
}

/** Waits until the job runs and has reported progress. */
function waitForProgress(client: YardmasterClient, id: string): Promise<void> {
  return eventually(async () => {
    const { job } = await client.jobs.getJob({ id });
    if (!(job!.status === JobStatus.RUNNING && (job!.progress?.percent ?? 0) > 0)) throw new Error('not yet under way');
  }, 20_000);
}

/** The statuses in order, each run of the same status once. */
function statusSteps(states: Job[]): string[] {
  const names = Object.fromEntries(Object.entries(JobStatus).map(([name, value]) => [value, name]));
  return states.map((job) => names[job.status]!).filter((name, index, all) => index === 0 || all[index - 1] !== name);
}

describe('the example worker', () => {
  test('set up as the README says, it counts a text file: result, progress, log lines, and a word-counts.csv owned by the job owner', async () => {
    const setup = startWorker({ ADMIN_PASSWORD: adminPassword }, ['--setup']);
    expect(await setup.exited, setup.output()).toBe(0);
    const apiKey = /WORKER_API_KEY=(\S+)/.exec(setup.output())?.[1];
    expect(apiKey, setup.output()).toBeDefined();
    expect((await admin.jobs.listJobTypes({})).jobTypes.find((type) => type.name === 'text-stats')).toMatchObject({ maxInputFiles: 1 });

    const worker = startWorker({ WORKER_API_KEY: apiKey!, WORKER_ID: workerId('example') });
    const owner = await server.createUser();
    const input = await uploadText(owner.client, 'words.txt', threeWordText(70_000));
    const { job } = await owner.client.jobs.createJob({ type: 'text-stats', params: { top_words: 2 }, inputFileIds: [input.id] });
    const watch = watchStates(owner.client, job!.id);
    await watch.ended;
    const done = (await owner.client.jobs.getJob({ id: job!.id })).job!;
    expect(done.status, worker.output()).toBe(JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(1);
    expect(done.result).toEqual({
      input_file_id: input.id,
      bytes: 70_000 * 17,
      lines: 70_000,
      words: 210_000,
      characters: 70_000 * 17,
      distinct_words: 3,
      top_words: [
        { word: 'alpha', count: 70_000 },
        { word: 'beta', count: 70_000 },
      ],
    });
    // Two chunks of at most 1 MiB: progress after the first, then 100 %.
    const percents = watch.states.map((state) => state.progress?.percent ?? 0);
    expect(percents.some((percent) => percent > 0 && percent < 100)).toBe(true);
    expect(percents.at(-1)).toBe(100);
    const { lines } = await owner.client.jobs.listJobLogs({ id: job!.id });
    expect(lines.map((line) => [line.level, line.message])).toEqual([
      [JobLogLevel.INFO, 'counting /words.txt (1190000 bytes, text/plain)'],
      [JobLogLevel.INFO, '70000 lines, 210000 words (3 distinct), 1190000 characters'],
      [JobLogLevel.INFO, 'wrote word-counts.csv (46 bytes)'],
    ]);

    expect(done.outputFileIds).toHaveLength(1);
    const { file: output } = await owner.client.files.getFile({ id: done.outputFileIds[0]! });
    expect(output).toMatchObject({ name: 'word-counts.csv', ownerId: owner.user.id, jobId: job!.id });
    expect((await downloadBytes(owner.client, output!.id)).toString()).toBe('word,count\nalpha,70000\nbeta,70000\ngamma,70000\n');

    // SIGTERM drains: nothing held, so it exits at once, and cleanly.
    worker.child.kill('SIGTERM');
    expect(await worker.exited, worker.output()).toBe(0);
  }, 60_000);

  test('a file that is not text fails for good with NOT_TEXT, in one attempt', async () => {
    const type = await declareTextStats();
    const worker = startWorker({ WORKER_API_KEY: await workerApiKey(), WORKER_ID: workerId('example'), WORKER_QUEUES: type });
    const owner = await server.createUser();
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(64)]);
    const input = await uploadText(owner.client, 'picture.png', png, 'image/png');
    const { job } = await owner.client.jobs.createJob({ type, params: {}, inputFileIds: [input.id] });
    const failed = await waitForJob(owner.client, job!.id, JobStatus.FAILED, 20_000);
    expect(failed.error, worker.output()).toMatchObject({ code: 'NOT_TEXT' });
    expect(failed.attempt).toBe(1);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  }, 60_000);

  test('killed mid-job (kill -9), the job runs again on the next worker: attempt 2 after LEASE_EXPIRED, never held by two at once', async () => {
    const type = await declareTextStats();
    const apiKey = await workerApiKey();
    const owner = await server.createUser();
    // Four 1 MiB chunks, a second each: the first worker is killed inside them.
    const input = await uploadText(owner.client, 'long.txt', threeWordText(4 * 61_681));
    const { job } = await owner.client.jobs.createJob({ type, params: { delay_ms_per_chunk: 1000 }, inputFileIds: [input.id] });
    const watch = watchStates(owner.client, job!.id);
    const firstId = workerId('first');
    const first = startWorker({ WORKER_API_KEY: apiKey, WORKER_ID: firstId, WORKER_QUEUES: type });
    await waitForProgress(owner.client, job!.id);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();

    const secondId = workerId('second');
    const second = startWorker({ WORKER_API_KEY: apiKey, WORKER_ID: secondId, WORKER_QUEUES: type });
    await watch.ended;
    const done = (await owner.client.jobs.getJob({ id: job!.id })).job!;
    expect(done.status, second.output()).toBe(JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(2);
    expect(done.result).toMatchObject({ lines: 4 * 61_681, words: 3 * 4 * 61_681 });
    expect(statusSteps(watch.states)).toEqual(['QUEUED', 'RUNNING', 'QUEUED', 'RUNNING', 'SUCCEEDED']);
    const requeued = watch.states.find((state) => state.status === JobStatus.QUEUED && state.attempt === 1 && state.error);
    expect(requeued?.error).toMatchObject({ code: 'LEASE_EXPIRED' });

    const leases = await server.query<{ attempt: number; worker_id: string; claimed_at: Date; ended_at: Date | null }>(
      'select attempt, worker_id, claimed_at, ended_at from job_leases where job_id = $1 order by attempt',
      [job!.id],
    );
    expect(leases.map((lease) => [lease.attempt, lease.worker_id])).toEqual([
      [1, firstId],
      [2, secondId],
    ]);
    expect(leases[0]!.ended_at!.getTime()).toBeLessThanOrEqual(leases[1]!.claimed_at.getTime());
    expect(leases[1]!.ended_at).not.toBeNull();
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 90_000);

  test('a cancel reaches the worker through its heartbeat and its FailJob ends the job CANCELLED', async () => {
    const type = await declareTextStats();
    const id = workerId('example');
    const worker = startWorker({ WORKER_API_KEY: await workerApiKey(), WORKER_ID: id, WORKER_QUEUES: type });
    const owner = await server.createUser();
    const input = await uploadText(owner.client, 'long.txt', threeWordText(4 * 61_681));
    const { job } = await owner.client.jobs.createJob({ type, params: { delay_ms_per_chunk: 3000 }, inputFileIds: [input.id] });
    // Under way and 3 s from its next progress report: the heartbeat (every 5 s / 3) brings the cancel first.
    await waitForProgress(owner.client, job!.id);
    await owner.client.jobs.cancelJob({ id: job!.id, reason: 'wrong file' });
    const cancelled = await waitForJob(owner.client, job!.id, JobStatus.CANCELLED, 10_000);
    // Acknowledged by the worker, not ended by the lease's lapse.
    expect(cancelled.abandoned, worker.output()).toBe(false);
    const { lines } = await owner.client.jobs.listJobLogs({ id: job!.id });
    expect(lines.at(-1)).toMatchObject({ level: JobLogLevel.ERROR, message: "CANCELLED: stopped on its owner's request (wrong file)" });
    expect(worker.child.exitCode).toBeNull();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  }, 60_000);

  test('RestartService worker/<id> makes it exit 75 for its supervisor; StopService worker/<id> makes it exit 0', async () => {
    const type = await declareTextStats();
    const apiKey = await workerApiKey();
    const id = workerId('example');
    const restarted = startWorker({ WORKER_API_KEY: apiKey, WORKER_ID: id, WORKER_QUEUES: type });
    await eventually(
      async () => expect(await server.countRows('select count(*) as n from external_workers where id = $1', [id])).toBe(1),
      10_000,
    );
    await admin.system.restartService({ name: `worker/${id}` });
    expect(await restarted.exited, restarted.output()).toBe(restartExitCode);

    const stopped = startWorker({ WORKER_API_KEY: apiKey, WORKER_ID: id, WORKER_QUEUES: type });
    await eventually(async () => expect(stopped.output()).toContain(`worker ${id} claims`), 10_000);
    await admin.system.stopService({ name: `worker/${id}` });
    expect(await stopped.exited, stopped.output()).toBe(0);
    expect(stopped.output()).toContain('stop (an admin stopped this worker)');
  }, 60_000);
});
