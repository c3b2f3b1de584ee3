import { create } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { createConnectQueryKey } from '@connectrpc/connect-query';
import type { Transport } from '@connectrpc/connect';
import type { QueryClient } from '@tanstack/react-query';
import { GetJobResponseSchema, type Job, JobsService } from '@gen/yardmaster/v1/jobs_pb.ts';

const updatedMs = (job: Job) => (job.updateTime ? timestampMs(job.updateTime) : 0);

/**
 * Whether `incoming` may replace `held`: states arrive from streams and from call
 * responses in no fixed order (a CancelJob response can land after the stream's final
 * CANCELLED), so an older state never overwrites a newer one.
 */
export function isNewerOrSame(incoming: Job, held: Job | undefined): boolean {
  return !held || updatedMs(incoming) >= updatedMs(held);
}

export function jobQueryKey(transport: Transport, id: string) {
  return createConnectQueryKey({ schema: JobsService.method.getJob, transport, input: { id }, cardinality: 'finite' });
}

/** Puts a job's state into the cached GetJob (when it is newer); `onlyIfCached` leaves jobs nobody looks at alone. */
export function putJob(queryClient: QueryClient, transport: Transport, job: Job, { onlyIfCached = false } = {}): void {
  queryClient.setQueryData(jobQueryKey(transport, job.id), (cached) => {
    if (!cached && onlyIfCached) return cached;
    return isNewerOrSame(job, cached?.job) ? create(GetJobResponseSchema, { job }) : cached;
  });
}
