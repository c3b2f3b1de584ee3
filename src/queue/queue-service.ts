import { LockMode } from '@mikro-orm/core';
import { visibleTo, type Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { invalidField, notFound } from '../platform/domain-errors.ts';
import { Job } from '../jobs/entities.ts';
import type { JobChanges } from '../jobs/job-changes.ts';
import type { JobTypeRegistry } from '../jobs/job-types.ts';
import { jobView, type JobView } from '../jobs/job-view.ts';
import { findPage, type Page, type PageRequest } from '../platform/pagination.ts';
import { globalQueueName } from './entities.ts';
import { transactionDb, type PgBoss } from '../platform/queue/pg-boss.ts';
import type { QueuePauses } from './queue-pauses.ts';

/** A queue with its live counts. */
export interface QueueView {
  name: string;
  description: string;
  queued: number;
  running: number;
  succeededLastHour: number;
  failedLastHour: number;
  paused: boolean;
  oldestQueuedAgeMs: number | undefined;
  concurrency: number;
  workersAttached: number;
}

export interface QueueTotals {
  queued: number;
  running: number;
  succeededLastHour: number;
  failedLastHour: number;
  oldestQueuedAgeMs: number | undefined;
}

export interface QueueOverview {
  queues: QueueView[];
  totals: QueueTotals;
  pausedGlobally: boolean;
  pausedQueues: string[];
}

interface CountRow {
  type: string;
  queued: string;
  running: string;
  succeeded_last_hour: string;
  failed_last_hour: string;
  oldest_queued_age_ms: string | null;
}

const clearBatchSize = 500;

/** What `confirm` must say for a ClearQueue of every queue. */
const allQueuesConfirmation = 'all';

/**
 * The queues: one per job type. Counts come from the jobs table itself at the time of
 * the call (pg-boss's own statistics are cached for a minute); pause state from
 * QueuePauses; attached workers from pg-boss's registry of live instances.
 */
export class QueueService {
  readonly #registry: JobTypeRegistry;
  readonly #pauses: QueuePauses;
  readonly #boss: PgBoss;
  readonly #changes: JobChanges;

  constructor(deps: { registry: JobTypeRegistry; pauses: QueuePauses; boss: PgBoss; changes: JobChanges }) {
    this.#registry = deps.registry;
    this.#pauses = deps.pauses;
    this.#boss = deps.boss;
    this.#changes = deps.changes;
  }

  async overview(em: EntityManager): Promise<QueueOverview> {
    const rows = await em.execute<CountRow[]>(
      `select type,
              count(*) filter (where status = 'queued') as queued,
              count(*) filter (where status = 'running') as running,
              count(*) filter (where status = 'succeeded' and finished_at > now() - interval '1 hour') as succeeded_last_hour,
              count(*) filter (where status = 'failed' and finished_at > now() - interval '1 hour') as failed_last_hour,
              -- Waiting since it was (last) queued, or since its run_after passed; not yet due is not waiting.
              (extract(epoch from now() - min(greatest(queued_at, coalesce(run_after, queued_at)))
                 filter (where status = 'queued' and (run_after is null or run_after <= now()))) * 1000)::bigint as oldest_queued_age_ms
         from jobs
        where status in ('queued', 'running') or finished_at > now() - interval '1 hour'
        group by type`,
    );
    const counts = new Map(rows.map((row) => [row.type, row]));
    const workers = await this.#workersByQueue();
    const queues = this.#registry.all().map((type): QueueView => {
      const row = counts.get(type.name);
      return {
        name: type.name,
        description: type.description,
        queued: Number(row?.queued ?? 0),
        running: Number(row?.running ?? 0),
        succeededLastHour: Number(row?.succeeded_last_hour ?? 0),
        failedLastHour: Number(row?.failed_last_hour ?? 0),
        paused: this.#pauses.isPaused(type.name),
        oldestQueuedAgeMs: row?.oldest_queued_age_ms == null ? undefined : Math.max(0, Number(row.oldest_queued_age_ms)),
        concurrency: type.concurrency,
        workersAttached: workers.get(type.name) ?? 0,
      };
    });
    const ages = queues.map((queue) => queue.oldestQueuedAgeMs).filter((age): age is number => age !== undefined);
    return {
      queues,
      totals: {
        queued: sum(queues, 'queued'),
        running: sum(queues, 'running'),
        succeededLastHour: sum(queues, 'succeededLastHour'),
        failedLastHour: sum(queues, 'failedLastHour'),
        oldestQueuedAgeMs: ages.length > 0 ? Math.max(...ages) : undefined,
      },
      pausedGlobally: this.#pauses.pausedGlobally,
      pausedQueues: this.#pauses.pausedQueues,
    };
  }

  /**
   * Queued jobs of a queue (or, empty name, of all) in the order they will run: highest
   * priority first, then the longest waiting.
   */
  async listQueued(em: EntityManager, caller: Caller, queue: string, page: PageRequest): Promise<Page<JobView>> {
    if (queue !== '') this.#requireQueue(queue, 'queue');
    const where = { status: 'queued' as const, ...(queue === '' ? {} : { type: queue }), ...visibleTo(caller) };
    // pg-boss's own order: priority, then the age of the current queue entry (a retried job
    // queues again at the back).
    const result = await findPage(em, Job, { where, orderBy: { priority: 'desc', queuedAt: 'asc', id: 'asc' }, query: ['queued', queue, caller.userId], page });
    return { items: result.items.map(jobView), nextPageToken: result.nextPageToken };
  }

  /** Pauses one queue, or (empty name) all of them. */
  async pause(em: EntityManager, caller: Caller, queue: string): Promise<void> {
    if (queue !== '') this.#requireQueue(queue, 'queue');
    await this.#pauses.set(em, queue === '' ? globalQueueName : queue, true, caller.username);
  }

  /** Resumes one queue, or (empty name) every queue and the global pause. */
  async resume(em: EntityManager, caller: Caller, queue: string): Promise<void> {
    if (queue === '') {
      await this.#pauses.resumeAll(em, caller.username);
      return;
    }
    this.#requireQueue(queue, 'queue');
    await this.#pauses.set(em, queue, false, caller.username);
  }

  /**
   * Cancels every queued job of the queue (or, empty name, of every queue; `confirm`
   * then is `all`), or only counts them (dry run); returns how many.
   */
  async clear(em: EntityManager, input: { queue: string; confirm: string; dryRun: boolean }): Promise<number> {
    if (input.queue === '') {
      if (input.confirm !== allQueuesConfirmation) throw invalidField('confirm', `must be "${allQueuesConfirmation}" to clear every queue`);
    } else {
      this.#requireQueue(input.queue, 'queue');
      if (input.confirm !== input.queue) throw invalidField('confirm', 'must equal the name of the queue to clear');
    }
    const where = { status: 'queued' as const, ...(input.queue === '' ? {} : { type: input.queue }) };
    if (input.dryRun) return em.count(Job, where);
    let cleared = 0;
    for (;;) {
      // Jobs that a worker is starting right now are locked: skipped here, they start.
      const batch = await this.#changes.transact(em.fork(), async (tx) => {
        const jobs = await tx.find(Job, where, { limit: clearBatchSize, lockMode: LockMode.PESSIMISTIC_PARTIAL_WRITE });
        const now = new Date();
        for (const job of jobs) {
          Object.assign(job, { status: 'cancelled', finishedAt: now, cancelReason: 'the queue was cleared' });
          this.#changes.record(tx, job, 'updated');
        }
        for (const [queue, queued] of Map.groupBy(jobs.filter((job) => job.queueJobId), (job) => job.type)) {
          await this.#boss.cancel(queue, queued.map((job) => job.queueJobId!), { db: transactionDb(tx) });
        }
        return jobs.length;
      });
      cleared += batch;
      if (batch < clearBatchSize) return cleared;
    }
  }

  #requireQueue(queue: string, field: string): void {
    if (queue === '') throw invalidField(field, 'is required');
    if (!this.#registry.get(queue)) throw notFound(`queue "${queue}"`);
  }

  /** Live instances with a worker on each queue, from pg-boss's instance registry. */
  async #workersByQueue(): Promise<Map<string, number>> {
    const attached = new Map<string, number>();
    for (const instance of await this.#boss.getInstances()) {
      if (!instance.live || instance.stoppedOn) continue;
      for (const queue of new Set(instance.workers.map((worker) => worker.queue))) attached.set(queue, (attached.get(queue) ?? 0) + 1);
    }
    return attached;
  }
}

function sum(queues: QueueView[], field: 'queued' | 'running' | 'succeededLastHour' | 'failedLastHour'): number {
  return queues.reduce((total, queue) => total + queue[field], 0);
}
