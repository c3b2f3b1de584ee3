/**
 * The life of an external worker, whatever its jobs do: claim jobs with a long poll (as
 * many as it has free slots), run each with its own abort signal, keep the leases alive
 * with heartbeats at the pace the server asks, obey the commands the replies carry, and
 * end every attempt with CompleteJob or FailJob (or drop it when its lease is gone).
 */
import type { JsonObject } from '@bufbuild/protobuf';
import { durationFromMs, durationMs, type Duration } from '@bufbuild/protobuf/wkt';
import { JobLogLevel, JobStatus } from '../../../gen/yardmaster/v1/jobs_pb.ts';
import { type ClaimedJob, type WorkerCommand, WorkerCommandKind } from '../../../gen/yardmaster/v1/worker_pb.ts';
import type { YardmasterClient } from '../../ts/src/node.ts';
import { backoffMs, isLeaseExpired, isTransient, sleep, withRetries } from './call-retries.ts';
import { JobLogBatch } from './job-log-batch.ts';

/** The exit code after a RESTART command: the supervisor (systemd, a shell loop) starts the worker again. */
export const restartExitCode = 75;

/** A job the worker cannot do: FailJob with this code, retried only when `retryable`. */
export class JobFailure extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, retryable = false) {
    super(message);
    this.code = code;
    this.retryable = retryable;
  }
}

/** What a job handler gets: the claimed job, a signal aborted when it must stop, and ways to report. */
export interface JobContext {
  claimed: ClaimedJob;
  client: YardmasterClient;
  workerId: string;
  signal: AbortSignal;
  /** Queues a line for the job's log (sent in batches). */
  log(message: string, level?: JobLogLevel): void;
  /** Reports progress, at most twice a second (100 % always); a cancel seen in the reply aborts `signal`. */
  progress(percent: number, message: string): Promise<void>;
}

export interface JobOutcome {
  result: JsonObject;
  outputFileIds: string[];
}

export type JobHandler = (context: JobContext) => Promise<JobOutcome>;

export interface ExternalWorkerOptions {
  client: YardmasterClient;
  workerId: string;
  queues: string[];
  concurrency: number;
  handler: JobHandler;
  /** How long one ClaimJobs waits for a job. */
  claimWaitMs?: number;
  /** Where the worker's own log lines go. */
  log?: (line: string) => void;
}

/** Why a held job's signal was aborted. */
type StopReason = { kind: 'cancelled'; reason: string } | { kind: 'released' } | { kind: 'shutdown' };

interface HeldJob {
  controller: AbortController;
  stopReason: StopReason | undefined;
}

const progressIntervalMs = 500;

export class ExternalWorker {
  readonly #options: Required<ExternalWorkerOptions>;
  readonly #held = new Map<string, HeldJob>();
  readonly #running = new Set<Promise<void>>();
  #heartbeatMs = 10_000;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Told to drain by the server (DRAIN): lifted when a reply no longer says so (StartService). */
  #serverDrain = false;
  /** Finishing for good: after a signal, STOP or RESTART. */
  #exitCode: number | undefined;
  #claimAbort = new AbortController();
  #wake: () => void = () => {};

  constructor(options: ExternalWorkerOptions) {
    this.#options = { claimWaitMs: 20_000, log: (line) => process.stdout.write(`${line}\n`), ...options };
  }

