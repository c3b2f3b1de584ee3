import type { MikroORM } from '../platform/db/orm.ts';
import type { Logger } from '../platform/logger.ts';
import type { JobLeases } from './job-leases.ts';

/** Looks at least this often, for leases that other instances handed out. */
const maxIntervalMs = 5000;
const minIntervalMs = 100;

/**
 * Ends external workers' leases that lapsed. It sleeps until the earliest active lease
 * lapses (at most five seconds, since another instance may hand out a shorter one), and a
 * lease handed out here that lapses sooner wakes it earlier: no fixed fast poll.
 */
export class LeaseSweeper {
  readonly #orm: MikroORM;
  readonly #leases: JobLeases;
  readonly #logger: Logger;
  readonly #onExpired: (count: number) => void;
  #timer: NodeJS.Timeout | undefined;
  #due = 0;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: { orm: MikroORM; leases: JobLeases; logger: Logger; onExpired: (count: number) => void }) {
    this.#orm = deps.orm;
    this.#leases = deps.leases;
    this.#logger = deps.logger.child({ component: 'lease-sweeper' });
    this.#onExpired = deps.onExpired;
  }

  start(): void {
    this.#schedule(Date.now());
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** A lease lapses at `expiresAt`: look then, if that is sooner than planned. */
  watch(expiresAt: Date): void {
    if (expiresAt.getTime() < this.#due) this.#schedule(expiresAt.getTime());
  }

  #schedule(at: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#due = at;
    this.#timer = setTimeout(
      () => {
        this.#running = this.#sweep().finally(() => {
          this.#running = undefined;
        });
      },
      Math.max(0, at - Date.now()),
    );
    this.#timer.unref();
  }

  async #sweep(): Promise<void> {
    this.#due = Number.POSITIVE_INFINITY;
    let next = Date.now() + maxIntervalMs;
    try {
      let ended: number;
      do {
        ended = await this.#leases.expireLapsed(this.#orm.em.fork());
        if (ended > 0) this.#onExpired(ended);
      } while (ended > 0 && !this.#stopped);
      const earliest = await this.#leases.nextExpiry(this.#orm.em.fork());
      if (earliest) next = Math.min(next, Math.max(earliest.getTime(), Date.now() + minIntervalMs));
    } catch (error) {
      this.#logger.warn({ err: error }, 'ending lapsed leases failed; trying again shortly');
    }
    // A watch() during the sweep may have asked for an earlier look.
    this.#schedule(Math.min(next, this.#due));
  }
}
