import { LockMode } from '@mikro-orm/core';
import type pg from 'pg';
import { pipelinedTransaction, sendingThrough } from '../platform/db/pipelined-transaction.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import type { Db } from 'pg-boss';
import { namedStatementsDb, transactionDb, type PgBoss } from '../platform/queue/pg-boss.ts';
import type { JobQueuePauses } from './job-queue-pauses.ts';
import { Job } from './entities.ts';
import { jobRowsWrite, lockedRowsOf, lockJobRowsStatement, lockJobRowsWithPause, touchRow, writeJobRows, type JobRow } from './job-rows.ts';
import type { JobChanges } from './job-changes.ts';
import { isFinal, type JobView } from './job-view.ts';
import { nextQueueEntry, type FetchedQueueEntry, type QueueEntryData } from '../platform/queue/queue-entries.ts';
import { newId } from '../platform/ids.ts';
import { jobErrorCodes } from './job-reasons.ts';

export interface StartInput {
  jobId: string;
  /** The pg-boss entry that was fetched. */
  queueJobId: string;
  /** pg-boss's retry count of that entry. */
  retryCount: number;
  workerId: string;
  /** Set when an external worker claims the job: the attempt starts with this lease. */
  lease?: NewLease;
}

/** The lease an external worker's attempt starts with. */
export interface NewLease {
  /** The worker's own id (StartInput.workerId is the name the job row shows). */
  workerId: string;
  accountId: string;
  queue: string;
  leaseMs: number;
  timeoutMs: number;
}

/** Identifies one attempt: later writes of a superseded attempt are ignored. */
export interface AttemptRef {
  jobId: string;
  attempt: number;
  workerId: string;
}

/** A queue entry fetched by this instance's worker loop, with its attempt's start. */
export interface TakenEntry {
  entry: FetchedQueueEntry;
  start: StartOutcome;
}

export type StartOutcome =
  | { kind: 'started'; job: JobView; attempt: AttemptRef }
  /** Nothing to run: the job is gone, finished, cancelled, or this queue entry is stale. */
  | { kind: 'skip'; reason: string }
  /** The queue is paused: the job was put back to wait for the resume. */
  | { kind: 'deferred' };

export type AttemptResult =
  | { kind: 'succeeded'; result: Record<string, unknown>; outputFileIds?: string[] }
  | { kind: 'failed'; message: string; code: string; retryable: boolean; abandoned?: boolean }
  | { kind: 'cancelled'; abandoned: boolean }
  /** Stopped by a shutdown: queued again without counting the attempt. */
  | { kind: 'interrupted' };

/** How long a job fetched from a paused queue waits before it may be fetched again. */
const deferDelayMs = 2000;

/** What pg-boss should do with the queue entry of the attempt. */
export type QueueDisposition = 'completed' | 'failed' | 'deadletter';

/**
 * The transitions of a job's attempts: start, progress, finish. The job row mirrors
 * each one (status, attempt, times, error) with an event, and decides, with pg-boss,
 * whether another attempt follows.
 */
export class JobAttempts {
  readonly #boss: PgBoss;
  readonly #changes: JobChanges;
  readonly #pauses: JobQueuePauses;
  readonly #pipeliningPool: pg.Pool;

  constructor(deps: {
    boss: PgBoss;
    changes: JobChanges;
    pauses: JobQueuePauses;
    /**
     * Connections in pg's pipeline mode: the runner's batches are taken there (fetch and
     * start in one transaction, with named statements) and their attempts end there in two
     * round trips (#finishPipelined).
     */
    pipeliningPool: pg.Pool;
  }) {
    this.#boss = deps.boss;
    this.#changes = deps.changes;
    this.#pauses = deps.pauses;
    this.#pipeliningPool = deps.pipeliningPool;
  }

  /**
   * Starts the next attempts of a batch of queue entries (a worker fetches them in
   * batches) in one transaction: one locking read that also reads the pauses, one
   * write, one commit. The pause check happens here, in the same transaction, so a worker that
   * fetched a job just as its queue was paused puts it back instead of running it.
   */
  async startMany(em: EntityManager, inputs: StartInput[]): Promise<StartOutcome[]> {
    return this.#changes.transact(em, (tx) => this.#startIn(tx, inputs));
  }

