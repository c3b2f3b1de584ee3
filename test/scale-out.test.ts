/**
 * Scale-out: two server processes on one database, coordinating only through it.
 * Instance A serves the API and runs no jobs (API_ONLY); instance B runs the jobs and
 * serves no API (WORKER_ONLY). Everything a client sees of B's work comes through A.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { JobEventKind, JobStatus } from '../gen/yardmaster/v1/jobs_pb.ts';
import { createYardmasterClient, type YardmasterClient } from '../clients/ts/src/node.ts';
import { eventually } from './support/assertions.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';
import { queryDatabase } from './support/query-database.ts';
import { createTestDatabase, type TestDatabase } from './support/test-database.ts';

const adminPassword = 'scale-out-admin-password';
let database: TestDatabase;
let apiInstance: ServerProcess;
let workerInstance: ServerProcess;
let workerInstanceId: string;
let admin: YardmasterClient;

beforeAll(async () => {
  database = await createTestDatabase();
  const env = { DATABASE_URL: database.url, ADMIN_PASSWORD: adminPassword };
  apiInstance = await startServerProcess({ ...env, API_ONLY: 'true' });
  workerInstance = await startServerProcess({ ...env, WORKER_ONLY: 'true' });
  workerInstanceId = ((await (await fetch(`${workerInstance.url}/healthz`)).json()) as { instance: string }).instance;
  admin = createYardmasterClient({ baseUrl: apiInstance.url, protocol: 'grpc' });
  await admin.login('admin', adminPassword);
}, 120_000);

afterAll(async () => {
  admin?.close();
  await apiInstance?.stop();
  await workerInstance?.stop();
  await database?.drop();
});

test('the worker-only instance serves no API, only its health routes', async () => {
  const reply = await fetch(`${workerInstance.url}/yardmaster.v1.AuthService/Login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: adminPassword }),
  });
  expect(reply.status).toBe(404);
  expect((await fetch(`${workerInstance.url}/readyz`)).status).toBe(200);
});

test('a WatchJobs stream on A sees every event of the jobs B ran', async () => {
  const abort = new AbortController();
  const seen = new Map<string, JobStatus[]>();
  let lastSequence = 0n;
  let live = false;
  let outOfOrder = false;
  const stream = (async () => {
    try {
      for await (const message of admin.jobs.watchJobs({}, { signal: abort.signal })) {
        live = true;
        if (message.sequence < lastSequence) outOfOrder = true;
        lastSequence = message.sequence;
        if (message.kind === JobEventKind.HEARTBEAT || !message.job) continue;
        seen.set(message.job.id, [...(seen.get(message.job.id) ?? []), message.job.status]);
      }
    } catch {
      // Ends with Canceled when the test aborts it.
    }
  })();
  // The first message (a heartbeat) says the stream is live.
  await eventually(async () => expect(live).toBe(true), 5000);

  const { jobs } = await admin.jobs.batchCreateJobs({
    requests: Array.from({ length: 20 }, (_, index) => ({ type: 'noop', name: `fan-out ${index}` })),
  });
  const ids = jobs.map((job) => job.id);
  await eventually(async () => {
    for (const id of ids) expect(seen.get(id)?.at(-1)).toBe(JobStatus.SUCCEEDED);
  }, 20_000);
  abort.abort();
  await stream;

  for (const id of ids) expect(seen.get(id)).toEqual([JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED]);
  expect(outOfOrder).toBe(false);
  const ranOn = await queryDatabase<{ worker_id: string }>(database.url, 'select distinct worker_id from jobs where id = any($1)', [ids]);
  expect(ranOn).toEqual([{ worker_id: workerInstanceId }]);
}, 60_000);

test('a pause on A stops B from starting jobs, and a resume on A lets it run them', async () => {
  await admin.queue.pauseQueue({ queue: 'sleep' });
  try {
    const { job } = await admin.jobs.createJob({ type: 'sleep', params: { seconds: 0 } });
    // B learns of the pause through the database; give it time to (wrongly) start the job.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect((await admin.jobs.getJob({ id: job!.id })).job?.status).toBe(JobStatus.QUEUED);
    await admin.queue.resumeQueue({ queue: 'sleep' });
    await eventually(async () => expect((await admin.jobs.getJob({ id: job!.id })).job?.status).toBe(JobStatus.SUCCEEDED), 15_000);
  } finally {
    await admin.queue.resumeQueue({ queue: '' });
  }
}, 60_000);

test('a cancel on A stops a job running on B', async () => {
  const { job } = await admin.jobs.createJob({ type: 'sleep', params: { seconds: 60 } });
  await eventually(async () => expect((await admin.jobs.getJob({ id: job!.id })).job?.status).toBe(JobStatus.RUNNING), 15_000);
  const cancelled = await admin.jobs.cancelJob({ id: job!.id, reason: 'scale-out test' });
  expect(cancelled.job?.cancelRequested).toBe(true);
  const started = Date.now();
  const states: JobStatus[] = [];
  for await (const message of admin.jobs.watchJob({ id: job!.id })) {
    if (message.job) states.push(message.job.status);
  }
  expect(states.at(-1)).toBe(JobStatus.CANCELLED);
  // The sleep type's grace is 5 s; it honours the signal, so it ends well within it.
  expect(Date.now() - started).toBeLessThan(5000);
  const [row] = await queryDatabase<{ worker_id: string; abandoned: boolean }>(
    database.url,
    'select worker_id, abandoned from jobs where id = $1',
    [job!.id],
  );
  expect(row).toEqual({ worker_id: workerInstanceId, abandoned: false });
}, 60_000);
