import type { EntityManager, MikroORM } from '../platform/db/orm.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import { Listeners, type Unsubscribe } from '../platform/listeners.ts';
import type { Logger } from '../platform/logger.ts';
import { PoolControl } from './entities.ts';
import { LatestLoads } from '../platform/latest-loads.ts';

const channel = 'yardmaster_pool_controls';

export type PoolAction = 'start' | 'stop' | 'restart';

interface Wanted {
  stopped: boolean;
  restarts: number;
}

/**
 * Which in-process worker pools an admin stopped or restarted, persisted in
 * `pool_controls` (so an instance that starts later honours it) and known to every
 * instance within moments through NOTIFY, reloaded after a reconnect in case one was missed.
 */
export class PoolControls {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  #wanted = new Map<string, Wanted>();
  readonly #listeners = new Listeners();
  readonly #loads = new LatestLoads();

  constructor(orm: MikroORM, logger: Logger) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'pool-controls' });
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(channel, () => void this.#reloadLogged());
    notifications.onReconnect(() => void this.#reloadLogged());
    await this.#reload();
  }

  isStopped(queue: string): boolean {
    return this.#wanted.get(queue)?.stopped ?? false;
  }

  /** How many restarts were asked of the queue's pool: a pool restarts when the count moves. */
  restarts(queue: string): number {
    return this.#wanted.get(queue)?.restarts ?? 0;
  }

  /** Called on this instance whenever a pool is stopped, started or restarted anywhere. */
  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** Stops, starts or restarts the pool of `queue` on every instance. */
  async apply(em: EntityManager, queue: string, action: PoolAction, by: string): Promise<void> {
    // One statement, so that two restarts asked at once both count.
    await em.transactional(async (tx) => {
      await tx.execute(
        `insert into pool_controls (queue, stopped, restarts, updated_at, updated_by) values (?, ?, ?, now(), ?)
         on conflict (queue) do update set stopped = excluded.stopped, restarts = pool_controls.restarts + excluded.restarts,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
        [queue, action === 'stop', action === 'restart' ? 1 : 0, by],
      );
      await tx.execute('select pg_notify(?, ?)', [channel, queue]);
    });
    await this.#reload();
  }

  async #reloadLogged(): Promise<void> {
    try {
      await this.#reload();
    } catch (error) {
      this.#logger.warn({ err: error }, 'reloading pool controls failed');
    }
  }

  // A stale restart count applied after a newer one would move the count again and restart the pool twice.
  #reload(): Promise<void> {
    return this.#loads.run(
      () => this.#orm.em.fork().find(PoolControl, {}),
      (rows) => {
        const next = new Map(rows.map((row) => [row.queue, { stopped: row.stopped, restarts: row.restarts }]));
        const changed =
          next.size !== this.#wanted.size ||
          [...next].some(([queue, wanted]) => {
            const known = this.#wanted.get(queue);
            return known?.stopped !== wanted.stopped || known.restarts !== wanted.restarts;
          });
        this.#wanted = next;
        if (changed) this.#listeners.notify();
      },
    );
  }
}
