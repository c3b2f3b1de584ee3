import type { Logger } from '../platform/logger.ts';

export interface QueueLoopOptions<T> {
  queue: string;
  /** Most entries taken at once. */
  batchSize: number;
  /** Batches in flight at once, each in a loop of its own. */
  slots: number;
  /** Wait between two takes that found less than a full batch, unless woken. */
  pollingMs: number;
  /** Takes (fetches and starts) up to `batchSize` entries; an empty list when none are due. */
  take(): Promise<T[]>;
  /** Runs a taken batch to its end, its queue entries settled. */
  work(batch: T[]): Promise<void>;
  /** Whether a take's failure only means "try again in a moment" (another transaction held a row). */
  isContention(error: unknown): boolean;
  /** Called when takes start failing (false) or succeed again (true). */
  onHealth(healthy: boolean): void;
  logger: Logger;
}

/** Wait after a take that met another transaction's lock, before taking again. */
const contentionRetryMs = 100;

/**
 * The worker loop of one queue on this instance, in place of pg-boss's `work()`: each
 * slot takes a batch, works it, and takes the next at once while batches come back
 * full, else waits for the polling interval or a wake-up (the queue's NOTIFY). Taking
 * is the caller's: fetching and starting in one transaction is what this loop is for.
 * Stopping ends the loops after their current batch, which runs to its end.
 */
export class QueueLoop<T> {
  readonly #options: QueueLoopOptions<T>;
  readonly #logger: Logger;
  #stopping = false;
  #healthy = true;
  readonly #sleepers = new Set<() => void>();
  /** Slots woken while taking or working: they take again instead of waiting. */
  readonly #woken = new Set<number>();
  readonly #finished: Promise<void>;

  constructor(options: QueueLoopOptions<T>) {
    this.#options = options;
    this.#logger = options.logger;
    this.#finished = Promise.all(Array.from({ length: Math.max(1, options.slots) }, (_, slot) => this.#run(slot))).then(() => {});
  }

  get queue(): string {
    return this.#options.queue;
  }

  /** Has every slot take now (new entries were announced). */
  wake(): void {
    for (let slot = 0; slot < Math.max(1, this.#options.slots); slot++) this.#woken.add(slot);
    for (const wakeUp of [...this.#sleepers]) wakeUp();
  }

  /** Takes no more batches; resolves when the batches in flight have run to their end. */
  stop(): Promise<void> {
    this.#stopping = true;
    for (const wakeUp of [...this.#sleepers]) wakeUp();
    return this.#finished;
  }

  /** Resolves when every slot has ended (after stop). */
  get finished(): Promise<void> {
    return this.#finished;
  }

  async #run(slot: number): Promise<void> {
    const { take, work, batchSize, pollingMs, isContention } = this.#options;
    while (!this.#stopping) {
      let wait = pollingMs;
      this.#woken.delete(slot);
      let batch: T[] | undefined;
      try {
        batch = await take();
        this.#setHealthy(true);
      } catch (error) {
        if (isContention(error)) wait = contentionRetryMs;
        else {
          this.#setHealthy(false);
          this.#logger.error({ err: error, queue: this.queue }, 'taking a batch of the queue failed');
        }
      }
      // Full batches follow one another without a pause, as pg-boss's burstWhenBatchFull.
      if (batch && batch.length >= batchSize) wait = 0;
      if (batch && batch.length > 0) {
        try {
          await work(batch);
        } catch (error) {
          this.#logger.error({ err: error, queue: this.queue }, 'working a batch of the queue failed');
        }
      }
      if (this.#stopping || wait === 0 || this.#woken.has(slot)) continue;
      await this.#sleep(wait);
    }
  }

  #setHealthy(healthy: boolean): void {
    if (healthy === this.#healthy) return;
    this.#healthy = healthy;
    this.#options.onHealth(healthy);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#sleepers.add(done);
    });
  }
}