  /**
   * Fetches up to `batchSize` entries of `queue` and starts their attempts, in one
   * transaction: the fetch's claim on the entries, the job rows and their events commit
   * together (one commit instead of pg-boss's autocommitted fetch and then ours), and an
   * entry with nothing to run (a skipped start) is completed in it too. A deferred job's
   * entry is completed with its requeue. If any of the jobs is locked by another
   * transaction (a cancel holding the row and waiting for the entry this fetch claimed),
   * the whole transaction rolls back at once instead of waiting: the entries stay as they
   * were, to be fetched again (`lockNotAvailable` is thrown).
   */
  async takeBatch(queue: string, batchSize: number, workerId: string): Promise<TakenEntry[]> {
    return this.#takeOn(this.#pipeliningPool, queue, batchSize, workerId);
  }

  async #startIn(tx: EntityManager, inputs: StartInput[]): Promise<StartOutcome[]> {
    const locked = await lockJobRowsWithPause(
      tx,
      inputs.map((input) => input.jobId),
      this.#pauses.pausedCondition('jobs.type'),
    );
    const { outcomes, changed, views, leases } = await this.#decideStarts(transactionDb(tx), inputs, locked);
    await writeJobRows(tx, changed, views);
    await insertLeases(tx, leases);
    return outcomes;
  }

  /**
   * takeBatch on a connection of `pool`, in three round trips instead of an ORM
   * transaction's five: BEGIN goes out with pg-boss's fetch, and the write of the rows and
   * events with the COMMIT; the locking read and the write are named statements, and so
   * are pg-boss's, so that PostgreSQL parses and plans each once per connection instead
   * of at every batch.
   */
  async #takeOn(pool: pg.Pool, queue: string, batchSize: number, workerId: string): Promise<TakenEntry[]> {
    const client = await pool.connect();
    const db = namedStatementsDb(client);
    let failure: unknown;
    try {
      const begun = client.query('begin');
      // Awaited below; until then (a fetch that fails first) its rejection is not an unhandled one.
      begun.catch(() => {});
      const entries = await this.#boss.fetch<QueueEntryData>(queue, { batchSize, db });
      await begun;
      if (entries.length === 0) {
        await client.query('commit');
        return [];
      }
      const inputs = entries.map((entry) => ({ jobId: entry.data.jobId, queueJobId: entry.id, retryCount: entry.retryCount, workerId }));
      const statement = lockJobRowsStatement(
        inputs.map((input) => input.jobId),
        this.#pauses.pausedCondition('jobs.type'),
        true,
      );
      const locked = lockedRowsOf((await client.query(statement)).rows);
      const { outcomes, changed, views } = await this.#decideStarts(db, inputs, locked);
      const pending: Promise<unknown>[] = [];
      const include = (promise: Promise<unknown>) => {
        // Settled below, or abandoned with the rollback: never an unhandled rejection.
        promise.catch(() => {});
        pending.push(promise);
      };
      if (changed.length > 0) include(client.query(jobRowsWrite(changed, views)));
      const settled = entries.filter((_, index) => outcomes[index]!.kind !== 'started');
      if (settled.length > 0) {
        const { out, called } = sendingThrough(db, (through) =>
          this.#boss.complete(
            queue,
            settled.map(({ id, retryCount }) => ({ id, retryCount })),
            null,
            { db: through },
          ),
        );
        include(called);
        await out;
      }
      include(client.query('commit'));
      const results = await Promise.allSettled(pending);
      const rejected = results.find((result) => result.status === 'rejected');
      if (rejected) throw rejected.reason;
      this.#changes.sequenceCommitted();
      return entries.map((entry, index) => ({ entry, start: outcomes[index]! }));
    } catch (error) {
      failure = error;
      await client.query('rollback').catch(() => {});
      throw error;
    } finally {
      // A statement's own failure carries PostgreSQL's code; anything else may have left the connection unusable.
      client.release(failure !== undefined && typeof (failure as { code?: unknown } | null)?.code !== 'string');
    }
  }

  /** What starting each of `inputs` means, given their rows locked (and their queues' pauses read) in the caller's transaction. */
  async #decideStarts(db: Db, inputs: StartInput[], locked: { row: JobRow; paused: boolean }[]) {
    const byId = new Map(locked.map(({ row }) => [row.id, row]));
    const paused = new Set(locked.filter((item) => item.paused).map(({ row }) => row.type));
    const outcomes: StartOutcome[] = [];
    const views: JobView[] = [];
    const leases: StoredLease[] = [];
    const changed: JobRow[] = [];
    for (const input of inputs) {
      const row = byId.get(input.jobId);
      const outcome = await this.#startLocked(db, row, input, paused.has(row?.type ?? ''));
      outcomes.push(outcome);
      if (!row || outcome.kind === 'skip') continue;
      changed.push(row);
      // A deferred job goes back to its queue without an event: nothing a watcher sees changed.
      if (outcome.kind !== 'started') continue;
      views.push(outcome.job);
      if (input.lease) leases.push(leaseOf(row, input, input.lease));
    }
    return { outcomes, changed, views, leases };
  }

  async #startLocked(db: Db, job: JobRow | undefined, input: StartInput, paused: boolean): Promise<StartOutcome> {
    if (!job) return { kind: 'skip', reason: 'the job no longer exists' };
    if (job.queueJobId !== input.queueJobId) return { kind: 'skip', reason: 'the queue entry was replaced' };
    if (isFinal(job.status)) return { kind: 'skip', reason: `the job is ${job.status}` };
    // The same delivery twice (the entry's retry count is what pg-boss bumps on redelivery).
    if (job.status === 'running' && job.queueRetryCount != null && input.retryCount <= job.queueRetryCount) {
      return { kind: 'skip', reason: 'the attempt is already running' };
    }
    if (paused) {
      job.status = 'queued';
      // Not due at once: a worker that has not yet heard of the pause must not spin on it.
      await this.#requeueThrough(db, job, deferDelayMs);
      return { kind: 'deferred' };
    }
    if (job.status === 'running') {
      // pg-boss gave the job out again: the worker of the previous attempt stopped answering.
      job.errorMessage = `attempt ${job.attempt} was lost: the worker running it stopped answering`;
      job.errorCode = jobErrorCodes.WORKER_LOST;
    }
    const attempt = job.attempt + 1;
    job.status = 'running';
    job.attempt = attempt;
    job.queueRetryCount = input.retryCount;
    job.startedAt = new Date();
    job.workerId = input.workerId;
    job.abandoned = false;
    return {
      kind: 'started',
      job: touchRow(job),
      attempt: { jobId: job.id, attempt, workerId: input.workerId },
    };
  }

  /** Records progress; false when the attempt no longer holds the job (stop writing). */
  async reportProgress(em: EntityManager, ref: AttemptRef, percent: number, message: string): Promise<boolean> {
    return this.#changes.transact(em, async (tx) => {
      const job = await this.#lockAttempt(tx, ref);
      if (!job) return false;
      this.progressInTransaction(tx, job, percent, message);
      return true;
    });
  }

  /** Records the progress of the attempt holding `job`, which the caller locked in `tx`. */
  progressInTransaction(tx: EntityManager, job: Job, percent: number, message: string): void {
    job.progressPercent = Math.max(0, Math.min(100, Math.round(percent)));
    job.progressMessage = message.slice(0, 500);
    this.#changes.record(tx, job, 'updated');
  }

  /** Is a cancellation pending for this attempt's job? */
  async cancelRequested(em: EntityManager, jobIds: string[]): Promise<string[]> {
    if (jobIds.length === 0) return [];
    const jobs = await em.find(Job, { id: { $in: jobIds }, cancelRequested: true, status: 'running' }, { fields: ['id'] });
    return jobs.map((job) => job.id);
  }

  /** Ends the attempt; the answer tells pg-boss whether the queue entry is done or retried. */
  async finish(ref: AttemptRef, result: AttemptResult): Promise<QueueDisposition> {
    return (await this.finishMany([{ ref, result }]))[0]!;
  }

  /**
   * Ends several attempts in one transaction on a pipelining connection: one locking read,
   * one write of the rows with their events, the completion of their queue entries, the
   * numbering of the events (#finishPipelined).
   */
  async finishMany(items: { ref: AttemptRef; result: AttemptResult }[]): Promise<QueueDisposition[]> {
    if (items.length === 0) return [];
    return this.#finishPipelined(this.#pipeliningPool, items);
  }

  /**
   * finishMany in two round trips on a pipelining connection: BEGIN with the locking read;
   * then the write of the rows and events, the completion of the queue entries, the
   * numbering of the events (EventSequencer.inTransaction) and COMMIT, in one write. The
   * same statements in the same order as the ORM's transaction, plus the numbering: the
   * events reach the hub with this commit's NOTIFY, without a sequencing transaction after
   * it (its round trip and its WAL flush). All or nothing, as pipelinedTransaction is.
   */
  async #finishPipelined(pool: pg.Pool, items: { ref: AttemptRef; result: AttemptResult }[]): Promise<QueueDisposition[]> {
    let dispositions: QueueDisposition[] = [];
    let numbered: Promise<pg.QueryResult> | undefined;
    await pipelinedTransaction(pool, async ({ send, sendThrough, flush }) => {
      const lock = lockJobRowsStatement(
        items.map((item) => item.ref.jobId),
        'false',
        false,
      );
      const locked = send(lock.text, lock.values);
      flush();
      const rows = lockedRowsOf((await locked).rows).map(({ row }) => row);
      const { held, positions, fetched } = heldAttempts(rows, items);
      const ended: { disposition: QueueDisposition; view: JobView }[] = [];
      for (const { row, result } of held) {
        const { disposition, requeue } = applyResult(row, result);
        if (requeue) await sendThrough((db) => this.#requeueThrough(db, row));
        ended.push({ disposition, view: touchRow(row) });
      }
      dispositions = dispositionsOf(items.length, positions, ended);
      if (held.length === 0) return;
      const write = jobRowsWrite(
        held.map((item) => item.row),
        ended.map((end) => end.view),
      );
      send(write.text, write.values);
      for (const [queue, ofQueue] of Map.groupBy(completedEntries(fetched, ended), (entry) => entry.queue)) {
        await sendThrough((db) =>
          this.#boss.complete(
            queue,
            ofQueue.map(({ id, retryCount }) => ({ id: id!, retryCount })),
            null,
            { db },
          ),
        );
      }
      const sequencing = this.#changes.sequenceInTransaction();
      numbered = send(sequencing.text, sequencing.values);
    });
    if (numbered) this.#changes.sequencedInTransaction(Number((await numbered).rows[0]?.assigned ?? 0));
    return dispositions;
  }

  /**
   * Ends the attempts holding `rows`, which the caller locked in `tx`: the rows and their
   * events are written in one statement.
   */
  async finishRows(
    tx: EntityManager,
    items: { row: JobRow; result: AttemptResult }[],
  ): Promise<{ disposition: QueueDisposition; view: JobView }[]> {
    const ended: { disposition: QueueDisposition; view: JobView }[] = [];
    for (const { row, result } of items) {
      const { disposition, requeue } = applyResult(row, result);
      if (requeue) await this.#requeue(tx, row);
      ended.push({ disposition, view: touchRow(row) });
    }
    await writeJobRows(
      tx,
      items.map((item) => item.row),
      ended.map((end) => end.view),
    );
    return ended;
  }

  /** Ends the attempt holding `job`, which the caller locked in `tx`. */
  async finishInTransaction(tx: EntityManager, job: Job, result: AttemptResult): Promise<{ disposition: QueueDisposition; view: JobView }> {
    const { disposition, requeue } = applyResult(job, result);
    if (requeue) await this.#requeue(tx, job);
    return { disposition, view: this.#changes.record(tx, job, 'updated') };
  }

  /** The job, locked, if this attempt still holds it. */
  async #lockAttempt(tx: EntityManager, ref: AttemptRef): Promise<Job | undefined> {
    const job = await tx.findOne(Job, ref.jobId, { lockMode: LockMode.PESSIMISTIC_WRITE });
    return job && holds(job, ref) ? job : undefined;
  }

  /** A fresh queue entry for the job, so that the current one can be settled as done. */
  async #requeue(tx: EntityManager, job: Job | JobRow, delayMs = 0): Promise<void> {
    await this.#requeueThrough(transactionDb(tx), job, delayMs);
  }

  async #requeueThrough(db: Db, job: Job | JobRow, delayMs = 0): Promise<void> {
    const { data, ...options } = nextQueueEntry(job, delayMs > 0 ? new Date(Date.now() + delayMs) : undefined);
    await this.#boss.send(job.type, data, { ...options, db });
  }
}

