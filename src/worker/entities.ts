import { defineEntity, p } from '@mikro-orm/core';
import { User } from '../auth/entities.ts';

/**
 * An external worker, as it named itself in ClaimJobs or Heartbeat (its id is its own
 * choice, stable across its restarts), with what an admin wants of it. The row is
 * refreshed by every call of the worker; one not heard from for a while is lost, and
 * housekeeping removes it after an hour.
 */
const ExternalWorkerSchema = defineEntity({
  name: 'ExternalWorker',
  tableName: 'external_workers',
  properties: {
    id: p.string().length(100).primary(),
    /** The account it calls as: the id is that account's while the worker is live. */
    account: () => p.manyToOne(User).mapToPk().deleteRule('cascade').index(),
    /** The queues of its last ClaimJobs. */
    queues: p.json<string[]>(),
    /** An admin stopped it (StopService): it gets no jobs and is told to drain, then stop. */
    stopped: p.boolean().default(false),
    /** An admin asked for a restart that its next reply has not yet carried. */
    restartPending: p.boolean().default(false),
    registeredAt: p.datetime(),
    lastSeenAt: p.datetime().index(),
    /** The end of the ClaimJobs long poll it is in, if any: a waiting worker is live. */
    waitingUntil: p.datetime().nullable(),
  },
});
export class ExternalWorker extends ExternalWorkerSchema.class {}
ExternalWorkerSchema.setClass(ExternalWorker);

export const workerEntities = [ExternalWorker];
