import type { EntityManager } from '../platform/db/orm.ts';
import { appendEvent } from '../platform/events/event-log.ts';
import { EventSequencer } from '../platform/events/event-sequencer.ts';
import type { Job } from './entities.ts';
import { jobView, toSnapshot, type JobView } from './job-view.ts';

export type JobEventKind = 'created' | 'updated' | 'deleted';

/** Channel on which a running job's cancellation reaches the instance that runs it. */
export const jobCancelChannel = 'yardmaster_job_cancel';

/**
 * Every change to a job goes through here: it bumps the job's version, records the
 * event in the same transaction, and has the event sequenced right after the commit.
 */
export class JobChanges {
  readonly #sequencer: EventSequencer;

  constructor(sequencer: EventSequencer) {
    this.#sequencer = sequencer;
  }

  async transact<T>(em: EntityManager, work: (tx: EntityManager) => Promise<T>): Promise<T> {
    const result = await em.transactional(work);
    this.#sequencer.poke();
    return result;
  }

  /** Events were committed by a transaction of its own (not through `transact`): have them sequenced. */
  sequenceCommitted(): void {
    this.#sequencer.poke();
  }

  /** The statement that numbers the events of the caller's transaction before its COMMIT (EventSequencer.inTransaction). */
  sequenceInTransaction(): { text: string; values: unknown[] } {
    return EventSequencer.inTransaction();
  }

  /** A transaction that ran `sequenceInTransaction` committed; `assigned` is what that statement answered. */
  sequencedInTransaction(assigned: number): void {
    this.#sequencer.committedInTransaction(assigned);
  }

  /**
   * Records that `job` was created, changed (call after changing it) or is being
   * deleted; returns the job as the event shows it.
   */
  record(tx: EntityManager, job: Job, kind: JobEventKind): JobView {
    if (kind === 'updated') {
      job.version += 1;
      job.updatedAt = new Date();
    }
    const view = jobView(job);
    appendEvent(tx, { kind: `job.${kind}`, subjectId: job.id, ownerId: job.owner, payload: toSnapshot(view) });
    return view;
  }
}
