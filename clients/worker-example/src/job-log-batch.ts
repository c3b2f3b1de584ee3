import { timestampNow } from '@bufbuild/protobuf/wkt';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { JobLogLevel } from '../../../gen/yardmaster/v1/jobs_pb.ts';
import type { WorkerLogLineSchema } from '../../../gen/yardmaster/v1/worker_pb.ts';
import type { YardmasterClient } from '../../ts/src/node.ts';
import { isTransient, withRetries } from './call-retries.ts';

type LogLine = MessageInitShape<typeof WorkerLogLineSchema>;

/** Send a batch once it has this many lines, or this long after its first line. */
const batchLines = 100;
const batchDelayMs = 1000;
/** Lines kept while the server cannot be reached; older ones are dropped beyond this. */
const maxPendingLines = 1000;

/**
 * A job's log lines on their way to AppendJobLogs: collected and sent in batches (one call
 * per second or per hundred lines), each line with the time it was written.
 */
export class JobLogBatch {
  readonly #client: YardmasterClient;
  readonly #jobId: string;
  readonly #workerId: string;
  #pending: LogLine[] = [];
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> = Promise.resolve();

  constructor(client: YardmasterClient, jobId: string, workerId: string) {
    this.#client = client;
    this.#jobId = jobId;
    this.#workerId = workerId;
  }

  add(message: string, level: JobLogLevel = JobLogLevel.INFO): void {
    this.#pending.push({ message, level, time: timestampNow() });
    if (this.#pending.length > maxPendingLines) this.#pending.splice(0, this.#pending.length - maxPendingLines);
    if (this.#pending.length >= batchLines) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), batchDelayMs);
  }

  /** Sends what is left; rejects when the lease is gone. */
  async close(): Promise<void> {
    this.#flush();
    await this.#sending;
    while (this.#pending.length > 0) await withRetries(() => this.#send());
  }

  /** Forgets the unsent lines (the job was dropped). */
  discard(): void {
    clearTimeout(this.#timer);
    this.#pending = [];
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    // One call at a time keeps the lines in order.
    this.#sending = this.#sending.then(() => this.#send().catch(() => {}));
  }

  async #send(): Promise<void> {
    const lines = this.#pending.splice(0, batchLines);
    if (lines.length === 0) return;
    try {
      await this.#client.worker.appendJobLogs({ jobId: this.#jobId, workerId: this.#workerId, lines });
    } catch (error) {
      // Kept for the next batch when the server was out of reach for a moment.
      if (isTransient(error)) this.#pending.unshift(...lines);
      throw error;
    }
  }
}
