import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { invalidField, notFound } from '../platform/domain-errors.ts';
import type { InstanceRoleName, PoolStateName } from './entities.ts';
import type { InstanceRegistry } from './instance-registry.ts';
import type { PoolAction, PoolControls } from './pool-controls.ts';

/** The last dependency checks of one schedule, as the server keeps them (system never runs a check itself). */
export interface DependencyChecks {
  current(): Promise<{
    checkedAt: Date;
    /** `ok`: it works; `degraded`: it works, but something needs attention. */
    dependencies: { name: string; ok: boolean; degraded: boolean; latencyMs: number; detail: string }[];
  }>;
}

export type HealthName = 'ok' | 'degraded' | 'down';

export interface DependencyView {
  name: string;
  health: HealthName;
  latencyMs: number;
  detail: string;
  checkedAt: Date;
}

/** The external workers (WorkerService), as the worker area keeps them. */
export interface ExternalWorkers {
  /** Every worker heard from in the last hour, by id. */
  list(em: EntityManager): Promise<
    {
      id: string;
      accountId: string;
      accountUsername: string;
      queues: string[];
      state: PoolStateName;
      jobsHeld: number;
      lastSeenAt: Date;
    }[]
  >;
  /** Records a stop, start or restart for the worker to learn from its next reply; NotFound for an unknown worker. */
  control(em: EntityManager, workerId: string, action: PoolAction): Promise<void>;
  /** The queues that live, not stopped workers claim from. */
  servedQueues(em: EntityManager): Promise<string[]>;
}

/** Queues with jobs that could run now: queued, due, and their queue not paused. */
export type ReadyQueues = (em: EntityManager) => Promise<string[]>;

export interface InstanceView {
  id: string;
  role: InstanceRoleName;
  host: string;
  pid: number;
  version: string;
  commit: string;
  startedAt: Date;
  heartbeatAt: Date;
  lost: boolean;
}

export interface SystemStatus {
  health: HealthName;
  dependencies: DependencyView[];
  instances: InstanceView[];
  version: string;
  commit: string;
  uptimeMs: number;
  instanceId: string;
}

export type ServiceKindName = 'instance' | 'worker_pool' | 'external_worker';

export interface ServiceView {
  name: string;
  kind: ServiceKindName;
  state: PoolStateName;
  instanceId: string;
  queue: string;
  concurrency: number;
  jobsRunning: number;
  jobsDone: number;
  heartbeatAt: Date;
  /** An external worker's account; empty for other kinds. */
  accountId: string;
  accountUsername: string;
  /** The queues an external worker claims from; empty for other kinds. */
  queues: string[];
}

const poolPrefix = 'pool/';
const workerPrefix = 'worker/';
const instancePrefix = 'instance/';

export interface SystemServiceDeps {
  registry: InstanceRegistry;
  pools: PoolControls;
  /** The schedules of dependency checks whose last results the status shows, in order. */
  checks: DependencyChecks[];
  externalWorkers: ExternalWorkers;
  readyQueues: ReadyQueues;
  /** Whether a queue (job type) of that name has an in-process pool. */
  hasQueue: (queue: string) => boolean;
}

/** The system's own state: its instances, its dependencies, its worker pools and the external workers. */
export class SystemService {
  readonly #deps: SystemServiceDeps;

  constructor(deps: SystemServiceDeps) {
    this.#deps = deps;
  }

  async status(em: EntityManager): Promise<SystemStatus> {
    const { registry, checks } = this.#deps;
    const [reports, instances] = await Promise.all([Promise.all(checks.map((schedule) => schedule.current())), registry.list(em)]);
    const dependencies = reports.flatMap(({ checkedAt, dependencies }) =>
      dependencies.map(
        ({ name, ok, degraded, latencyMs, detail }): DependencyView => ({
          name,
          health: !ok ? 'down' : degraded ? 'degraded' : 'ok',
          latencyMs,
          detail,
          checkedAt,
        }),
      ),
    );
    const healths = new Set(dependencies.map((dependency) => dependency.health));
    return {
      health: healths.has('down') ? 'down' : healths.has('degraded') ? 'degraded' : 'ok',
      dependencies,
      instances: instances.filter(({ lost }) => !lost).map(({ instance, lost }) => ({ ...instance, lost })),
      version: registry.build.version,
      commit: registry.build.commit,
      uptimeMs: Date.now() - registry.startedAt.getTime(),
      instanceId: registry.instanceId,
    };
  }

