import type { EntityManager, MikroORM } from '../platform/db/orm.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import { Listeners, type Unsubscribe } from '../platform/listeners.ts';
import type { Logger } from '../platform/logger.ts';
import { globalQueueName, QueueState } from './entities.ts';
import { LatestLoads } from '../platform/latest-loads.ts';

const channel = 'yardmaster_queue_pauses';

/**
 * Which queues are paused, persisted in `queue_states` and known to every instance within
 * moments through NOTIFY. Because a notification can lose a race with a worker's fetch,
 * the start of every attempt re-checks the table itself (see pausedCondition).
 */
export class QueuePauses {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  #paused = new Set<string>();
  readonly #listeners = new Listeners();
  readonly #loads = new LatestLoads();

  constructor(orm: MikroORM, logger: Logger) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'queue-pauses' });
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(channel, () => void this.#reloadLogged());
    notifications.onReconnect(() => void this.#reloadLogged());
    await this.#reload();
  }

  get pausedGlobally(): boolean {
    return this.#paused.has(globalQueueName);
  }

  /** Queues paused on their own (not counting the global pause), sorted. */
  get pausedQueues(): string[] {
    return [...this.#paused].filter((name) => name !== globalQueueName).sort();
  }

  isPaused(queue: string): boolean {
    return this.#paused.has(globalQueueName) || this.#paused.has(queue);
  }

  /** Called on this instance whenever the set of paused queues changes. */
  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** Pauses or resumes queue `name` (globalQueueName for the global pause), persistently and everywhere. */
  async set(em: EntityManager, name: string, paused: boolean, by: string): Promise<void> {
    await em.transactional(async (tx) => {
      await tx.upsert(QueueState, { name, paused, updatedAt: new Date(), updatedBy: by });
      await tx.execute('select pg_notify(?, ?)', [channel, '']);
    });
    await this.#reload();
  }

  /** Resumes every queue and lifts the global pause. */
  async resumeAll(em: EntityManager, by: string): Promise<void> {
    await em.transactional(async (tx) => {
      await tx.nativeUpdate(QueueState, { paused: true }, { paused: false, updatedAt: new Date(), updatedBy: by });
      await tx.execute('select pg_notify(?, ?)', [channel, '']);
    });
    await this.#reload();
  }

  /** The authoritative check, inside the transaction that starts an attempt. */
  pausedCondition(queue: string): string {
    return `exists (select 1 from queue_states q where q.paused and q.name in (${queue}, '${globalQueueName}'))`;
  }

  async #reloadLogged(): Promise<void> {
    try {
      await this.#reload();
    } catch (error) {
      this.#logger.warn({ err: error }, 'reloading queue pauses failed');
    }
  }

  #reload(): Promise<void> {
    return this.#loads.run(
      () => this.#orm.em.fork().find(QueueState, { paused: true }),
      (rows) => {
        const next = new Set(rows.map((row) => row.name));
        const changed = next.size !== this.#paused.size || [...next].some((name) => !this.#paused.has(name));
        this.#paused = next;
        if (changed) this.#listeners.notify();
      },
    );
  }
}
