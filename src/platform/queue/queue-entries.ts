import type { Job as PgBossJob } from 'pg-boss';
import { newId } from '../ids.ts';

/** The fields of a job row that its queue entry is made from. */
export interface QueuedJob {
  id: string;
  queueJobId?: string | null;
  queuedAt?: Date | null;
  priority: number;
  maxAttempts: number;
  attempt: number;
}

/** What a queue entry carries: the job row it stands for. */
export interface QueueEntryData {
  jobId: string;
}

/** What pg-boss holds for a job: an entry per queueing, carrying the attempts left. */
export interface QueueEntry {
  id: string;
  data: QueueEntryData;
  priority: number;
  retryLimit: number;
  startAfter?: Date;
}

/** A queue entry as a worker receives it from pg-boss. */
export type FetchedQueueEntry = PgBossJob<QueueEntryData>;

/** The pg-boss entry for the job's current queue entry id, running its remaining attempts. */
export function queueEntryOf(job: QueuedJob, startAfter: Date | null | undefined): QueueEntry {
  return {
    id: job.queueJobId!,
    data: { jobId: job.id },
    priority: job.priority,
    retryLimit: job.maxAttempts - job.attempt - 1,
    ...(startAfter ? { startAfter } : {}),
  };
}

/** Gives the job a fresh queue entry id (the old entry is settled separately) and returns its entry. */
export function nextQueueEntry(job: QueuedJob, startAfter: Date | null | undefined): QueueEntry {
  job.queueJobId = newId();
  job.queuedAt = new Date();
  return queueEntryOf(job, startAfter);
}
