/** Names of job enum values, for assertions and failure messages that a reader can follow. */
import { JobEventKind, JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';

/** `QUEUED`, `RUNNING`, ...; `UNKNOWN(n)` for a value the enum does not have. */
export function statusName(status: JobStatus | undefined): string {
  return Object.entries(JobStatus).find(([, value]) => value === status)?.[0] ?? `UNKNOWN(${String(status)})`;
}

/** `CREATED`, `UPDATED`, ...; `UNKNOWN(n)` for a value the enum does not have. */
export function kindName(kind: JobEventKind | undefined): string {
  return Object.entries(JobEventKind).find(([, value]) => value === kind)?.[0] ?? `UNKNOWN(${String(kind)})`;
}
