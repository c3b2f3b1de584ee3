import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { invalidField, notFound } from '../platform/domain-errors.ts';
import type { Page, PageRequest } from '../platform/pagination.ts';
import { globalQueueName } from './entities.ts';
import type { QueueJobs } from './queue-jobs.ts';
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

/** The unfinished jobs of one queue, as /metrics reports them. */
export interface QueueFigures {
  queue: string;
  queued: number;
  running: number;
  /** Queued jobs due now: no run_after, or one that has passed. */
  due: number;
}

interface FiguresRow {
  type: string;
  queued: string;
  running: string;
  due: string;
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
 * QueuePauses; attached workers from the pool states live instances report. `Job` is how
 * the jobs area shows a queued job (see QueueJobs).
 */
export class QueueService<Job> {
  readonly #jobs: QueueJobs<Job>;
  readonly #pauses: QueuePauses;
  readonly #workersByQueue: (em: EntityManager) => Promise<Map<string, number>>;

  constructor(deps: {
    jobs: QueueJobs<Job>;
    pauses: QueuePauses;
    /** How many live instances work each queue (the instance registry's pool reports). */
    workersByQueue: (em: EntityManager) => Promise<Map<string, number>>;
  }) {
    this.#jobs = deps.jobs;
    this.#pauses = deps.pauses;
    this.#workersByQueue = deps.workersByQueue;
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
    const workers = await this.#workersByQueue(em);
    const queues = this.#jobs.types().map((type): QueueView => {
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
   * What /metrics reports of each queue: its unfinished jobs and how many of them are due.
   * Reads only unfinished rows (the (status, finished_at) index), not the jobs' history.
   */
  async figures(em: EntityManager): Promise<QueueFigures[]> {
    const rows = await em.execute<FiguresRow[]>(
      `select type,
              count(*) filter (where status = 'queued') as queued,
              count(*) filter (where status = 'running') as running,
              count(*) filter (where status = 'queued' and (run_after is null or run_after <= now())) as due
         from jobs
        where status in ('queued', 'running')
        group by type`,
    );
    const counts = new Map(rows.map((row) => [row.type, row]));
    return this.#jobs.types().map(({ name }) => {
      const row = counts.get(name);
      return { queue: name, queued: Number(row?.queued ?? 0), running: Number(row?.running ?? 0), due: Number(row?.due ?? 0) };
    });
  }

  /** Queues with jobs ready to run now (queued and due), paused ones left out: what needs a live worker. */
  async readyQueues(em: EntityManager): Promise<string[]> {
    const rows = await em.execute<{ type: string }[]>(
      `select distinct type from jobs where status = 'queued' and (run_after is null or run_after <= now())`,
    );
    return rows.map((row) => row.type).filter((queue) => !this.#pauses.isPaused(queue));
  }

  /**
   * Queued jobs of a queue (or, empty name, of all) in the order they will run: highest
   * priority first, then the longest waiting.
   */
  async listQueued(em: EntityManager, caller: Caller, queue: string, page: PageRequest): Promise<Page<Job>> {
    if (queue !== '') this.#requireQueue(queue, 'queue');
    return this.#jobs.listQueued(em, caller, queue === '' ? undefined : queue, page);
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
    const queue = input.queue === '' ? undefined : input.queue;
    if (input.dryRun) return this.#jobs.countQueued(em, queue);
    let cleared = 0;
    for (;;) {
      const batch = await this.#jobs.cancelQueued(em.fork(), queue, clearBatchSize, 'the queue was cleared');
      cleared += batch;
      if (batch < clearBatchSize) return cleared;
    }
  }

  #requireQueue(queue: string, field: string): void {
    if (queue === '') throw invalidField(field, 'is required');
    if (!this.#jobs.has(queue)) throw notFound(`queue "${queue}"`);
  }
}

function sum(queues: QueueView[], field: 'queued' | 'running' | 'succeededLastHour' | 'failedLastHour'): number {
  return queues.reduce((total, queue) => total + queue[field], 0);
}
