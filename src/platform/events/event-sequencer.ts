import type { MikroORM } from '../db/orm.ts';
import type { Logger } from '../logger.ts';

/** Sequencing transactions of all instances take turns under this advisory lock. */
const sequencerLockKey = 0x59_4d_45_51; // "YMEQ"
const batchSize = 5000;
export const eventsChannel = 'yardmaster_events';
const tickMs = 1000;

/**
 * Gives committed events their global positions, in batches, one sequencer at a time
 * across all instances. Because a batch's positions become visible in one commit, and
 * batches follow each other under a lock, positions only ever appear in increasing
 * order: a reader at position N can never later find an event below N. An instance
 * pokes its sequencer right after committing events; a periodic tick covers the
 * events of an instance that died before it could.
 */
export class EventSequencer {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  #running: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(orm: MikroORM, logger: Logger) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'event-sequencer' });
  }

  start(): void {
    this.#timer = setInterval(() => this.poke(), tickMs).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }

  /**
   * The statement that numbers pending events inside the caller's transaction, sent right
   * before its COMMIT: the transaction's own events (and those others committed) are then
   * numbered by the commit that makes them visible, without a second transaction and its
   * round trip and WAL flush. The sequencers' lock is held from this statement through the
   * commit, so positions still appear in increasing order. Its `assigned` goes to
   * `committedInTransaction` after the COMMIT.
   */
  static inTransaction(): { text: string; values: unknown[] } {
    return { text: 'select assigned from sequence_events($1, $2, $3)', values: [sequencerLockKey, batchSize, eventsChannel] };
  }

  /** After a commit that ran `inTransaction`: a full batch may have left events behind, so run again. */
  committedInTransaction(assigned: number): void {
    if (assigned >= batchSize) this.poke();
  }

  /** Asks for a sequencing run soon; runs requested while one is going merge into one more. */
  poke(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
  }

  /** Sequences what is pending now and resolves when done (for tests and shutdown). */
  async flush(): Promise<void> {
    this.poke();
    while (this.#running) await this.#running;
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      try {
        while ((await this.#sequenceBatch()) === batchSize);
      } catch (error) {
        this.#logger.warn({ err: error }, 'sequencing events failed; the next tick retries');
      }
    } while (this.#again);
  }

  /** One round trip: the database function `sequence_events` locks, numbers, moves the position and notifies. */
  async #sequenceBatch(): Promise<number> {
    const [row] = await this.#orm.em
      .fork()
      .execute<{ assigned: string | number }[]>('select assigned from sequence_events(?, ?, ?)', [
        sequencerLockKey,
        batchSize,
        eventsChannel,
      ]);
    return Number(row?.assigned ?? 0);
  }
}
