import type { EntityManager } from '../platform/db/orm.ts';
import { notFound } from '../platform/domain-errors.ts';
import { ExternalWorker } from './entities.ts';
import { workerLiveWindowMs } from './external-workers.ts';
/** How long a worker not heard from stays listed before housekeeping removes it. */
const lostWorkerRetentionMs = 60 * 60 * 1000;

export type ExternalWorkerState = 'running' | 'draining' | 'stopped' | 'unhealthy';
export type ExternalWorkerAction = 'start' | 'stop' | 'restart';

/** An external worker as an admin sees it. */
export interface ExternalWorkerView {
  id: string;
  accountId: string;
  accountUsername: string;
  /** The queues of its last ClaimJobs. */
  queues: string[];
  state: ExternalWorkerState;
  /** Jobs whose lease it holds now. */
  jobsHeld: number;
  lastSeenAt: Date;
}

interface WorkerRow {
  id: string;
  account_id: string;
  username: string;
  queues: string[];
  stopped: boolean;
  live: boolean;
  jobs_held: string;
  /** Raw queries return timestamps as text. */
  last_seen_at: string;
}

/**
 * What an admin sees of the external workers and asks of them. A request (stop, start,
 * restart) is only recorded here: the worker learns it from its next Heartbeat or
 * ClaimJobs reply.
 */
export class ExternalWorkersAdmin {
  /** Every worker heard from in the last hour, by id, with its account, state and jobs held. */
  async list(em: EntityManager): Promise<ExternalWorkerView[]> {
    const rows = await em.execute<WorkerRow[]>(
      `select w.id, w.account_id, u.username, w.queues, w.stopped, w.last_seen_at,
              (w.last_seen_at > ? or coalesce(w.waiting_until > now(), false)) as live,
              (select count(*) from job_leases l where l.worker_id = w.id and l.ended_at is null) as jobs_held
         from external_workers w
         join users u on u.id = w.account_id
        where w.last_seen_at > ?
        order by w.id`,
      [liveSince(), new Date(Date.now() - lostWorkerRetentionMs)],
    );
    return rows.map((row) => {
      const jobsHeld = Number(row.jobs_held);
      return {
        id: row.id,
        accountId: row.account_id,
        accountUsername: row.username,
        queues: row.queues,
        state: stateOf(row.stopped, row.live, jobsHeld),
        jobsHeld,
        lastSeenAt: new Date(row.last_seen_at),
      };
    });
  }

  /**
   * Records what an admin wants of worker `workerId`: a stop (it drains, then stops), a
   * start (lifts a stop) or a restart (told once; lifts a stop too).
   */
  async control(em: EntityManager, workerId: string, action: ExternalWorkerAction): Promise<void> {
    const change =
      action === 'stop' ? { stopped: true } : action === 'start' ? { stopped: false } : { stopped: false, restartPending: true };
    const updated = await em.nativeUpdate(ExternalWorker, { id: workerId }, change);
    if (updated === 0) throw notFound(`service "worker/${workerId}"`);
  }

  /** Live workers (recently heard from, or waiting in a long poll), stopped ones included: one count, for /metrics. */
  countLive(em: EntityManager): Promise<number> {
    return em.count(ExternalWorker, { $or: [{ lastSeenAt: { $gt: liveSince() } }, { waitingUntil: { $gt: new Date() } }] });
  }

  /** The queues live workers that are not stopped claim from, each once. */
  async servedQueues(em: EntityManager): Promise<string[]> {
    const rows = await em.execute<{ queue: string }[]>(
      `select distinct jsonb_array_elements_text(queues) as queue
         from external_workers
        where not stopped and (last_seen_at > ? or waiting_until > now())`,
      [liveSince()],
    );
    return rows.map((row) => row.queue);
  }

  /** Housekeeping: removes workers not heard from for an hour; returns how many. */
  prune(em: EntityManager): Promise<number> {
    return em.nativeDelete(ExternalWorker, { lastSeenAt: { $lt: new Date(Date.now() - lostWorkerRetentionMs) } });
  }
}

function liveSince(): Date {
  return new Date(Date.now() - workerLiveWindowMs);
}

/** A stopped worker is draining or stopped whether or not it still calls; a running one that went quiet is unhealthy. */
function stateOf(stopped: boolean, live: boolean, jobsHeld: number): ExternalWorkerState {
  if (stopped) return jobsHeld > 0 ? 'draining' : 'stopped';
  return live ? 'running' : 'unhealthy';
}
