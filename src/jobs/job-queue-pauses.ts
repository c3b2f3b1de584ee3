import type { EntityManager } from '../platform/db/orm.ts';
import type { Unsubscribe } from '../platform/listeners.ts';

/** Which queues are paused, as running jobs need to know it (the queue area keeps the pauses). */
export interface JobQueuePauses {
  isPaused(queue: string): boolean;
  /** Reads the pause from the table inside `em`'s transaction: a notification can lose a race with a fetch. */
  isPausedInTransaction(em: EntityManager, queue: string): Promise<boolean>;
  /** Calls `listener` whenever a queue is paused or resumed. */
  onChange(listener: () => void): Unsubscribe;
}
