import { LockMode } from '@mikro-orm/core';
import { visibleTo, type Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { findPage, type Page, type PageRequest } from '../platform/pagination.ts';
import { transactionDb, type PgBoss } from '../platform/queue/pg-boss.ts';
import { Job } from './entities.ts';
import type { JobChanges } from './job-changes.ts';
import type { JobTypeCatalog } from './job-type-catalog.ts';
import type { JobTypeRegistry } from './job-types.ts';
import { jobView, type JobView } from './job-view.ts';

/** The jobs waiting in the queues, as the queue area lists and clears them. */
export class QueuedJobs {
  readonly #catalog: JobTypeCatalog;
  readonly #registry: JobTypeRegistry;
  readonly #boss: PgBoss;
  readonly #changes: JobChanges;

  constructor(deps: { catalog: JobTypeCatalog; registry: JobTypeRegistry; boss: PgBoss; changes: JobChanges }) {
    this.#catalog = deps.catalog;
    this.#registry = deps.registry;
    this.#boss = deps.boss;
    this.#changes = deps.changes;
  }

  types(): { name: string; description: string; concurrency: number }[] {
    // A declared type runs in external workers: no instance runs its jobs itself.
    return this.#catalog.all().map((type) => ({
      name: type.name,
      description: type.description,
      concurrency: this.#registry.get(type.name)?.concurrency ?? 0,
    }));
  }

  has(queue: string): boolean {
    return this.#catalog.get(queue) !== undefined;
  }

  async listQueued(em: EntityManager, caller: Caller, queue: string | undefined, page: PageRequest): Promise<Page<JobView>> {
    const where = { ...queuedIn(queue), ...visibleTo(caller) };
    // pg-boss's own order: priority, then the age of the current queue entry (a retried job
    // queues again at the back).
    const result = await findPage(em, Job, {
      where,
      orderBy: { priority: 'desc', queuedAt: 'asc', id: 'asc' },
      query: ['queued', queue ?? '', caller.userId],
      page,
    });
    return { items: result.items.map(jobView), nextPageToken: result.nextPageToken };
  }

  countQueued(em: EntityManager, queue: string | undefined): Promise<number> {
    return em.count(Job, queuedIn(queue));
  }

  cancelQueued(em: EntityManager, queue: string | undefined, limit: number, reason: string): Promise<number> {
    return this.#changes.transact(em, async (tx) => {
      // Jobs that a worker is starting right now are locked: skipped here, they start.
      const jobs = await tx.find(Job, queuedIn(queue), { limit, lockMode: LockMode.PESSIMISTIC_PARTIAL_WRITE });
      const now = new Date();
      for (const job of jobs) {
        Object.assign(job, { status: 'cancelled', finishedAt: now, cancelReason: reason });
        this.#changes.record(tx, job, 'updated');
      }
      for (const [type, queued] of Map.groupBy(
        jobs.filter((job) => job.queueJobId),
        (job) => job.type,
      )) {
        await this.#boss.cancel(
          type,
          queued.map((job) => job.queueJobId!),
          { db: transactionDb(tx) },
        );
      }
      return jobs.length;
    });
  }
}

function queuedIn(queue: string | undefined) {
  return { status: 'queued' as const, ...(queue === undefined ? {} : { type: queue }) };
}
