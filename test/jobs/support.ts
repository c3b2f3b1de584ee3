/**
 * The setup and helpers of the tests in this folder (one file per capability). The tests:
 *
 * JobsService over a real server, a real PostgreSQL and a real pg-boss: every test calls
 * the server as a client would (typed client, Connect unless said otherwise) and checks
 * the reply (status, Connect code, BadRequest fields, ErrorInfo reason) and what was or
 * was not written to `jobs`, `job_log_lines`, `events`, `audit_events` and pg-boss's
 * `pgboss.job`. Nothing is mocked.
 *
 * Besides the built-in `noop` and `sleep`, the server gets job types that the tests
 * control:
 * - `held`: never runs, because its queue is paused for the whole file (jobs stay QUEUED);
 * - `echo`: succeeds at once, with free-form text params (search, params size);
 * - `waiter`: runs until its signal aborts (cancellation of a running job);
 * - `stubborn`: ignores its signal (abandoned after a 300 ms grace);
 * - `deadline`: runs past its 300 ms timeout;
 * - `flaky`: fails its first `failures` runs (counted per `key`, across attempts and
 *   retries), or fails for good with a non-retryable JobFailure (`fatal`).
 */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import type { JobStatus, CreateJobRequestSchema, Job } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { heldJobType, echoJobType, waiterJobType, stubbornJobType, deadlineJobType, flakyJobType } from '../support/job-types.ts';
import { eventually } from '../support/assertions.ts';
import { statusName } from '../support/job-names.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

// ---------------------------------------------------------------------------------------
// Server and helpers

export let server: TestServer;
export let admin: YardmasterClient;

/** Starts the file's server with the jobs tests' job types (the `held` queue paused) before its tests and closes it after them. */
export function useJobsServer(): void {
  beforeAll(async () => {
    server = await startTestServer({ jobTypes: [heldJobType, echoJobType, waiterJobType, stubbornJobType, deadlineJobType, flakyJobType] });
    admin = await server.adminClient();
    await admin.queue.pauseQueue({ queue: 'held' });
    // Let the runner stop its `held` worker before any held job exists.
    await sleep(300);
  });
  afterAll(() => server?.close());
}

/**
 * How long a due queue entry may wait for a worker: the runner polls every 2 s
 * (pollingIntervalSeconds in job-runner.ts), plus margin. Retries with no delay and jobs
 * whose run_after has come are picked up by that poll (no NOTIFY announces them).
 */
export const pollSlackMs = 4000;

export type CreateJobInit = MessageInitShape<typeof CreateJobRequestSchema>;

/** Polls GetJob until the job has `status`; returns it. On timeout, says where the job and its queue entries are. */
export async function waitForStatus(client: YardmasterClient, id: string, status: JobStatus, timeoutMs = 8000): Promise<Job> {
  try {
    return await eventually(
      async () => {
        const { job } = await client.jobs.getJob({ id });
        expect(statusName(job!.status), `status of job ${id}`).toBe(statusName(status));
        return job!;
      },
      timeoutMs,
      25,
    );
  } catch (error) {
    const row = await jobRowOf(id);
    const entries = await queueEntriesOf(id);
    const described = entries.map(
      (entry) => `${entry.state} (start_after ${new Date(entry.start_after).toISOString()}, retry_count ${entry.retry_count})`,
    );
    throw new Error(
      `job ${id} (${row?.type}) is not ${statusName(status)} after ${timeoutMs} ms: it is ${row?.status}, attempt ${row?.attempt}; ` +
        `now ${new Date().toISOString()}; pg-boss entries: ${described.join(', ') || 'none'}`,
      { cause: error },
    );
  }
}

export async function create(client: YardmasterClient, request: CreateJobInit & { type: string }): Promise<Job> {
  const { job } = await client.jobs.createJob(request);
  expect(job).toBeDefined();
  return job!;
}

interface QueueEntryRow {
  id: string;
  name: string;
  state: string;
  priority: number;
  retry_limit: number;
  retry_count: number;
  start_after: Date;
  data: { jobId: string };
}

/** pg-boss entries that carry the job, oldest first. */
export const queueEntriesOf = (jobId: string) =>
  server.query<QueueEntryRow>(
    `select id, name, state, priority, retry_limit, retry_count, start_after, data from pgboss.job where data->>'jobId' = $1 order by created_on, id`,
    [jobId],
  );

interface JobRow {
  id: string;
  owner_id: string;
  type: string;
  name: string;
  status: string;
  priority: number;
  attempt: number;
  max_attempts: number;
  queue_job_id: string | null;
  request_id: string | null;
  created_at: Date;
}

export const jobRowOf = async (jobId: string) => (await server.query<JobRow>('select * from jobs where id = $1', [jobId]))[0];

export interface EventRow {
  id: string;
  sequence: string | null;
  kind: string;
  subject_id: string;
  owner_id: string;
  payload: Record<string, unknown>;
}

export const eventsOf = (jobId: string) =>
  server.query<EventRow>('select id, sequence, kind, subject_id, owner_id, payload from events where subject_id = $1 order by id', [jobId]);

/** What a rejected call must not have written for a fresh user. */
export async function writes(ownerId: string) {
  return {
    jobs: await server.countRows('select count(*)::int as n from jobs where owner_id = $1', [ownerId]),
    events: await server.countRows('select count(*)::int as n from events where owner_id = $1', [ownerId]),
    // Entries of job queues only: pg-boss's own scheduled maintenance entries carry no job.
    queueEntries: await server.countRows(`select count(*)::int as n from pgboss.job where data->>'jobId' is not null`),
  };
}

/** All of the caller's jobs matching the request's filter, by id, over every page. */
export async function listAll(client: YardmasterClient, request: Parameters<YardmasterClient['jobs']['listJobs']>[0]): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = '';
  for (let page = 0; page < 100; page++) {
    const reply = await client.jobs.listJobs({ ...request, pageToken });
    ids.push(...reply.jobs.map((job) => job.id));
    if (reply.nextPageToken === '') return ids;
    pageToken = reply.nextPageToken;
  }
  throw new Error('too many pages');
}