/**
 * The locked rows whose attempts `items` still hold (a superseded attempt, or the same one
 * twice, changes nothing), with their positions in `items` and the queue entries they were
 * fetched with (read before a requeue gives a job a fresh one).
 */
function heldAttempts(rows: JobRow[], items: { ref: AttemptRef; result: AttemptResult }[]) {
  const byId = new Map(rows.map((row) => [row.id, row]));
  const held: { row: JobRow; result: AttemptResult }[] = [];
  const positions: number[] = [];
  for (const [index, { ref, result }] of items.entries()) {
    const row = byId.get(ref.jobId);
    if (!row || !holds(row, ref) || held.some((item) => item.row === row)) continue;
    held.push({ row, result });
    positions.push(index);
  }
  const fetched = held.map(({ row }) => ({ queue: row.type, id: row.queueJobId, retryCount: row.queueRetryCount ?? 0 }));
  return { held, positions, fetched };
}

/** What pg-boss does with each of `count` items' entries: the held ones as they ended, the others 'completed'. */
function dispositionsOf(count: number, positions: number[], ended: { disposition: QueueDisposition }[]): QueueDisposition[] {
  const dispositions = Array.from({ length: count }, (): QueueDisposition => 'completed');
  for (const [index, position] of positions.entries()) dispositions[position] = ended[index]!.disposition;
  return dispositions;
}