  /** Runs until told to stop and idle; resolves with the exit code (0, or restartExitCode). */
  async run(): Promise<number> {
    const { client, workerId, queues, concurrency, claimWaitMs } = this.#options;
    this.#log(`worker ${workerId} claims ${queues.join(', ')} (${concurrency} at a time)`);
    this.#scheduleHeartbeat();
    let failures = 0;
    try {
      while (this.#exitCode === undefined || this.#held.size > 0) {
        if (this.#exitCode !== undefined || this.#serverDrain || this.#held.size >= concurrency) {
          await this.#nextChange();
          continue;
        }
        this.#claimAbort = new AbortController();
        try {
          const reply = await client.worker.claimJobs(
            { workerId, queues, maxJobs: concurrency - this.#held.size, wait: durationFromMs(claimWaitMs) },
            { signal: this.#claimAbort.signal },
          );
          failures = 0;
          this.#setHeartbeatInterval(reply.heartbeatInterval);
          this.#obey(reply.commands);
          for (const claimed of reply.jobs) this.#start(claimed);
        } catch (error) {
          if (this.#claimAbort.signal.aborted) continue;
          if (!isTransient(error)) throw error;
          failures++;
          const pause = backoffMs(failures);
          this.#log(`ClaimJobs failed (${describe(error)}): trying again in ${Math.round(pause)} ms`);
          await sleep(pause);
        }
      }
    } finally {
      this.#closed = true;
      clearTimeout(this.#heartbeatTimer);
    }
    await Promise.all(this.#running);
    this.#log(`worker ${workerId} exits (${this.#exitCode})`);
    return this.#exitCode ?? 0;
  }

  /** Claims nothing more and exits 0 once the held jobs are done (SIGINT, SIGTERM). */
  drain(why: string): void {
    if (this.#exitCode !== undefined) return;
    this.#log(`draining (${why}): ${this.#held.size} job(s) to finish`);
    this.#finish(0);
  }

  /** Stops the held jobs now (a second SIGINT): each goes back to its queue with a retryable FailJob. */
  abandonJobs(): void {
    this.#finish(this.#exitCode ?? 0);
    for (const held of this.#held.values()) this.#stop(held, { kind: 'shutdown' });
  }

  #finish(code: number): void {
    this.#exitCode ??= code;
    this.#claimAbort.abort();
    this.#wake();
  }

  #nextChange(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #start(claimed: ClaimedJob): void {
    const id = claimed.job!.id;
    const held: HeldJob = { controller: new AbortController(), stopReason: undefined };
    this.#held.set(id, held);
    this.#log(`job ${id} (${claimed.job!.type}, attempt ${claimed.job!.attempt}) claimed`);
    const running = this.#runJob(claimed, held).finally(() => {
      this.#held.delete(id);
      this.#running.delete(running);
      this.#wake();
    });
    this.#running.add(running);
  }

  async #runJob(claimed: ClaimedJob, held: HeldJob): Promise<void> {
    const { client, workerId, handler } = this.#options;
    const jobId = claimed.job!.id;
    const logs = new JobLogBatch(client, jobId, workerId);
    let lastProgressAt = 0;
    const context: JobContext = {
      claimed,
      client,
      workerId,
      signal: held.controller.signal,
      log: (message, level) => logs.add(message, level),
      progress: async (percent, message) => {
        const now = Date.now();
        if (percent < 100 && now - lastProgressAt < progressIntervalMs) return;
        lastProgressAt = now;
        try {
          const { cancelRequested } = await client.worker.reportProgress({ jobId, workerId, percent, message });
          // The reason comes with the heartbeat's CANCEL_JOB; this reply only says that it was asked.
          if (cancelRequested) this.#stop(held, { kind: 'cancelled', reason: '' });
        } catch (error) {
          // Progress is worth losing to a blip; a lost lease is not.
          if (!isTransient(error)) throw error;
        }
      },
    };
    try {
      const outcome = await handler(context);
      held.controller.signal.throwIfAborted();
      await logs.close();
      await withRetries(() => client.worker.completeJob({ jobId, workerId, result: outcome.result, outputFileIds: outcome.outputFileIds }));
      this.#log(`job ${jobId} succeeded`);
    } catch (error) {
      await this.#endFailed(jobId, held, logs, error);
    }
  }

  async #endFailed(jobId: string, held: HeldJob, logs: JobLogBatch, error: unknown): Promise<void> {
    const { client, workerId } = this.#options;
    const stopped = held.stopReason;
    if (stopped?.kind === 'released' || isLeaseExpired(error)) {
      logs.discard();
      this.#log(`job ${jobId} dropped: its lease is gone (another attempt or worker has it)`);
      return;
    }
    const failure =
      stopped?.kind === 'cancelled'
        ? { code: 'CANCELLED', error: `stopped on its owner's request${stopped.reason ? ` (${stopped.reason})` : ''}`, retryable: false }
        : stopped?.kind === 'shutdown'
          ? { code: 'WORKER_SHUTDOWN', error: 'the worker shut down before the job finished', retryable: true }
          : error instanceof JobFailure
            ? { code: error.code, error: error.message, retryable: error.retryable }
            : // Only a blip may go away by trying again; a refusal (a bug, a missing permission) will not.
              { code: 'WORKER_ERROR', error: describe(error), retryable: isTransient(error) };
    logs.add(`${failure.code}: ${failure.error}`, JobLogLevel.ERROR);
    try {
      // The failure matters more than its log lines: FailJob whether they were sent or not.
      await logs.close().catch(() => {});
      const { job } = await withRetries(() => client.worker.failJob({ jobId, workerId, ...failure }));
      this.#log(
        `job ${jobId} failed with ${failure.code}: ${failure.error} (${job?.status === JobStatus.QUEUED ? 'queued again' : 'ended'})`,
      );
    } catch (failError) {
      if (isLeaseExpired(failError)) this.#log(`job ${jobId} dropped: its lease is gone`);
      else this.#log(`job ${jobId}: FailJob failed (${describe(failError)}); its lease will lapse and the server retries it`);
    }
  }

