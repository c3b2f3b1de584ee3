import os from 'node:os';
import type { EntityManager, MikroORM } from '../platform/db/orm.ts';
import type { Logger } from '../platform/logger.ts';
import type { BuildInfo } from './build-info.ts';
import { type InstanceRoleName, type PoolReport, ServerInstance } from './entities.ts';

const defaultInstanceHeartbeatMs = 10_000;
/** Heartbeats an instance may miss before it counts as lost. */
const missedHeartbeatsForLost = 3;
/** How long a lost instance stays listed before housekeeping removes it. */
const lostInstanceRetentionMs = 60 * 60 * 1000;

export interface InstanceRegistryOptions {
  orm: MikroORM;
  logger: Logger;
  instanceId: string;
  role: InstanceRoleName;
  build: BuildInfo;
  /** The state of this instance's worker pools, sent with every heartbeat. */
  pools: () => PoolReport[];
  heartbeatIntervalMs?: number;
}

/**
 * This process's row in `server_instances`: written at start, refreshed by a heartbeat
 * every interval (one small update: nothing here polls faster) and deleted at a clean stop.
 * It also reads the rows of all instances, telling live ones from lost ones.
 */
export class InstanceRegistry {
  readonly #options: InstanceRegistryOptions;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly startedAt = new Date();
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> = Promise.resolve();

  constructor(options: InstanceRegistryOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'instance-registry' });
    this.#intervalMs = options.heartbeatIntervalMs ?? defaultInstanceHeartbeatMs;
  }

  get instanceId(): string {
    return this.#options.instanceId;
  }

  get build(): BuildInfo {
    return this.#options.build;
  }

  /** An instance whose last heartbeat is older than this is lost. */
  get lostAfterMs(): number {
    return this.#intervalMs * missedHeartbeatsForLost;
  }

  async start(): Promise<void> {
    await this.#register();
    this.#timer = setInterval(() => {
      this.#beating = this.#heartbeat();
    }, this.#intervalMs).unref();
  }

  /**
   * Sends a heartbeat now, after any in flight: a pool that was just stopped or started
   * shows so in ListServices without waiting for the next beat.
   */
  heartbeatNow(): void {
    if (this.#timer === undefined) return;
    this.#beating = this.#beating.then(() => this.#heartbeat());
  }

  async #register(): Promise<void> {
    const { orm, instanceId, role, build, pools } = this.#options;
    const now = new Date();
    await orm.em.fork().insert(ServerInstance, {
      id: instanceId,
      role,
      host: os.hostname().slice(0, 255),
      pid: process.pid,
      version: build.version.slice(0, 64),
      commit: build.commit,
      startedAt: this.startedAt,
      heartbeatAt: now,
      pools: pools(),
    });
  }

  /** Stops the heartbeat and removes this instance's row: a clean stop is not a loss. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    // Set before the last beat settles, so that no later heartbeatNow() registers again.
    this.#timer = undefined;
    await this.#beating;
    try {
      await this.#options.orm.em.fork().nativeDelete(ServerInstance, { id: this.#options.instanceId });
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not deregister this instance');
    }
  }

  /** Every registered instance, oldest first, each with whether it is lost. */
  async list(em: EntityManager): Promise<{ instance: ServerInstance; lost: boolean }[]> {
    const rows = await em.find(ServerInstance, {}, { orderBy: { startedAt: 'asc', id: 'asc' } });
    const lostBefore = Date.now() - this.lostAfterMs;
    return rows.map((instance) => ({ instance, lost: instance.heartbeatAt.getTime() < lostBefore }));
  }

  /** How many live instances run a pool of each queue (from the pool states their heartbeats report). */
  async workersByQueue(em: EntityManager): Promise<Map<string, number>> {
    const attached = new Map<string, number>();
    for (const { instance, lost } of await this.list(em)) {
      if (lost) continue;
      for (const pool of instance.pools) if (pool.state === 'running') attached.set(pool.queue, (attached.get(pool.queue) ?? 0) + 1);
    }
    return attached;
  }

  /** How many instances are live (not lost): one count, for /metrics. */
  countLive(em: EntityManager): Promise<number> {
    return em.count(ServerInstance, { heartbeatAt: { $gte: new Date(Date.now() - this.lostAfterMs) } });
  }

  /** Housekeeping: removes instances lost for an hour; returns how many. */
  prune(em: EntityManager): Promise<number> {
    return em.nativeDelete(ServerInstance, { heartbeatAt: { $lt: new Date(Date.now() - lostInstanceRetentionMs) } });
  }

  async #heartbeat(): Promise<void> {
    const { orm, instanceId, pools } = this.#options;
    try {
      const updated = await orm.em.fork().nativeUpdate(ServerInstance, { id: instanceId }, { heartbeatAt: new Date(), pools: pools() });
      // Pruned while this process was cut off from the database for an hour: register again.
      if (updated === 0) await this.#register();
    } catch (error) {
      this.#logger.warn({ err: error }, 'instance heartbeat failed');
    }
  }
}
