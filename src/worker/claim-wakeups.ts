import type { Unsubscribe } from '../platform/listeners.ts';

/** What wakes waiting claims: jobs becoming ready in a queue, and pauses lifted. */
export interface ClaimSignals {
  /** Calls `listener` with the queue of every job that was queued (created, retried, resumed). */
  onQueued(listener: (queue: string) => void): Unsubscribe;
  /** Calls `listener` whenever a queue is paused or resumed. */
  onPausesChanged(listener: () => void): Unsubscribe;
}

interface Waiter {
  queues: ReadonlySet<string>;
  wake: () => void;
}

/**
 * Where ClaimJobs long polls wait on this instance. A claim takes a ticket before it
 * looks for jobs; if a job of its queues was queued since the ticket, waiting returns at
 * once, so a job queued between the look and the wait is never slept through. Jobs are
 * announced by the event stream every instance reads (NOTIFY), not by polling.
 */
export class ClaimWakeups {
  /** Bumped by every announcement, per queue; `*` for everything (a pause changed). */
  readonly #versions = new Map<string, number>();
  readonly #waiters = new Set<Waiter>();
  readonly #unsubscribes: Unsubscribe[] = [];

  constructor(signals: ClaimSignals) {
    this.#unsubscribes.push(signals.onQueued((queue) => this.#announce(queue)));
    this.#unsubscribes.push(signals.onPausesChanged(() => this.#announce('*')));
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribes) unsubscribe();
    for (const waiter of this.#waiters) waiter.wake();
  }

  /** A ticket for `queues`: what has been announced for them so far. */
  ticket(queues: readonly string[]): number {
    return queues.reduce((sum, queue) => sum + (this.#versions.get(queue) ?? 0), this.#versions.get('*') ?? 0);
  }

  /**
   * Resolves when a job of `queues` is announced after `ticket` was taken, at `until`,
   * or when `signal` aborts, whichever comes first.
   */
  wait(queues: readonly string[], ticket: number, until: number, signal: AbortSignal): Promise<void> {
    if (this.ticket(queues) !== ticket || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = {
        queues: new Set(queues),
        wake: () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', waiter.wake);
          this.#waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, Math.max(0, until - Date.now()));
      signal.addEventListener('abort', waiter.wake, { once: true });
      this.#waiters.add(waiter);
    });
  }

  #announce(queue: string): void {
    this.#versions.set(queue, (this.#versions.get(queue) ?? 0) + 1);
    for (const waiter of [...this.#waiters]) {
      if (queue === '*' || waiter.queues.has(queue)) waiter.wake();
    }
  }
}
