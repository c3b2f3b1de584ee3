import { LockMode } from '@mikro-orm/core';
import { anyTextOf, anyUuidOf } from '../platform/db/json-lists.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { failedPrecondition, notFound } from '../platform/domain-errors.ts';
import { isUuid } from '../platform/ids.ts';
import type { Logger } from '../platform/logger.ts';
import { transactionDb, type PgBoss } from '../platform/queue/pg-boss.ts';
import type { QueueEntryData } from '../platform/queue/queue-entries.ts';
import { Job, JobLease, type LogLevelName } from './entities.ts';
import type { AttemptResult, JobAttempts, QueueDisposition } from './job-attempts.ts';
import type { JobChanges } from './job-changes.ts';
import type { JobFiles } from './job-files.ts';
import { appendLogLines } from './job-logs.ts';
import { jobErrorCodes, jobReasons } from './job-reasons.ts';
import { jobView, type JobView } from './job-view.ts';
import { lockJobRows, type JobRow } from './job-rows.ts';
import { Batcher, type Settled } from './batcher.ts';

/** Who holds a lease: an external worker (its own id) and the account it calls as. */
export interface LeaseHolder {
  /** Empty on calls about one job: then any worker of the account that holds the lease will do. */
  workerId: string;
  accountId: string;
}

/** A job handed to an external worker. */
export interface ClaimedJob {
  job: JobView;
  leaseExpiresAt: Date;
  deadlineAt: Date;
}

/** A lease a heartbeat extended. */
export interface ExtendedLease {
  jobId: string;
  attempt: number;
  expiresAt: Date;
}

export interface HeartbeatOutcome {
  leases: ExtendedLease[];
  /** Named by the worker, but no longer its own. */
  released: string[];
  /** Held jobs whose owner asked for a cancel: their leases are no longer extended. */
  cancels: { jobId: string; reason: string }[];
  /** Active leases the worker holds (named or not). */
  held: number;
  /** The shortest lease among them, to pace the worker's heartbeats. */
  shortestLeaseMs: number | undefined;
}

/** A worker's log line. */
export interface WorkerLogLine {
  message: string;
  level: LogLevelName;
  createdAt: Date;
}

/** The timing of a declared type that leases need. */
export interface LeasedTypePolicy {
  leaseMs: number;
  timeoutMs: number;
}

export interface JobLeasesDeps {
  boss: PgBoss;
  attempts: JobAttempts;
  changes: JobChanges;
  files: JobFiles;
  /** The policy of a declared (external) type; undefined for any other queue. */
  policyOf: (queue: string) => LeasedTypePolicy | undefined;
  /** Told when each lease handed out or extended here lapses (the sweeper's alarm). */
  watchExpiry: (expiresAt: Date) => void;
  logger: Logger;
}

/** The name an external worker goes by in job rows (`jobs.worker_id`), distinct from instance ids. */
export function leaseHolderName(workerId: string): string {
  return `worker/${workerId}`;
}

/** Most lapsed leases ended in one transaction. */
const sweepBatchSize = 100;
/** Most CompleteJob / FailJob calls ended in one transaction. */
const endGroupSize = 200;

/**
 * Jobs of declared types as external workers run them: claimed from pg-boss with a lease,
 * kept by heartbeats, ended by the worker (complete, fail) or by the lease lapsing.
 * Every change goes through JobAttempts, like an in-process attempt, so a job's events,
 * attempts and retries read the same whoever ran it; and every end of a lease settles
 * its pg-boss entry in the same transaction, so the queue and the job row never disagree.
 * Locks are taken jobs first, then leases, everywhere.
 */
export class JobLeases {
  readonly #deps: JobLeasesDeps;
  readonly #logger: Logger;

  readonly #endings: Batcher<PendingEnd, JobView>;