/** The fetched entries of the attempts that ended as 'completed' (settled in the finishing transaction). */
function completedEntries<T extends { id: string | null }>(fetched: T[], ended: { disposition: QueueDisposition }[]): T[] {
  return fetched.filter((entry, index) => entry.id !== null && ended[index]!.disposition === 'completed');
}

/** Whether the attempt `ref` still holds the job (a superseded one must not change it). */
function holds(job: Job | JobRow, ref: AttemptRef): boolean {
  return job.status === 'running' && job.attempt === ref.attempt && job.workerId === ref.workerId;
}

/** The fields of a job an attempt's end changes: a Job entity or a plain JobRow. */
type AttemptState = Pick<
  Job,
  | 'status'
  | 'result'
  | 'outputFileIds'
  | 'finishedAt'
  | 'errorMessage'
  | 'errorCode'
  | 'progressPercent'
  | 'abandoned'
  | 'attempt'
  | 'maxAttempts'
  | 'workerId'
  | 'cancelRequested'
>;

/**
 * Applies the attempt's result to the job; says what pg-boss does with the entry and
 * whether the job needs a fresh one (an interrupted attempt, which does not count).
 */
function applyResult(job: AttemptState, result: AttemptResult): { disposition: QueueDisposition; requeue: boolean } {
  const now = new Date();
  switch (result.kind) {
    case 'succeeded':
      Object.assign(job, {
        status: 'succeeded',
        result: result.result,
        outputFileIds: result.outputFileIds ?? [],
        finishedAt: now,
        errorMessage: null,
        errorCode: null,
        progressPercent: 100,
      });
      return { disposition: 'completed', requeue: false };
    case 'cancelled':
      Object.assign(job, { status: 'cancelled', finishedAt: now, abandoned: result.abandoned });
      return { disposition: 'completed', requeue: false };
    case 'failed': {
      job.errorMessage = result.message.slice(0, 4000);
      job.errorCode = result.code;
      job.abandoned = result.abandoned ?? false;
      const retried = result.retryable && job.attempt < job.maxAttempts && !job.cancelRequested;
      if (retried) {
        job.status = 'queued';
        job.workerId = null;
        return { disposition: 'failed', requeue: false };
      }
      Object.assign(job, { status: 'failed', finishedAt: now });
      return { disposition: job.attempt < job.maxAttempts ? 'deadletter' : 'failed', requeue: false };
    }
    case 'interrupted':
      Object.assign(job, { status: 'queued', attempt: job.attempt - 1, workerId: null });
      return { disposition: 'completed', requeue: true };
  }
}

