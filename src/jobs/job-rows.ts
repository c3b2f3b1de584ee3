import { executeNumbered } from '../platform/db/bound-sql.ts';
import { anyUuidOf } from '../platform/db/json-lists.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { jobViewColumns, jobViewOfStored, toSnapshot, type JobView, type StoredJob } from './job-view.ts';

/**
 * A job row as the hot transitions (start and end of attempts) read and write it: plain
 * SQL on plain objects, a whole batch per statement, without the ORM's unit of work,
 * which cost more CPU per job than everything else on this path.
 */
export interface JobRow extends JobView {
  queueJobId: string | null;
  queueRetryCount: number | null;
  workerId: string | null;
  queuedAt: Date | null;
}

const selectColumns = `${jobViewColumns}, queue_job_id, queue_retry_count, worker_id, queued_at`;

interface StoredJobRow extends StoredJob {
  queue_job_id: string | null;
  queue_retry_count: number | null;
  worker_id: string | null;
  queued_at: Date | string | null;
}

/** SQLSTATE of a `nowait` lock that another transaction holds. */
export const lockNotAvailable = '55P03';

/** The jobs among `ids` that exist, locked for update in id order (two batches sharing jobs cannot deadlock). */
export async function lockJobRows(tx: EntityManager, ids: string[]): Promise<JobRow[]> {
  return (await lockJobRowsWithPause(tx, ids, 'false')).map(({ row }) => row);
}

/**
 * Like lockJobRows, and tells for each job whether its queue is paused, read from the
 * queue states by the same statement: `pausedCondition` is an SQL condition on `jobs.type`.
 */
export async function lockJobRowsWithPause(
  tx: EntityManager,
  ids: string[],
  pausedCondition: string,
): Promise<{ row: JobRow; paused: boolean }[]> {
  if (ids.length === 0) return [];
  const { text, values } = lockJobRowsStatement(ids, pausedCondition, false);
  return lockedRowsOf(await executeNumbered<StoredLockedRow>(tx, text, values));
}

/** A statement with numbered parameters and a name of its own, for a plain pg client (prepared once per connection). */
export interface NamedStatement {
  name: string;
  text: string;
  values: unknown[];
}

type StoredLockedRow = StoredJobRow & { paused: boolean };

/**
 * The statement of lockJobRowsWithPause; its name tells the variants apart (`pausedCondition`
 * must be the same text each time). With `noWait`, a row another transaction holds fails
 * the statement (SQLSTATE 55P03, `lockNotAvailable`) instead of waiting for it.
 */
export function lockJobRowsStatement(ids: string[], pausedCondition: string, noWait: boolean): NamedStatement {
  return {
    name: `jobs.lock_rows${noWait ? '_nowait' : ''}`,
    text: `select ${selectColumns}, ${pausedCondition} as paused from jobs
      where id ${anyUuidOf.replace('?', '$1')} order by id for update of jobs${noWait ? ' nowait' : ''}`,
    values: [JSON.stringify(ids)],
  };
}

/** The rows lockJobRowsStatement read. */
export function lockedRowsOf(rows: StoredLockedRow[]): { row: JobRow; paused: boolean }[] {
  return rows.map((stored) => ({ row: rowOf(stored), paused: stored.paused }));
}

/** Bumps the row's version and update time (call after changing it); returns the job as its event shows it. */
export function touchRow(row: JobRow): JobView {
  row.version += 1;
  row.updatedAt = new Date();
  return viewOfRow(row);
}

/**
 * Writes the changed rows and one `job.updated` event per change, in one statement, in
 * the caller's transaction. `views` are the states the events carry, in order (a job
 * changed twice in a batch has two); each row is written once, as it stands now.
 */
export async function writeJobRows(tx: EntityManager, rows: JobRow[], views: JobView[]): Promise<void> {
  if (rows.length === 0) return;
  const { text, values } = jobRowsWrite(rows, views);
  await executeNumbered(tx, text, values);
}

/** The statement of writeJobRows (`rows` not empty). */
export function jobRowsWrite(rows: JobRow[], views: JobView[]): NamedStatement {
  const latest = new Map(rows.map((row) => [row.id, row]));
  return {
    name: 'jobs.write_rows',
    text: `with changed as (
       select * from jsonb_to_recordset($1::jsonb) as c(
         id uuid, status text, attempt int, progress_percent int, progress_message varchar(500), output_file_ids jsonb,
         result jsonb, error_message text, error_code varchar(64), started_at timestamptz, finished_at timestamptz,
         updated_at timestamptz, queued_at timestamptz, abandoned boolean, queue_job_id uuid, queue_retry_count int,
         worker_id varchar(128), version int)),
     updated as (
       update jobs j set status = c.status, attempt = c.attempt, progress_percent = c.progress_percent,
              progress_message = c.progress_message, output_file_ids = c.output_file_ids, result = c.result,
              error_message = c.error_message, error_code = c.error_code, started_at = c.started_at,
              finished_at = c.finished_at, updated_at = c.updated_at, queued_at = c.queued_at, abandoned = c.abandoned,
              queue_job_id = c.queue_job_id, queue_retry_count = c.queue_retry_count, worker_id = c.worker_id, version = c.version
         from changed c where j.id = c.id and j.id = any(array(select id from changed)))
     insert into events (created_at, kind, subject_id, owner_id, payload)
     select $2::timestamptz, 'job.updated', e.subject_id, e.owner_id, e.payload
       from jsonb_to_recordset($3::jsonb) as e(n int, subject_id uuid, owner_id uuid, payload jsonb)
      order by e.n`,
    values: [
      JSON.stringify([...latest.values()].map(storedChangeOf)),
      new Date(),
      JSON.stringify(views.map((view, n) => ({ n, subject_id: view.id, owner_id: view.ownerId, payload: toSnapshot(view) }))),
    ],
  };
}

