/**
 * What the WorkerService tests share: a server, its admin, a job type declared for
 * external workers, and worker accounts.
 */
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { Job, JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { eventually, randomHex } from '../support/assertions.ts';
import { startTestServer, type TestServer, type TestServerOptions } from '../support/test-server.ts';

export let server: TestServer;
export let admin: YardmasterClient;

/** One server (and its admin) for the file's tests. */
export function useWorkerServer(options: TestServerOptions = {}): void {
  beforeAll(async () => {
    server = await startTestServer(options);
    admin = await server.adminClient();
  });
  afterAll(() => server?.close());
}

/** Declares a job type for external workers (a name of its own) and returns its name. */
export async function declareType(
  label: string,
  policy: { leaseMs?: number; maxAttempts?: number; retryDelayMs?: number; timeoutMs?: number; maxInputFiles?: number } = {},
): Promise<string> {
  const name = `${label}-${randomHex()}`;
  await admin.admin.createJobType({
    jobType: {
      name,
      description: `${label}, run by external workers`,
      paramsSchema: { type: 'object', properties: { text: { type: 'string' } }, additionalProperties: false },
      lease: durationFromMs(policy.leaseMs ?? 5000),
      maxAttempts: policy.maxAttempts ?? 3,
      retryDelay: durationFromMs(policy.retryDelayMs ?? 0),
      timeout: durationFromMs(policy.timeoutMs ?? 600_000),
      maxInputFiles: policy.maxInputFiles ?? 0,
    },
  });
  return name;
}

/** A ROLE_WORKER account's client. */
export async function workerAccount(): Promise<YardmasterClient> {
  return (await server.createUser({ role: Role.WORKER })).client;
}

/** A worker id of its own for a test. */
export function workerId(label = 'worker'): string {
  return `${label}-${randomHex()}`;
}

/** Polls the job as `client` sees it until it has `status`. */
export function waitForJob(client: YardmasterClient, id: string, status: JobStatus, timeoutMs = 10_000): Promise<Job> {
  return eventually(async () => {
    const { job } = await client.jobs.getJob({ id });
    if (job!.status !== status) throw new Error(`job ${id} has status ${job!.status}, waiting for ${status}`);
    return job!;
  }, timeoutMs);
}

export const leaseRows = (jobId: string) =>
  server.query<{ attempt: number; worker_id: string; ended_at: Date | null; expires_at: Date }>(
    'select attempt, worker_id, ended_at, expires_at from job_leases where job_id = $1 order by claimed_at',
    [jobId],
  );