  #stop(held: HeldJob, reason: StopReason): void {
    if (held.stopReason) return;
    held.stopReason = reason;
    held.controller.abort(new Error(reason.kind));
  }

  #obey(commands: WorkerCommand[]): void {
    let drain = false;
    for (const command of commands) {
      switch (command.kind) {
        case WorkerCommandKind.CANCEL_JOB: {
          const held = this.#held.get(command.jobId);
          if (held) {
            this.#log(`job ${command.jobId}: cancel (${command.reason})`);
            this.#stop(held, { kind: 'cancelled', reason: command.reason });
          }
          break;
        }
        case WorkerCommandKind.DRAIN:
          drain = true;
          break;
        case WorkerCommandKind.STOP:
          drain = true;
          if (this.#exitCode === undefined) this.#log(`stop (${command.reason})`);
          this.#finish(0);
          break;
        case WorkerCommandKind.RESTART:
          if (this.#exitCode === undefined) this.#log(`restart (${command.reason}): finishing the held jobs first`);
          this.#finish(restartExitCode);
          break;
      }
    }
    if (drain !== this.#serverDrain) {
      this.#log(drain ? 'drain: claiming nothing more' : 'drain lifted: claiming again');
      this.#serverDrain = drain;
      if (drain) this.#claimAbort.abort();
      this.#wake();
    }
  }

  #setHeartbeatInterval(interval: Duration | undefined): void {
    if (!interval) return;
    const ms = durationMs(interval);
    if (ms > 0 && ms !== this.#heartbeatMs) {
      this.#heartbeatMs = ms;
      this.#scheduleHeartbeat();
    }
  }

  #scheduleHeartbeat(): void {
    clearTimeout(this.#heartbeatTimer);
    if (this.#closed) return;
    this.#heartbeatTimer = setTimeout(() => void this.#heartbeat(), this.#heartbeatMs);
  }

  async #heartbeat(): Promise<void> {
    const { client, workerId } = this.#options;
    try {
      const reply = await client.worker.heartbeat({ workerId, jobIds: [...this.#held.keys()] });
      for (const id of reply.releasedJobIds) {
        const held = this.#held.get(id);
        if (held) this.#stop(held, { kind: 'released' });
      }
      this.#obey(reply.commands);
      this.#setHeartbeatInterval(reply.heartbeatInterval);
    } catch (error) {
      this.#log(`Heartbeat failed (${describe(error)})`);
    }
    this.#scheduleHeartbeat();
  }

  #log(message: string): void {
    this.#options.log(`${new Date().toISOString()} ${message}`);
  }
}

export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