/** A job about to be created: its row, with what only the table keeps. */
export interface NewJobRow extends JobRow {
  searchText: string;
  requestId: string | null;
}

/** Inserts new jobs, their search text and one `job.created` event each, in one statement, in the caller's transaction. */
export async function insertJobRows(tx: EntityManager, rows: NewJobRow[]): Promise<void> {
  if (rows.length === 0) return;
  const { text, values } = jobRowsInsert(rows);
  await executeNumbered(tx, text, values);
}

/** The statement of insertJobRows, with numbered parameters (for a plain pg client too). */
export function jobRowsInsert(rows: NewJobRow[]): { text: string; values: unknown[] } {
  return {
    text: `with created as (
       insert into jobs (id, owner_id, type, name, params, labels, priority, status, progress_percent, progress_message,
              attempt, max_attempts, input_file_ids, output_file_ids, result, created_at, updated_at, run_after, queued_at,
              cancel_requested, abandoned, request_id, queue_job_id, version, log_count)
       select id, owner_id, type, name, params, labels, priority, status, progress_percent, progress_message,
              attempt, max_attempts, input_file_ids, output_file_ids, result, created_at, updated_at, run_after, queued_at,
              cancel_requested, abandoned, request_id, queue_job_id, version, 0
         from jsonb_to_recordset($1::jsonb) as j(id uuid, owner_id uuid, type varchar(64), name varchar(200), params jsonb, labels jsonb,
              priority int, status text, progress_percent int, progress_message varchar(500), attempt int,
              max_attempts int, input_file_ids jsonb, output_file_ids jsonb, result jsonb, created_at timestamptz,
              updated_at timestamptz, run_after timestamptz, queued_at timestamptz, cancel_requested boolean, abandoned boolean,
              request_id varchar(128), queue_job_id uuid, version int)),
     searchable as (
       insert into job_search (job_id, search_text)
       select id, search_text from jsonb_to_recordset($2::jsonb) as s(id uuid, search_text text))
     insert into events (created_at, kind, subject_id, owner_id, payload)
     select $3::timestamptz, 'job.created', e.subject_id, e.owner_id, e.payload
       from jsonb_to_recordset($4::jsonb) as e(n int, subject_id uuid, owner_id uuid, payload jsonb)
      order by e.n`,
    values: [
      JSON.stringify(
        rows.map((row) => ({
          ...storedChangeOf(row),
          owner_id: row.ownerId,
          type: row.type,
          name: row.name,
          params: row.params,
          labels: row.labels,
          priority: row.priority,
          max_attempts: row.maxAttempts,
          input_file_ids: row.inputFileIds,
          created_at: row.createdAt,
          run_after: row.runAfter,
          cancel_requested: row.cancelRequested,
          request_id: row.requestId,
        })),
      ),
      JSON.stringify(rows.map((row) => ({ id: row.id, search_text: row.searchText }))),
      new Date(),
      JSON.stringify(rows.map((row, n) => ({ n, subject_id: row.id, owner_id: row.ownerId, payload: toSnapshot(viewOfRow(row)) }))),
    ],
  };
}

function storedChangeOf(row: JobRow) {
  return {
    id: row.id,
    status: row.status,
    attempt: row.attempt,
    progress_percent: row.progressPercent,
    progress_message: row.progressMessage,
    output_file_ids: row.outputFileIds,
    result: row.result,
    error_message: row.errorMessage,
    error_code: row.errorCode,
    started_at: row.startedAt,
    finished_at: row.finishedAt,
    updated_at: row.updatedAt,
    queued_at: row.queuedAt,
    abandoned: row.abandoned,
    queue_job_id: row.queueJobId,
    queue_retry_count: row.queueRetryCount,
    worker_id: row.workerId,
    version: row.version,
  };
}

/** The row as a view (a copy: later changes to the row do not reach it). */
export function viewOfRow(row: JobRow): JobView {
  const { queueJobId, queueRetryCount, workerId, queuedAt, ...view } = row;
  return view;
}

function rowOf(stored: StoredJobRow): JobRow {
  return {
    ...jobViewOfStored(stored),
    queueJobId: stored.queue_job_id ?? null,
    queueRetryCount: stored.queue_retry_count ?? null,
    workerId: stored.worker_id ?? null,
    queuedAt: dateOrNull(stored.queued_at),
  };
}

function dateOrNull(value: Date | string | null): Date | null {
  return value === null ? null : new Date(value);
}
