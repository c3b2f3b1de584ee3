import type { Unsubscribe } from '../platform/listeners.ts';

/** Which queues are paused, as running jobs need to know it (the queue area keeps the pauses). */
export interface JobQueuePauses {
  isPaused(queue: string): boolean;
  /**
   * An SQL condition, true when the queue named by the expression `queue` is paused, read
   * from the table by the statement that uses it (a notification can lose a race with a
   * fetch): the start of a batch asks it in the statement that locks the jobs.
   */
  pausedCondition(queue: string): string;
  /** Calls `listener` whenever a queue is paused or resumed. */
  onChange(listener: () => void): Unsubscribe;
}
