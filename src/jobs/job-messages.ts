import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { optionalTimestamp, requestTime } from '../platform/timestamps.ts';
import {
  JobEventKind,
  JobLogLevel,
  JobSchema,
  JobStatus,
  type Job as JobMessage,
  type JobFilter as JobFilterMessage,
} from '../../gen/yardmaster/v1/jobs_pb.ts';
import type { JobStatusName, LogLevelName } from './entities.ts';
import type { JobEventKind as JobEventKindName } from './job-changes.ts';
import type { JobFilter } from './job-filter.ts';
import type { StoredLogLine } from './job-logs.ts';
import type { JobView } from './job-view.ts';

const statusOfName: Record<JobStatusName, JobStatus> = {
  queued: JobStatus.QUEUED,
  running: JobStatus.RUNNING,
  succeeded: JobStatus.SUCCEEDED,
  failed: JobStatus.FAILED,
  cancelled: JobStatus.CANCELLED,
};

const levelOfName: Record<LogLevelName, JobLogLevel> = {
  debug: JobLogLevel.DEBUG,
  info: JobLogLevel.INFO,
  warn: JobLogLevel.WARN,
  error: JobLogLevel.ERROR,
};

const eventKindOfName: Record<JobEventKindName, JobEventKind> = {
  created: JobEventKind.CREATED,
  updated: JobEventKind.UPDATED,
  deleted: JobEventKind.DELETED,
};

/** `JOB_STATUS_QUEUED`... for maps keyed by status name. */
function jobStatusKey(status: string): string {
  return `JOB_STATUS_${status.toUpperCase()}`;
}

/** Counts by status name as a proto map keyed by JOB_STATUS_* names. */
export function countsByStatusToProto(counts: Record<string, number>): Record<string, bigint> {
  return Object.fromEntries(Object.entries(counts).map(([status, count]) => [jobStatusKey(status), BigInt(count)]));
}

export function eventKindToProto(kind: JobEventKindName): JobEventKind {
  return eventKindOfName[kind];
}

export function jobToProto(job: JobView): JobMessage {
  return create(JobSchema, {
    id: job.id,
    ownerId: job.ownerId,
    type: job.type,
    name: job.name,
    params: job.params as never,
    labels: job.labels,
    priority: job.priority,
    status: statusOfName[job.status],
    progress: { percent: job.progressPercent, message: job.progressMessage },
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    inputFileIds: job.inputFileIds,
    outputFileIds: job.outputFileIds,
    result: (job.result ?? undefined) as never,
    error: job.errorMessage ? { message: job.errorMessage, code: job.errorCode ?? '' } : undefined,
    createTime: timestampFromDate(job.createdAt),
    startTime: optionalTimestamp(job.startedAt),
    finishTime: optionalTimestamp(job.finishedAt),
    updateTime: timestampFromDate(job.updatedAt),
    runAfter: optionalTimestamp(job.runAfter),
    cancelRequested: job.cancelRequested,
    cancelReason: job.cancelReason ?? '',
    abandoned: job.abandoned,
  });
}

export function logLineToProto(line: StoredLogLine) {
  return {
    sequence: BigInt(line.sequence),
    time: timestampFromDate(line.createdAt),
    level: levelOfName[line.level],
    message: line.message,
    attempt: line.attempt,
  };
}

/** The proto filter as the domain's; unknown status values are kept so validation can name them. */
export function jobFilterFromProto(filter: JobFilterMessage | undefined): JobFilter {
  const names = Object.entries(statusOfName);
  return {
    statuses: (filter?.statuses ?? []).map(
      (status) => (names.find(([, value]) => value === status)?.[0] ?? `unknown:${status}`) as JobStatusName,
    ),
    types: filter?.types ?? [],
    ownerId: filter?.ownerId ?? '',
    labels: filter?.labels ?? {},
    createdAfter: requestTime(filter?.createdAfter, 'filter.created_after'),
    createdBefore: requestTime(filter?.createdBefore, 'filter.created_before'),
    search: filter?.search ?? '',
  };
}
