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

  async #sequenceBatch(): Promise<number> {
    return this.#orm.em.fork().transactional(async (tx) => {
      await tx.execute('select pg_advisory_xact_lock(?)', [sequencerLockKey]);
      const assigned = await tx.execute<{ count: string; last: string | null }[]>(
        `with base as (select last_sequence from event_positions where id = 1),
              pending as (select id, row_number() over (order by id) as n from events where sequence is null order by id limit ${batchSize}),
              assigned as (
                update events e set sequence = base.last_sequence + pending.n
                  from pending, base where e.id = pending.id
                returning e.sequence)
         select count(*) as count, max(sequence) as last from assigned`,
      );
      const count = Number(assigned[0]?.count ?? 0);
      if (count === 0) return 0;
      const last = assigned[0]!.last!;
      await tx.execute('update event_positions set last_sequence = ? where id = 1', [last]);
      await tx.execute('select pg_notify(?, ?)', [eventsChannel, String(last)]);
      return count;
    });
  }
}
