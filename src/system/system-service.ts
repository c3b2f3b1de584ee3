import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { invalidField, notFound } from '../platform/domain-errors.ts';
import type { InstanceRoleName, PoolStateName } from './entities.ts';
import type { InstanceRegistry } from './instance-registry.ts';
import type { PoolAction, PoolControls } from './pool-controls.ts';

/** The last dependency checks, as the server keeps them (system never runs a check itself). */
export interface DependencyChecks {
  current(): Promise<{
    ok: boolean;
    checkedAt: Date;
    dependencies: { name: string; ok: boolean; latencyMs: number; detail: string }[];
  }>;
}

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
  ok: boolean;
  checkedAt: Date;
  dependencies: { name: string; ok: boolean; latencyMs: number; detail: string }[];
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
}

const poolPrefix = 'pool/';
const instancePrefix = 'instance/';

export interface SystemServiceDeps {
  registry: InstanceRegistry;
  pools: PoolControls;
  checks: DependencyChecks;
  /** Whether a queue (job type) of that name exists. */
  hasQueue: (queue: string) => boolean;
}

/** The system's own state: its instances, its dependencies and its worker pools. */
export class SystemService {
  readonly #deps: SystemServiceDeps;

  constructor(deps: SystemServiceDeps) {
    this.#deps = deps;
  }

  async status(em: EntityManager): Promise<SystemStatus> {
    const { registry, checks } = this.#deps;
    const [report, instances] = await Promise.all([checks.current(), registry.list(em)]);
    return {
      ok: report.ok,
      checkedAt: report.checkedAt,
      dependencies: report.dependencies,
      instances: instances.filter(({ lost }) => !lost).map(({ instance, lost }) => ({ ...instance, lost })),
      version: registry.build.version,
      commit: registry.build.commit,
      uptimeMs: Date.now() - registry.startedAt.getTime(),
      instanceId: registry.instanceId,
    };
  }

  /** Every instance (lost ones too, until pruned), then every pool of every live instance. */
  async services(em: EntityManager): Promise<ServiceView[]> {
    const instances = await this.#deps.registry.list(em);
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
          }),
        ),
      )
      .sort((a, b) => a.name.localeCompare(b.name) || a.instanceId.localeCompare(b.instanceId));
    return [...services, ...pools];
  }

  /** Starts, stops or restarts the pool `name` (`pool/<queue>`) on every instance. */
  async control(em: EntityManager, caller: Caller, name: string, action: PoolAction): Promise<void> {
    if (name === '') throw invalidField('name', 'is required');
    if (!name.startsWith(poolPrefix)) {
      throw invalidField('name', 'only worker pools (pool/<queue>) can be started, stopped or restarted');
    }
    const queue = name.slice(poolPrefix.length);
    if (!this.#deps.hasQueue(queue)) throw notFound(`service "${name}"`);
    await this.#deps.pools.apply(em, queue, action, caller.username);
  }
}