interface StoredLease {
  id: string;
  job_id: string;
  attempt: number;
  worker_id: string;
  account_id: string;
  queue: string;
  queue_entry_id: string;
  lease_ms: number;
  claimed_at: Date;
  expires_at: Date;
  deadline_at: Date;
}

/** The lease an external worker's attempt of `job` (just started) begins with. */
function leaseOf(job: JobRow, input: StartInput, lease: NewLease): StoredLease {
  const now = job.startedAt!;
  const deadlineAt = new Date(now.getTime() + lease.timeoutMs);
  return {
    id: newId(),
    job_id: job.id,
    attempt: job.attempt,
    worker_id: lease.workerId,
    account_id: lease.accountId,
    queue: lease.queue,
    queue_entry_id: input.queueJobId,
    lease_ms: lease.leaseMs,
    claimed_at: now,
    expires_at: new Date(Math.min(now.getTime() + lease.leaseMs, deadlineAt.getTime())),
    deadline_at: deadlineAt,
  };
}

async function insertLeases(tx: EntityManager, leases: StoredLease[]): Promise<void> {
  if (leases.length === 0) return;
  await tx.execute(
    `insert into job_leases (id, job_id, attempt, worker_id, account_id, queue, queue_entry_id, lease_ms, claimed_at, expires_at, deadline_at)
     select id, job_id, attempt, worker_id, account_id, queue, queue_entry_id, lease_ms, claimed_at, expires_at, deadline_at
       from jsonb_to_recordset(?::jsonb) as l(id uuid, job_id uuid, attempt int, worker_id varchar(128), account_id uuid, queue varchar(64),
            queue_entry_id uuid, lease_ms int, claimed_at timestamptz, expires_at timestamptz, deadline_at timestamptz)`,
    [JSON.stringify(leases)],
  );
}
