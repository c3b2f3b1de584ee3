import { defineEntity, p } from '@mikro-orm/core';

export const instanceRoles = ['api', 'worker', 'all'] as const;
export type InstanceRoleName = (typeof instanceRoles)[number];

export const poolStates = ['running', 'stopped', 'draining', 'unhealthy'] as const;
export type PoolStateName = (typeof poolStates)[number];

/** How one in-process worker pool was doing at an instance's last heartbeat. */
export interface PoolReport {
  queue: string;
  state: PoolStateName;
  concurrency: number;
  jobsRunning: number;
  jobsDone: number;
}

/**
 * A server process, registered at start, refreshed by its heartbeat (which also carries
 * its pools' state, so that reporting them costs no writes of its own) and removed at a
 * clean stop. A row whose heartbeat is old belongs to a process that died.
 */
const ServerInstanceSchema = defineEntity({
  name: 'ServerInstance',
  tableName: 'server_instances',
  properties: {
    id: p.uuid().primary(),
    role: p.enum(instanceRoles),
    host: p.string().length(255),
    pid: p.integer(),
    version: p.string().length(64),
    commit: p.string().length(64),
    startedAt: p.datetime(),
    heartbeatAt: p.datetime().index(),
    pools: p.json<PoolReport[]>(),
  },
});
export class ServerInstance extends ServerInstanceSchema.class {}
ServerInstanceSchema.setClass(ServerInstance);

/**
 * What an admin wants of a queue's in-process worker pool, on every instance: stopped or
 * not, and a restart count (each instance restarts its pool when the count moves). A
 * queue without a row runs its pool.
 */
const PoolControlSchema = defineEntity({
  name: 'PoolControl',
  tableName: 'pool_controls',
  properties: {
    queue: p.string().length(64).primary(),
    stopped: p.boolean(),
    restarts: p.integer().default(0),
    updatedAt: p.datetime(),
    updatedBy: p.string().length(64).nullable(),
  },
});
export class PoolControl extends PoolControlSchema.class {}
PoolControlSchema.setClass(PoolControl);

export const systemEntities = [ServerInstance, PoolControl];