  /**
   * The queues with jobs that could run now but nothing live to run them: no instance
   * whose pool of the queue runs, and no live external worker (not stopped) claiming from it.
   */
  async queuesWithoutWorkers(em: EntityManager): Promise<string[]> {
    const [ready, instances, external] = await Promise.all([
      this.#deps.readyQueues(em),
      this.#deps.registry.list(em),
      this.#deps.externalWorkers.servedQueues(em),
    ]);
    const served = new Set(external);
    for (const { instance, lost } of instances) {
      if (lost) continue;
      for (const pool of instance.pools) if (pool.state === 'running') served.add(pool.queue);
    }
    return ready.filter((queue) => !served.has(queue)).sort();
  }

  /**
   * Every instance (lost ones too, until pruned), then every pool of every live instance,
   * then every external worker heard from in the last hour.
   */
  async services(em: EntityManager): Promise<ServiceView[]> {
    const [instances, externalWorkers] = await Promise.all([this.#deps.registry.list(em), this.#deps.externalWorkers.list(em)]);
    const none = { accountId: '', accountUsername: '', queues: [] };
    const services: ServiceView[] = instances.map(({ instance, lost }) => ({
      name: `${instancePrefix}${instance.id}`,
      kind: 'instance',
      state: lost ? 'unhealthy' : 'running',
      instanceId: instance.id,
      queue: '',
      concurrency: 0,
      jobsRunning: 0,
      jobsDone: 0,
      heartbeatAt: instance.heartbeatAt,
      ...none,
    }));
    const pools = instances
      .filter(({ lost }) => !lost)
      .flatMap(({ instance }) =>
        instance.pools.map(
          (pool): ServiceView => ({
            name: `${poolPrefix}${pool.queue}`,
            kind: 'worker_pool',
            state: pool.state,
            instanceId: instance.id,
            queue: pool.queue,
            concurrency: pool.concurrency,
            jobsRunning: pool.jobsRunning,
            jobsDone: pool.jobsDone,
            heartbeatAt: instance.heartbeatAt,
            ...none,
          }),
        ),
      )
      .sort((a, b) => a.name.localeCompare(b.name) || a.instanceId.localeCompare(b.instanceId));
    const workers = externalWorkers.map(
      (worker): ServiceView => ({
        name: `${workerPrefix}${worker.id}`,
        kind: 'external_worker',
        state: worker.state,
        instanceId: '',
        queue: '',
        concurrency: 0,
        jobsRunning: worker.jobsHeld,
        jobsDone: 0,
        heartbeatAt: worker.lastSeenAt,
        accountId: worker.accountId,
        accountUsername: worker.accountUsername,
        queues: worker.queues,
      }),
    );
    return [...services, ...pools, ...workers];
  }

  /**
   * Starts, stops or restarts the pool `name` (`pool/<queue>`) on every instance, or asks
   * it of the external worker `name` (`worker/<id>`) through its next reply.
   */
  async control(em: EntityManager, caller: Caller, name: string, action: PoolAction): Promise<void> {
    if (name === '') throw invalidField('name', 'is required');
    if (name.startsWith(workerPrefix) && name.length > workerPrefix.length) {
      await this.#deps.externalWorkers.control(em, name.slice(workerPrefix.length), action);
      return;
    }
    if (!name.startsWith(poolPrefix)) {
      throw invalidField(
        'name',
        'only worker pools (pool/<queue>) and external workers (worker/<id>) can be started, stopped or restarted',
      );
    }
    const queue = name.slice(poolPrefix.length);
    if (!this.#deps.hasQueue(queue)) throw notFound(`service "${name}"`);
    await this.#deps.pools.apply(em, queue, action, caller.username);
  }
}
