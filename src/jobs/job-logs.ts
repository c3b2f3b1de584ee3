import type { EntityManager } from '../platform/db/orm.ts';
import { JobLogLine, type LogLevelName } from './entities.ts';

/** Told the job id whenever lines of that job were written. */
export const jobLogsChannel = 'yardmaster_job_logs';
export const maxLogLineLength = 8 * 1024;

export interface NewLogLine {
  message: string;
  level: LogLevelName;
  attempt: number;
  createdAt: Date;
}

export interface StoredLogLine extends NewLogLine {
  sequence: number;
}

/**
 * Appends lines to a job's log, numbered after the lines already there. The numbers come
 * from the job row itself (locked by the update), so they have no gaps and commit in
 * order. Returns the last number written, or 0 when the job no longer exists.
 */
export async function appendLogLines(em: EntityManager, jobId: string, lines: NewLogLine[]): Promise<number> {
  if (lines.length === 0) return 0;
  return em.transactional(async (tx) => {
    const [row] = await tx.execute<{ log_count: number }[]>('update jobs set log_count = log_count + ? where id = ? returning log_count', [
      lines.length,
      jobId,
    ]);
    if (!row) return 0;
    const first = row.log_count - lines.length + 1;
    lines.forEach((line, index) => {
      tx.create(JobLogLine, { job: jobId, sequence: first + index, ...line, message: line.message.slice(0, maxLogLineLength) });
    });
    await tx.flush();
    await tx.execute('select pg_notify(?, ?)', [jobLogsChannel, jobId]);
    return row.log_count;
  });
}

export async function readLogLines(em: EntityManager, jobId: string, afterSequence: number, limit: number): Promise<StoredLogLine[]> {
  const lines = await em.find(JobLogLine, { job: jobId, sequence: { $gt: afterSequence } }, { orderBy: { sequence: 'asc' }, limit });
  return lines.map(storedLogLine);
}

export function storedLogLine(line: JobLogLine): StoredLogLine {
  return { sequence: line.sequence, message: line.message, level: line.level, attempt: line.attempt, createdAt: line.createdAt };
}
