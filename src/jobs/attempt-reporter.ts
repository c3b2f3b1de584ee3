import type { MikroORM } from '../platform/db/orm.ts';
import type { Logger } from '../platform/logger.ts';
import type { LogLevelName } from './entities.ts';
import type { AttemptRef, JobAttempts } from './job-attempts.ts';
import { appendLogLines, type NewLogLine } from './job-logs.ts';

const flushIntervalMs = 250;
const maxBufferedLines = 1000;

/**
 * Collects a running handler's progress reports and log lines and writes them in small
 * batches (at most every quarter second), so a chatty handler costs a few writes a
 * second rather than one per call. After close(), calls are ignored: an abandoned
 * handler that keeps running cannot touch its job any more.
 */
export class AttemptReporter {
  readonly #orm: MikroORM;
  readonly #attempts: JobAttempts;
  readonly #ref: AttemptRef;
  readonly #logger: Logger;
  readonly #onLost: () => void;
  #progress: { percent: number; message: string } | undefined;
  #lines: NewLogLine[] = [];
  #droppedLines = 0;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(deps: { orm: MikroORM; attempts: JobAttempts; ref: AttemptRef; logger: Logger; onLost: () => void }) {
    this.#orm = deps.orm;
    this.#attempts = deps.attempts;
    this.#ref = deps.ref;
    this.#logger = deps.logger;
    this.#onLost = deps.onLost;
  }

  progress = (percent: number, message = ''): void => {
    if (this.#closed || !Number.isFinite(percent)) return;
    this.#progress = { percent, message: String(message) };
    this.#schedule();
  };

  log = (message: string, level: LogLevelName = 'info'): void => {
    if (this.#closed) return;
    if (this.#lines.length >= maxBufferedLines) {
      this.#droppedLines++;
      return;
    }
    this.#lines.push({ message: String(message), level, attempt: this.#ref.attempt, createdAt: new Date() });
    this.#schedule();
  };

  /** Writes what is buffered and stops accepting more. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#flush();
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.#flush();
    }, flushIntervalMs);
  }

  #flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      const progress = this.#progress;
      const lines = this.#lines;
      this.#progress = undefined;
      this.#lines = [];
      if (this.#droppedLines > 0) {
        lines.push({
          message: `(${this.#droppedLines} log lines dropped: the handler wrote faster than they could be stored)`,
          level: 'warn',
          attempt: this.#ref.attempt,
          createdAt: new Date(),
        });
        this.#droppedLines = 0;
      }
      try {
        if (lines.length > 0) await appendLogLines(this.#orm.em.fork(), this.#ref.jobId, lines);
        if (progress && !(await this.#attempts.reportProgress(this.#orm.em.fork(), this.#ref, progress.percent, progress.message))) {
          this.#onLost();
        }
      } catch (error) {
        this.#logger.warn({ err: error, jobId: this.#ref.jobId }, 'could not store job progress or logs');
      }
    });
    return this.#flushing;
  }
}
