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

/** A `jobs` row as `jobViewColumns` selects it. */
export interface StoredJob {
  id: string;
  owner_id: string;
  type: string;
  name: string;
  params: Record<string, unknown>;
  labels: Record<string, string>;
  priority: number;
  status: JobStatusName;
  progress_percent: number;
  progress_message: string;
  attempt: number;
  max_attempts: number;
  input_file_ids: string[];
  output_file_ids: string[];
  result: Record<string, unknown> | null;
  error_message: string | null;
  error_code: string | null;
  created_at: Date | string;
  started_at: Date | string | null;
  finished_at: Date | string | null;
  updated_at: Date | string;
  run_after: Date | string | null;
  cancel_requested: boolean;
  cancel_reason: string | null;
  abandoned: boolean;
  version: number;
}

// In the order of `storedJobOfValues`.
const jobViewColumnNames = [
  'id',
  'owner_id',
  'type',
  'name',
  'params',
  'labels',
  'priority',
  'status',
  'progress_percent',
  'progress_message',
  'attempt',
  'max_attempts',
  'input_file_ids',
  'output_file_ids',
  'result',
  'error_message',
  'error_code',
  'created_at',
  'started_at',
  'finished_at',
  'updated_at',
  'run_after',
  'cancel_requested',
  'cancel_reason',
  'abandoned',
  'version',
] as const satisfies readonly (keyof StoredJob)[];

/** The columns of the view, for reads that skip the ORM (GetJob: one statement, no entity to hydrate). */
export const jobViewColumns = jobViewColumnNames.join(', ');

/**
 * The view's columns as one JSON array (`jobViewColumns` in order), for `storedJobOfValues`.
 * One column instead of 26: pg builds a parser table and a row object per column for every
 * result, which cost more of the server's CPU than parsing the one JSON value.
 */
export const jobViewColumnsAsJson = `json_build_array(${jobViewColumns})`;

/**
 * A row read as `jobViewColumnsAsJson` (timestamps come as ISO strings, which
 * `jobViewOfStored` reads). Built as one literal: an object filled key by key from the
 * column list turns into a slow dictionary past a dozen keys.
 */
export function storedJobOfValues(values: readonly unknown[]): StoredJob {
  const [
    id,
    owner_id,
    type,
    name,
    params,
    labels,
    priority,
    status,
    progress_percent,
    progress_message,
    attempt,
    max_attempts,
    input_file_ids,
    output_file_ids,
    result,
    error_message,
    error_code,
    created_at,
    started_at,
    finished_at,
    updated_at,
    run_after,
    cancel_requested,
    cancel_reason,
    abandoned,
    version,
  ] = values as StoredJobValues;
  return {
    id,
    owner_id,
    type,
    name,
    params,
    labels,
    priority,
    status,
    progress_percent,
    progress_message,
    attempt,
    max_attempts,
    input_file_ids,
    output_file_ids,
    result,
    error_message,
    error_code,
    created_at,
    started_at,
    finished_at,
    updated_at,
    run_after,
    cancel_requested,
    cancel_reason,
    abandoned,
    version,
  };
}

type ValuesOf<Names extends readonly (keyof StoredJob)[]> = { -readonly [Index in keyof Names]: StoredJob[Names[Index] & keyof StoredJob] };
type StoredJobValues = ValuesOf<typeof jobViewColumnNames>;

const dateOf = (value: Date | string) => (value instanceof Date ? value : new Date(value));
const optionalDateOf = (value: Date | string | null) => (value === null ? null : dateOf(value));

export function jobViewOfStored(row: StoredJob): JobView {
  return {
    id: row.id,
    ownerId: row.owner_id,
    type: row.type,
    name: row.name,
    params: row.params,
    labels: row.labels,
    priority: row.priority,
    status: row.status,
    progressPercent: row.progress_percent,
    progressMessage: row.progress_message,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    inputFileIds: row.input_file_ids,
    outputFileIds: row.output_file_ids,
    result: row.result,
    errorMessage: row.error_message,
    errorCode: row.error_code,
    createdAt: dateOf(row.created_at),
    startedAt: optionalDateOf(row.started_at),
    finishedAt: optionalDateOf(row.finished_at),
    updatedAt: dateOf(row.updated_at),
    runAfter: optionalDateOf(row.run_after),
    cancelRequested: row.cancel_requested,
    cancelReason: row.cancel_reason,
    abandoned: row.abandoned,
    version: row.version,
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
