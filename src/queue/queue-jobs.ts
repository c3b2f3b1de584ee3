import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import type { Page, PageRequest } from '../platform/pagination.ts';

/** A job type as a queue: each job type has one. */
export interface QueueType {
  name: string;
  description: string;
  concurrency: number;
}

/**
 * What the queue area needs of the jobs area, which owns the jobs its queues hold: the
 * job types (one queue each) and the jobs waiting in them. `Job` is the jobs area's view
 * of a job, passed through to the RPC layer as it is. The composition root connects it.
 */
export interface QueueJobs<Job> {
  /** Every job type, by name. */
  types(): QueueType[];
  has(queue: string): boolean;
  /**
   * Queued jobs of `queue` (every queue: undefined) that `caller` may see, in the order
   * they will run: highest priority first, then the longest waiting.
   */
  listQueued(em: EntityManager, caller: Caller, queue: string | undefined, page: PageRequest): Promise<Page<Job>>;
  countQueued(em: EntityManager, queue: string | undefined): Promise<number>;
  /**
   * Cancels up to `limit` queued jobs of `queue` (every queue: undefined), saying `reason`;
   * returns how many. Jobs a worker is starting right now are skipped: they start.
   */
  cancelQueued(em: EntityManager, queue: string | undefined, limit: number, reason: string): Promise<number>;
}
