import type { EntityManager } from '../platform/db/orm.ts';
import { failedPrecondition } from '../platform/domain-errors.ts';
import { workerReasons } from './worker-reasons.ts';

/** A worker is live while it was heard from this recently (three missed 10 s heartbeats), or waits in ClaimJobs. */
export const workerLiveWindowMs = 30_000;

/** What an admin wants of a worker, as its row says at its latest call. */
export interface WorkerControl {
  stopped: boolean;
  /** A restart was asked and this reply is the one that carries it. */
  restart: boolean;
}

/**
 * The external workers' rows as their own calls keep them: every ClaimJobs and Heartbeat
 * records that the worker is alive (one upsert), claims its id for the caller's account
 * and reads what an admin wants of it.
 */
export class ExternalWorkers {
  /**
   * Records a call of worker `workerId` by account `accountId`. `queues` replaces the
   * queues it claims from (ClaimJobs); `waitingUntil` marks a long poll it is in (live
   * until then). The id is refused (WORKER_ID_IN_USE) while a live worker of another
   * account has it; a lost worker's id may be taken over.
   */
  async touch(
    em: EntityManager,
    accountId: string,
    workerId: string,
    update: { queues?: string[]; waitingUntil?: Date | null },
  ): Promise<WorkerControl> {
    const now = new Date();
    // The sub-select in RETURNING reads the row as it was before this statement: the
    // restart flag is cleared and reported by the same call, so it is delivered once.
    const [row] = await em.execute<{ stopped: boolean; restart_pending: boolean }[]>(
      `insert into external_workers as w (id, account_id, queues, stopped, restart_pending, registered_at, last_seen_at, waiting_until)
       values (?, ?, ?::jsonb, false, false, ?, ?, ?)
       on conflict (id) do update set
         account_id = excluded.account_id,
         queues = case when ? then excluded.queues else w.queues end,
         last_seen_at = excluded.last_seen_at,
         waiting_until = case when ? then excluded.waiting_until else w.waiting_until end,
         restart_pending = false
       where w.account_id = excluded.account_id
          or (w.last_seen_at < ? and (w.waiting_until is null or w.waiting_until < ?))
       returning w.stopped, (select restart_pending from external_workers where id = w.id) as restart_pending`,
      [
        workerId,
        accountId,
        JSON.stringify(update.queues ?? []),
        now,
        now,
        update.waitingUntil ?? null,
        update.queues !== undefined,
        update.waitingUntil !== undefined,
        new Date(now.getTime() - workerLiveWindowMs),
        now,
      ],
    );
    if (!row) {
      throw failedPrecondition(
        `worker id "${workerId}" is in use by a live worker of another account: choose another id`,
        workerReasons.WORKER_ID_IN_USE,
      );
    }
    return { stopped: row.stopped, restart: row.restart_pending };
  }
}
