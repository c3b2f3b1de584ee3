import { finalJobStatuses, type Job, type JobStatusName } from './entities.ts';

/**
 * A job as clients see it: what GetJob returns and what events carry. Events store it
 * as JSON (see toSnapshot), so a stream can replay a job as it was at each event.
 */
export interface JobView {
  id: string;
  ownerId: string;
  type: string;
  name: string;
  params: Record<string, unknown>;
  labels: Record<string, string>;
  priority: number;
  status: JobStatusName;
  progressPercent: number;
  progressMessage: string;
  attempt: number;
  maxAttempts: number;
  inputFileIds: string[];
  outputFileIds: string[];
  result: Record<string, unknown> | null;
  errorMessage: string | null;
  errorCode: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  updatedAt: Date;
  runAfter: Date | null;
  cancelRequested: boolean;
  cancelReason: string | null;
  abandoned: boolean;
  version: number;
}

export function jobView(job: Job): JobView {
  return {
    id: job.id,
    ownerId: job.owner,
    type: job.type,
    name: job.name,
    params: job.params,
    labels: job.labels,
    priority: job.priority,
    status: job.status,
    progressPercent: job.progressPercent,
    progressMessage: job.progressMessage,
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    inputFileIds: job.inputFileIds,
    outputFileIds: job.outputFileIds,
    result: job.result ?? null,
    errorMessage: job.errorMessage ?? null,
    errorCode: job.errorCode ?? null,
    createdAt: job.createdAt,
    startedAt: job.startedAt ?? null,
    finishedAt: job.finishedAt ?? null,
    updatedAt: job.updatedAt,
    runAfter: job.runAfter ?? null,
    cancelRequested: job.cancelRequested,
    cancelReason: job.cancelReason ?? null,
    abandoned: job.abandoned,
    version: job.version,
  };
}

const dateFields = ['createdAt', 'startedAt', 'finishedAt', 'updatedAt', 'runAfter'] as const;

/** The view as JSON for an event's payload (dates as ISO strings). */
export function toSnapshot(view: JobView): Record<string, unknown> {
  const snapshot: Record<string, unknown> = { ...view };
  for (const field of dateFields) snapshot[field] = view[field]?.toISOString() ?? null;
  return snapshot;
}

export function fromSnapshot(snapshot: Record<string, unknown>): JobView {
  const view = { ...snapshot } as Record<string, unknown>;
  for (const field of dateFields) view[field] = typeof snapshot[field] === 'string' ? new Date(snapshot[field]) : null;
  return view as unknown as JobView;
}

export function isFinal(status: JobStatusName): boolean {
  return finalJobStatuses.includes(status);
}
