import type { ServiceImpl } from '@connectrpc/connect';
import { durationFromMs, timestampFromDate } from '@bufbuild/protobuf/wkt';
import {
  HealthStatus,
  InstanceRole,
  ServiceKind,
  ServiceState,
  type SystemService as SystemServiceDesc,
} from '../../gen/yardmaster/v1/system_pb.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { InstanceRoleName, PoolStateName } from './entities.ts';
import type { HealthName, InstanceView, ServiceKindName, ServiceView, SystemService } from './system-service.ts';

const roles: Record<InstanceRoleName, InstanceRole> = { api: InstanceRole.API, worker: InstanceRole.WORKER, all: InstanceRole.ALL };
const kinds: Record<ServiceKindName, ServiceKind> = {
  instance: ServiceKind.INSTANCE,
  worker_pool: ServiceKind.WORKER_POOL,
  external_worker: ServiceKind.EXTERNAL_WORKER,
};
const states: Record<PoolStateName, ServiceState> = {
  running: ServiceState.RUNNING,
  stopped: ServiceState.STOPPED,
  draining: ServiceState.DRAINING,
  unhealthy: ServiceState.UNHEALTHY,
};
const healths: Record<HealthName, HealthStatus> = { ok: HealthStatus.OK, degraded: HealthStatus.DEGRADED, down: HealthStatus.DOWN };

function instanceToProto(instance: InstanceView) {
  return {
    id: instance.id,
    role: roles[instance.role],
    host: instance.host,
    pid: instance.pid,
    version: instance.version,
    commit: instance.commit,
    startTime: timestampFromDate(instance.startedAt),
    lastHeartbeatTime: timestampFromDate(instance.heartbeatAt),
    lost: instance.lost,
  };
}

function serviceToProto(service: ServiceView) {
  return {
    name: service.name,
    kind: kinds[service.kind],
    state: states[service.state],
    instanceId: service.instanceId,
    queue: service.queue,
    concurrency: service.concurrency,
    jobsRunning: service.jobsRunning,
    jobsDone: BigInt(service.jobsDone),
    lastHeartbeatTime: timestampFromDate(service.heartbeatAt),
    accountId: service.accountId,
    accountUsername: service.accountUsername,
    queues: service.queues,
  };
}

export function createSystemRpc(system: SystemService): ServiceImpl<typeof SystemServiceDesc> {
  return {
    async getSystemStatus(_req, ctx) {
      const status = await system.status(entityManagerOf(ctx));
      return {
        status: healths[status.health],
        dependencies: status.dependencies.map((dependency) => ({
          name: dependency.name,
          status: healths[dependency.health],
          latency: durationFromMs(Math.round(dependency.latencyMs)),
          detail: dependency.detail,
          checkTime: timestampFromDate(dependency.checkedAt),
        })),
        instances: status.instances.map(instanceToProto),
        version: status.version,
        commit: status.commit,
        uptime: durationFromMs(status.uptimeMs),
        instanceId: status.instanceId,
      };
    },

    async listServices(_req, ctx) {
      return { services: (await system.services(entityManagerOf(ctx))).map(serviceToProto) };
    },

    async startService(req, ctx) {
      await system.control(entityManagerOf(ctx), callerOf(ctx), req.name, 'start');
      return {};
    },

    async stopService(req, ctx) {
      await system.control(entityManagerOf(ctx), callerOf(ctx), req.name, 'stop');
      return {};
    },

    async restartService(req, ctx) {
      await system.control(entityManagerOf(ctx), callerOf(ctx), req.name, 'restart');
      return {};
    },
  };
}