  constructor(deps: JobLeasesDeps) {
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'job-leases' });
    this.#endings = new Batcher(endGroupSize, (em, items) => this.#endHeld(em, items));
  }

  /** Whether external workers may claim from `queue` (it is a declared type). */
  isClaimable(queue: string): boolean {
    return this.#deps.policyOf(queue) !== undefined;
  }

  /**
   * Claims up to `maxJobs` ready jobs of one queue. pg-boss hands each queue entry to one
   * fetcher only (SKIP LOCKED), by priority then age, honouring start times; the attempt
   * starts in the same transaction as its lease, which re-checks the queue's pause.
   */
  async claim(em: EntityManager, holder: LeaseHolder, queue: string, maxJobs: number): Promise<ClaimedJob[]> {
    const policy = this.#deps.policyOf(queue);
    if (!policy || maxJobs <= 0) return [];
    const { boss, attempts } = this.#deps;
    const entries = await boss.fetch<QueueEntryData>(queue, { batchSize: maxJobs });
    if (entries.length === 0) return [];
    const fenced = (entry: (typeof entries)[number]) => ({ id: entry.id, retryCount: entry.retryCount });
    let outcomes: Awaited<ReturnType<JobAttempts['startMany']>>;
    try {
      outcomes = await attempts.startMany(
        em,
        entries.map((entry) => ({
          jobId: entry.data.jobId,
          queueJobId: entry.id,
          retryCount: entry.retryCount,
          workerId: leaseHolderName(holder.workerId),
          lease: { workerId: holder.workerId, accountId: holder.accountId, queue, ...policy },
        })),
      );
    } catch (error) {
      // The entries go back to pg-boss, which offers them again after the retry delay.
      await boss.fail(queue, entries.map(fenced)).catch((failError: unknown) => {
        this.#logger.warn({ err: failError, queue }, 'could not hand back fetched entries; pg-boss expires them');
      });
      throw error;
    }
    const unstarted = entries.filter((_, index) => outcomes[index]!.kind !== 'started');
    // Gone, finished or deferred by a pause (which queued a fresh entry): this entry is done.
    if (unstarted.length > 0) await boss.complete(queue, unstarted.map(fenced));
    const claimed = outcomes.flatMap((outcome) => {
      if (outcome.kind !== 'started') return [];
      const startedAt = outcome.job.startedAt!.getTime();
      const deadlineAt = startedAt + policy.timeoutMs;
      return [
        {
          job: outcome.job,
          leaseExpiresAt: new Date(Math.min(startedAt + policy.leaseMs, deadlineAt)),
          deadlineAt: new Date(deadlineAt),
        },
      ];
    });
    for (const { leaseExpiresAt } of claimed) this.#deps.watchExpiry(leaseExpiresAt);
    return claimed;
  }

  /**
   * Extends the leases the worker still holds among `jobIds` (never past the attempt's
   * deadline, never for a job whose cancel was asked), and tells it what it no longer holds.
   */
  async heartbeat(em: EntityManager, holder: LeaseHolder, jobIds: string[]): Promise<HeartbeatOutcome> {
    const now = new Date();
    const named = [...new Set(jobIds.filter(isUuid))];
    const extended =
      named.length === 0
        ? []
        : await em.execute<{ job_id: string; attempt: number; expires_at: Date }[]>(
            `update job_leases l set expires_at = least(?::timestamptz + l.lease_ms * interval '1 millisecond', l.deadline_at)
               from jobs j
              where j.id = l.job_id and l.job_id ${anyUuidOf} and l.worker_id = ? and l.account_id = ?
                and l.ended_at is null and l.expires_at > ? and not j.cancel_requested
             returning l.job_id, l.attempt, l.expires_at`,
            [now, JSON.stringify(named), holder.workerId, holder.accountId, now],
          );
    const active = await em.execute<{ job_id: string; lease_ms: number; cancel_requested: boolean; cancel_reason: string | null }[]>(
      `select l.job_id, l.lease_ms, j.cancel_requested, j.cancel_reason from job_leases l join jobs j on j.id = l.job_id
        where l.worker_id = ? and l.account_id = ? and l.ended_at is null and l.expires_at > ?`,
      [holder.workerId, holder.accountId, now],
    );
    for (const row of extended) this.#deps.watchExpiry(new Date(row.expires_at));
    const activeIds = new Set(active.map((row) => row.job_id));
    return {
      leases: extended.map((row) => ({ jobId: row.job_id, attempt: row.attempt, expiresAt: new Date(row.expires_at) })),
      released: jobIds.filter((id) => !activeIds.has(id)),
      cancels: active.filter((row) => row.cancel_requested).map((row) => ({ jobId: row.job_id, reason: row.cancel_reason ?? '' })),
      held: active.length,
      shortestLeaseMs: active.length === 0 ? undefined : Math.min(...active.map((row) => row.lease_ms)),
    };
  }

  /** Active leases per worker id, for the given workers. */
  async heldCounts(em: EntityManager, workerIds: string[]): Promise<Map<string, number>> {
    if (workerIds.length === 0) return new Map();
    const rows = await em.execute<{ worker_id: string; held: string }[]>(
      `select worker_id, count(*) as held from job_leases where worker_id ${anyTextOf} and ended_at is null group by worker_id`,
      [JSON.stringify(workerIds)],
    );
    return new Map(rows.map((row) => [row.worker_id, Number(row.held)]));
  }

  /** Records progress of a held job; tells the worker whether its owner asked for a cancel. */
  async progress(
    em: EntityManager,
    holder: LeaseHolder,
    jobId: string,
    percent: number,
    message: string,
  ): Promise<{ cancelRequested: boolean }> {
    return this.#deps.changes.transact(em, async (tx) => {
      const { job } = await this.#lockHeld(tx, holder, jobId);
      this.#deps.attempts.progressInTransaction(tx, job, percent, message);
      return { cancelRequested: job.cancelRequested };
    });
  }

  /** Appends lines to a held job's log (the log in-process handlers write); returns the last line's number. */
  async appendLogs(em: EntityManager, holder: LeaseHolder, jobId: string, lines: WorkerLogLine[]): Promise<number> {
    const lease = await this.#checkHeld(em, holder, jobId);
    return appendLogLines(
      em,
      jobId,
      lines.map((line) => ({ ...line, attempt: lease.attempt })),
    );
  }

  /**
   * Ends a held job's attempt with its result; the outputs become the owner's files in
   * the same transaction. A job whose cancel was asked ends CANCELLED, outputs untouched.
   */
  async complete(
    em: EntityManager,
    holder: LeaseHolder,
    jobId: string,
    result: Record<string, unknown>,
    outputFileIds: string[],
  ): Promise<JobView> {
    if (outputFileIds.length === 0) {
      return this.#endBatched(em, holder, jobId, (job) =>
        job.cancelRequested ? { kind: 'cancelled', abandoned: false } : { kind: 'succeeded', result, outputFileIds: [] },
      );
    }
    return this.#deps.changes.transact(em, async (tx) => {
      const { job, lease } = await this.#lockHeld(tx, holder, jobId);
      let outcome: AttemptResult = { kind: 'cancelled', abandoned: false };
      if (!job.cancelRequested) {
        const outputs = await this.#deps.files.adoptOutputs(tx, jobView(job), holder.accountId, outputFileIds, 'output_file_ids');
        outcome = { kind: 'succeeded', result, outputFileIds: outputs };
      }
      return this.#end(tx, job, lease, outcome);
    });
  }

  /** Ends a held job's attempt with an error: retried or failed by its policy; CANCELLED when a cancel was asked. */
  fail(
    em: EntityManager,
    holder: LeaseHolder,
    jobId: string,
    failure: { message: string; code: string; retryable: boolean },
  ): Promise<JobView> {
    return this.#endBatched(em, holder, jobId, (job) =>
      job.cancelRequested ? { kind: 'cancelled', abandoned: false } : { kind: 'failed', ...failure },
    );
  }

  /** Ends the held attempt in the next group of CompleteJob / FailJob calls. */
  #endBatched(em: EntityManager, holder: LeaseHolder, jobId: string, outcome: PendingEnd['outcome']): Promise<JobView> {
    if (!isUuid(jobId)) return Promise.reject(notFound('job'));
    return this.#endings.add(em, { holder, jobId, outcome });
  }

  /**
   * Ends the held attempts of a group of CompleteJob / FailJob calls that arrived
   * together, in one transaction: jobs locked, then their leases (the order used
   * everywhere), the rows and their events written in one statement, the leases ended in
   * another, and the pg-boss entries settled with one call per queue and disposition.
   * A call whose lease no longer holds its job is refused on its own; the others go on.
   */
  async #endHeld(em: EntityManager, items: PendingEnd[]): Promise<Settled<JobView>[]> {
    const { attempts, changes } = this.#deps;
    return changes.transact(em, async (tx) => {
      const jobIds = [...new Set(items.map((item) => item.jobId))];
      const rows = new Map((await lockJobRows(tx, jobIds)).map((row) => [row.id, row]));
      const leases = await tx.execute<StoredLease[]>(
        `select id, job_id, attempt, worker_id, account_id, queue, queue_entry_id, claimed_at, expires_at, ended_at from job_leases
          where job_id ${anyUuidOf} order by id for update`,
        [JSON.stringify(jobIds)],
      );
      const now = new Date();
      const settled: Settled<JobView>[] = [];
      const held: { index: number; row: JobRow; lease: StoredLease; result: AttemptResult }[] = [];
      for (const [index, item] of items.entries()) {
        const row = rows.get(item.jobId);
        const lease = row ? latestLeaseOf(leases, item.holder, item.jobId) : undefined;
        if (!row || !lease) {
          settled.push({ error: notFound('job') });
          continue;
        }
        const holds =
          !lease.ended_at &&
          new Date(lease.expires_at).getTime() > now.getTime() &&
          row.status === 'running' &&
          row.attempt === lease.attempt &&
          row.workerId === leaseHolderName(lease.worker_id);
        if (!holds) {
          settled.push({ error: leaseExpired(lease) });
          continue;
        }
        // Ended here: a second call about the same lease in this group is told it ended.
        lease.ended_at = now;
        held.push({ index, row, lease, result: item.outcome(row) });
        settled.push({ error: undefined });
      }
      if (held.length === 0) return settled;
      const ended = await attempts.finishRows(tx, held);
      await tx.execute(`update job_leases set ended_at = ? where id ${anyUuidOf}`, [
        now,
        JSON.stringify(held.map((item) => item.lease.id)),
      ]);
      const settlements = new Map<
        string,
        { queue: string; disposition: QueueDisposition; entries: { id: string; retryCount: number }[] }
      >();
      for (const [position, { index, row, lease }] of held.entries()) {
        const { disposition, view } = ended[position]!;
        settled[index] = { value: view };
        const key = `${disposition}\u0000${lease.queue}`;
        const settlement = settlements.get(key) ?? { queue: lease.queue, disposition, entries: [] };
        settlement.entries.push({ id: lease.queue_entry_id, retryCount: row.queueRetryCount ?? 0 });
        settlements.set(key, settlement);
      }
      for (const { queue, disposition, entries } of settlements.values()) await this.#settleEntries(tx, queue, entries, disposition);
      return settled;
    });
  }

  /**
   * Ends leases that lapsed: past the deadline the attempt failed with DEADLINE_EXCEEDED,
   * a cancelled job ends CANCELLED (the worker never acknowledged), any other is
   * LEASE_EXPIRED and retried by its type's policy. Instances share the work (SKIP
   * LOCKED). Returns how many leases ended.
   */
  async expireLapsed(em: EntityManager): Promise<number> {
    return this.#deps.changes.transact(em, async (tx) => {
      const now = new Date();
      const rows = await tx.execute<{ id: string; job_id: string }[]>(
        `select l.id, l.job_id from job_leases l join jobs j on j.id = l.job_id
          where l.ended_at is null and l.expires_at <= ?
          order by l.job_id limit ? for update of j, l skip locked`,
        [now, sweepBatchSize],
      );
      if (rows.length === 0) return 0;
      const jobs = new Map((await tx.find(Job, { id: { $in: rows.map((row) => row.job_id) } })).map((job) => [job.id, job]));
      const leases = await tx.find(JobLease, { id: { $in: rows.map((row) => row.id) } });
      for (const lease of leases) {
        const job = jobs.get(lease.job)!;
        if (job.status !== 'running' || job.attempt !== lease.attempt) {
          // The job moved on without the lease (deleted rows take their leases with them).
          lease.endedAt = now;
          continue;
        }
        await this.#end(tx, job, lease, lapsedOutcome(job, lease, now));
      }
      await tx.flush();
      return rows.length;
    });
  }

  /** The earliest time an active lease lapses, if any: when the sweeper must look next. */
  async nextExpiry(em: EntityManager): Promise<Date | undefined> {
    const [row] = await em.execute<{ next: Date | null }[]>('select min(expires_at) as next from job_leases where ended_at is null');
    return row?.next ? new Date(row.next) : undefined;
  }

  async #end(tx: EntityManager, job: Job, lease: JobLease, outcome: AttemptResult): Promise<JobView> {
    const { disposition, view } = await this.#deps.attempts.finishInTransaction(tx, job, outcome);
    lease.endedAt = new Date();
    await tx.flush();
    await this.#settle(tx, lease, job, disposition);
    return view;
  }

  /** Settles the attempt's pg-boss entry in `tx`, as the in-process runner's result does. */
  async #settle(tx: EntityManager, lease: JobLease, job: Job, disposition: QueueDisposition): Promise<void> {
    await this.#settleEntries(tx, lease.queue, [{ id: lease.queueEntryId, retryCount: job.queueRetryCount ?? 0 }], disposition);
  }

  async #settleEntries(tx: EntityManager, queue: string, entries: { id: string; retryCount: number }[], disposition: QueueDisposition) {
    const { boss } = this.#deps;
    const db = transactionDb(tx);
    if (disposition === 'completed') await boss.complete(queue, entries, null, { db });
    else if (disposition === 'failed') await boss.fail(queue, entries, null, { db });
    // Failed for good with attempts left: nothing may offer the entry again.
    else await boss.cancel(queue, entries, { db });
  }

  /** The caller's lease on the job, if it is its latest one. */
  async #latestLease(em: EntityManager, holder: LeaseHolder, jobId: string, lockMode?: LockMode): Promise<JobLease> {
    if (!isUuid(jobId)) throw notFound('job');
    const lease = await em.findOne(
      JobLease,
      { job: jobId, account: holder.accountId, ...(holder.workerId ? { workerId: holder.workerId } : {}) },
      { orderBy: { claimedAt: 'desc' }, ...(lockMode ? { lockMode } : {}) },
    );
    // A job the caller never held is none of its business.
    if (!lease) throw notFound('job');
    return lease;
  }

  /** The caller's active lease on the job, read without locks; LEASE_EXPIRED when it lapsed. */
  async #checkHeld(em: EntityManager, holder: LeaseHolder, jobId: string): Promise<JobLease> {
    const lease = await this.#latestLease(em, holder, jobId);
    if (lease.endedAt || lease.expiresAt.getTime() <= Date.now()) throw leaseExpired(lease);
    return lease;
  }

  /** The job and the caller's lease on it, both locked (job first); LEASE_EXPIRED unless the lease still holds the job. */
  async #lockHeld(tx: EntityManager, holder: LeaseHolder, jobId: string): Promise<{ job: Job; lease: JobLease }> {
    if (!isUuid(jobId)) throw notFound('job');
    const job = await tx.findOne(Job, jobId, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (!job) throw notFound('job');
    const lease = await this.#latestLease(tx, holder, jobId, LockMode.PESSIMISTIC_WRITE);
    const holds =
      !lease.endedAt &&
      lease.expiresAt.getTime() > Date.now() &&
      job.status === 'running' &&
      job.attempt === lease.attempt &&
      job.workerId === leaseHolderName(lease.workerId);
    if (!holds) throw leaseExpired(lease);
    return { job, lease };
  }
}

