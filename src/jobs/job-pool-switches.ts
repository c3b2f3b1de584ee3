import type { Unsubscribe } from '../platform/listeners.ts';

/** Which in-process pools an admin stopped or restarted, as the job runner needs to know it (the system area keeps them). */
export interface JobPoolSwitches {
  isStopped(queue: string): boolean;
  /** How many restarts were asked of the queue's pool: the runner restarts it when the count moves. */
  restarts(queue: string): number;
  /** Calls `listener` whenever a pool is stopped, started or restarted. */
  onChange(listener: () => void): Unsubscribe;
}

/** How one pool of this instance is doing, for the instance's heartbeat. */
export interface JobPoolReport {
  queue: string;
  state: 'running' | 'stopped' | 'draining' | 'unhealthy';
  concurrency: number;
  jobsRunning: number;
  jobsDone: number;
}