function leaseExpired(lease: { attempt: number }): Error {
  return failedPrecondition(
    `the lease on attempt ${lease.attempt} of this job has lapsed or ended: the attempt is no longer the caller's`,
    jobReasons.LEASE_EXPIRED,
  );
}

function lapsedOutcome(job: Job, lease: JobLease, now: Date): AttemptResult {
  if (lease.deadlineAt.getTime() <= now.getTime()) {
    return {
      kind: 'failed',
      message: `the attempt ran longer than the ${job.type} timeout (${(lease.deadlineAt.getTime() - lease.claimedAt.getTime()) / 1000} s)`,
      code: jobErrorCodes.DEADLINE_EXCEEDED,
      retryable: true,
      abandoned: true,
    };
  }
  if (job.cancelRequested) return { kind: 'cancelled', abandoned: true };
  return {
    kind: 'failed',
    message: `worker ${lease.workerId} held attempt ${lease.attempt} but sent no heartbeat before its lease lapsed`,
    code: jobErrorCodes.LEASE_EXPIRED,
    retryable: true,
  };
}

/** A CompleteJob or FailJob call waiting for its group's transaction. */
interface PendingEnd {
  holder: LeaseHolder;
  jobId: string;
  /** What the attempt amounts to, read from the locked job (a cancel asked meanwhile wins). */
  outcome: (job: JobRow) => AttemptResult;
}

interface StoredLease {
  id: string;
  job_id: string;
  attempt: number;
  worker_id: string;
  account_id: string | null;
  queue: string;
  queue_entry_id: string;
  claimed_at: Date | string;
  expires_at: Date | string;
  ended_at: Date | string | null;
}

/** The holder's latest lease on the job, as #latestLease picks it. */
function latestLeaseOf(leases: StoredLease[], holder: LeaseHolder, jobId: string): StoredLease | undefined {
  let latest: StoredLease | undefined;
  for (const lease of leases) {
    if (lease.job_id !== jobId || lease.account_id !== holder.accountId) continue;
    if (holder.workerId && lease.worker_id !== holder.workerId) continue;
    if (!latest || new Date(lease.claimed_at).getTime() > new Date(latest.claimed_at).getTime()) latest = lease;
  }
  return latest;
}
