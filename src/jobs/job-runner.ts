import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkOptions } from 'pg-boss';
import type { MikroORM } from '../platform/db/orm.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import type { Logger } from '../platform/logger.ts';
import { deadLetterEntries, queueNotifyChannel, type PgBoss } from '../platform/queue/pg-boss.ts';
import { keepClaims } from '../platform/queue/queue-claims.ts';
import type { FetchedQueueEntry } from '../platform/queue/queue-entries.ts';
import type { JobQueuePauses } from './job-queue-pauses.ts';
import type { JobPoolReport, JobPoolSwitches } from './job-pool-switches.ts';
import { AttemptReporter } from './attempt-reporter.ts';
import { Job } from './entities.ts';
import type { AttemptRef, AttemptResult, JobAttempts, QueueDisposition, StartOutcome, TakenEntry } from './job-attempts.ts';
import { lockNotAvailable } from './job-rows.ts';
import { QueueLoop } from './queue-loop.ts';
import { jobCancelChannel } from './job-changes.ts';
import type { JobFiles } from './job-files.ts';
import { JobFailure, type JobInputFile, type JobType, type JobTypeRegistry } from './job-types.ts';
import { jobErrorCodes } from './job-reasons.ts';
import { Listeners, type Unsubscribe } from '../platform/listeners.ts';

type StopReason = 'cancelled' | 'timeout' | 'shutdown' | 'lost';

interface RunningAttempt {
  ref: AttemptRef;
  queue: string;
  controller: AbortController;
  reason: StopReason | undefined;
}

const cancellationCheckMs = 2000;
/** Most attempts ended in one transaction. */
const finishGroupSize = 200;

/**
 * How this instance works a type's queue, as pg-boss `work()` options: batches of the
 * type's size, enough batches at once for its concurrency, a fresh batch as soon as one is
 * full, and per-job results. The runner's own loop (QueueLoop) follows them; the benchmark's
 * raw pg-boss baseline runs `work()` with them.
 */
export function workOptionsOf(type: JobType): WorkOptions & { perJobResults: true } {
  return {
    batchSize: type.batchSize,
    localConcurrency: Math.max(1, Math.ceil(type.concurrency / type.batchSize)),
    perJobResults: true,
    burstWhenBatchFull: true,
    // NOTIFY wakes a worker for new entries only: retries and run_after times coming due
    // are found by polling, so poll often even with notifications on.
    pollingIntervalSeconds: 1,
    notifyPollingIntervalSeconds: 1,
  };
}
const reconcileIntervalMs = 30_000;

export interface JobRunnerDeps {
  orm: MikroORM;
  files: JobFiles;
  boss: PgBoss;
  registry: JobTypeRegistry;
  attempts: JobAttempts;
  pauses: JobQueuePauses;
  /** Pools an admin stopped or restarted (on every instance). */
  pools: JobPoolSwitches;
  notifications: PgNotifications;
  logger: Logger;
  /** Names this instance in the job rows it runs. */
  instanceId: string;
  /** How long a pool an admin stopped lets its running jobs finish before it hands them back (read at each stop). */
  poolDrainMs: () => number;
}

/**
 * Runs this instance's share of the jobs: one pg-boss worker per job type whose queue
 * is not paused, each attempt under its own AbortSignal (cancellation, timeout,
 * shutdown, the drain time of a stopped pool), with a grace period after which a
 * handler that ignores the signal is abandoned.
 */
export class JobRunner {
  readonly #deps: JobRunnerDeps;
  readonly #logger: Logger;
  /** The worker loop of each queue worked here, with the restart count it started at. */
  readonly #workers = new Map<string, { loop: QueueLoop<TakenEntry>; restarts: number }>();
  /** Loops told to stop whose batches are still running: the shutdown waits for them. */
  readonly #stoppingLoops = new Set<QueueLoop<TakenEntry>>();
  /** Queues whose worker could not be started or stopped at the last try. */
  readonly #failedQueues = new Set<string>();
  /** Attempts finished here per queue since this instance started. */
  readonly #done = new Map<string, number>();
  readonly #running = new Map<string, RunningAttempt>();
  /**
   * The drain timer of each pool an admin stopped: when it fires, the jobs still running
   * there go back to their queue. Kept after it fired (until the pool starts) so that a
   * later sync does not start another; a start or restart clears it, cancelling the hand-back.
   */
  readonly #drains = new Map<string, NodeJS.Timeout>();
  #syncing: Promise<void> = Promise.resolve();
  #stopping = false;
  #timers: NodeJS.Timeout[] = [];
  readonly #finisher: AttemptFinisher;

  readonly #poolsChanged = new Listeners();

  constructor(deps: JobRunnerDeps) {
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'job-runner' });
    this.#finisher = new AttemptFinisher(deps.attempts);
  }

  async start(): Promise<void> {
    const { notifications, orm } = this.#deps;
    await notifications.subscribe(jobCancelChannel, (jobId) => this.#stop(jobId, 'cancelled'));
    // pg-boss announces new entries of a notify queue on its channel, with the queue's name;
    // its own listener wakes only its own workers, so the loops here listen too.
    await notifications.subscribe(await queueNotifyChannel(orm.em.fork()), (queue) => this.#workers.get(queue)?.loop.wake());
    notifications.onReconnect(() => {
      void this.#checkCancellations();
      for (const { loop } of this.#workers.values()) loop.wake();
    });
    this.#deps.pauses.onChange(() => void this.#syncWorkers());
    this.#deps.pools.onChange(() => void this.#syncWorkers());
    this.#timers.push(setInterval(() => void this.#checkCancellations(), cancellationCheckMs).unref());
    this.#timers.push(setInterval(() => void this.#reconcileLostAttempts(), reconcileIntervalMs).unref());
    await this.#syncWorkers();
  }

  /**
   * Stops taking jobs, lets running ones finish for up to `graceMs`, then interrupts the
   * rest: they go back to their queue without counting the attempt, for another instance.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    for (const timer of this.#timers) clearInterval(timer);
    // Clears the pools' drain timers too: the shutdown's own grace applies from here.
    await this.#syncWorkers();
    const deadline = Date.now() + graceMs;
    // A batch being taken as the loops stopped still starts, and its attempts run like the
    // others: the shutdown ends once every loop has settled its last batch.
    while (this.#running.size > 0 || this.#stoppingLoops.size > 0) {
      if (Date.now() >= deadline) for (const jobId of this.#running.keys()) this.#stop(jobId, 'shutdown');
      await sleep(50);
    }
  }

  /** Calls `listener` whenever this instance's pools were started, stopped or restarted. */
  onPoolsChanged(listener: () => void): Unsubscribe {
    return this.#poolsChanged.add(listener);
  }

  /** How each queue's pool is doing here: running, stopped (paused, or stopped by an admin), draining or unhealthy. */
  poolReports(): JobPoolReport[] {
    const running = new Map<string, number>();
    for (const attempt of this.#running.values()) running.set(attempt.queue, (running.get(attempt.queue) ?? 0) + 1);
    return this.#deps.registry.all().map((type) => {
      const jobsRunning = running.get(type.name) ?? 0;
      const state = this.#failedQueues.has(type.name)
        ? 'unhealthy'
        : this.#workers.has(type.name)
          ? 'running'
          : jobsRunning > 0
            ? 'draining'
            : 'stopped';
      return { queue: type.name, state, concurrency: type.concurrency, jobsRunning, jobsDone: this.#done.get(type.name) ?? 0 };
    });
  }

  /**
   * Starts or stops the queues' worker loops so that exactly the queues neither paused nor stopped
   * by an admin are worked, and restarts those whose restart count moved.
   */
  #syncWorkers(): Promise<void> {
    this.#syncing = this.#syncing.then(async () => {
      const { pauses, pools } = this.#deps;
      for (const type of this.#deps.registry.all()) {
        const wanted = !this.#stopping && !pauses.isPaused(type.name) && !pools.isStopped(type.name);
        this.#planDrain(type.name, !this.#stopping && pools.isStopped(type.name));
        const worker = this.#workers.get(type.name);
        const restarts = pools.restarts(type.name);
        try {
          if (worker && (!wanted || worker.restarts !== restarts)) {
            this.#workers.delete(type.name);
            // Without waiting: jobs already running finish on their own, and a later
            // pause, stop or restart must not queue behind them.
            this.#stoppingLoops.add(worker.loop);
            void worker.loop.stop().finally(() => this.#stoppingLoops.delete(worker.loop));
          }
          if (wanted && !this.#workers.has(type.name)) this.#workers.set(type.name, { loop: this.#loopOf(type), restarts });
          this.#failedQueues.delete(type.name);
        } catch (error) {
          this.#failedQueues.add(type.name);
          this.#logger.error({ err: error, queue: type.name }, 'could not start or stop the queue worker');
        }
      }
      this.#poolsChanged.notify(undefined, (error) => this.#logger.error({ err: error }, 'a pool change listener failed'));
    });
    return this.#syncing;
  }

  /**
   * The worker loop of a type's queue: batches of the type's size, enough batches at once
   * for its concurrency, each fetched and started in one transaction.
   */
  #loopOf(type: JobType): QueueLoop<TakenEntry> {
    const { attempts, instanceId } = this.#deps;
    const options = workOptionsOf(type);
    return new QueueLoop<TakenEntry>({
      queue: type.name,
      batchSize: type.batchSize,
      slots: options.localConcurrency ?? 1,
      pollingMs: (options.pollingIntervalSeconds ?? 1) * 1000,
      take: () => attempts.takeBatch(type.name, type.batchSize, instanceId),
      work: (batch) => this.#runBatch(type, batch),
      isContention: (error) => errorCodeOf(error) === lockNotAvailable,
      onHealth: (healthy) => {
        if (healthy) this.#failedQueues.delete(type.name);
        else this.#failedQueues.add(type.name);
        this.#poolsChanged.notify(undefined, (error) => this.#logger.error({ err: error }, 'a pool change listener failed'));
      },
      logger: this.#logger,
    });
  }

  /**
   * Runs a taken batch and settles the queue entries its attempts leave open: failed ones
   * retried by pg-boss, and the ones failed for good with attempts left failed without a
   * retry. A completed attempt's entry was completed in the transaction that ended the
   * job (an attempt superseded meanwhile had its entry failed or fetched again, which a
   * completion fenced to this attempt would leave alone), so pg-boss's no-op completion
   * after the handler is left out. Claims are kept alive while the attempts run (the
   * queue's heartbeat).
   */
  async #runBatch(type: JobType, batch: TakenEntry[]): Promise<void> {
    const { boss } = this.#deps;
    const started = batch.filter(({ start }) => start.kind === 'started');
    if (started.length === 0) return;
    const claims = keepClaims(
      boss,
      type.name,
      started.map(({ entry }) => entry),
      this.#logger,
    );
    let dispositions: QueueDisposition[];
    try {
      dispositions = await Promise.all(
        started.map(async ({ entry, start }) => {
          try {
            return await this.#runOne(type, entry, start);
          } catch (error) {
            this.#logger.error({ err: error, jobId: entry.data.jobId }, 'running a job failed');
            return 'failed' as const;
          } finally {
            claims.release(entry);
          }
        }),
      );
    } finally {
      claims.releaseAll();
    }
    const ofDisposition = (wanted: QueueDisposition) =>
      started.filter((_, index) => dispositions[index] === wanted).map(({ entry }) => ({ id: entry.id, retryCount: entry.retryCount }));
    const settles: [QueueDisposition, { id: string; retryCount: number }[]][] = [
      ['failed', ofDisposition('failed')],
      ['deadletter', ofDisposition('deadletter')],
    ];
    for (const [disposition, entries] of settles) {
      if (entries.length === 0) continue;
      try {
        if (disposition === 'failed') await boss.fail(type.name, entries, null);
        else await deadLetterEntries(boss, type.name, entries);
      } catch (error) {
        // The entries stay active: pg-boss's expiry (or heartbeat check) fails and retries them.
        this.#logger.error({ err: error, queue: type.name, disposition }, 'settling queue entries failed');
      }
    }
  }

  async #runOne(type: JobType, entry: FetchedQueueEntry, start: StartOutcome): Promise<QueueDisposition> {
    const { orm, attempts } = this.#deps;
    if (start.kind !== 'started') return 'completed';
    const { job, attempt: ref } = start;
    const running: RunningAttempt = { ref, queue: type.name, controller: new AbortController(), reason: undefined };
    this.#running.set(job.id, running);
    const onQueueAbort = () => this.#stop(job.id, this.#stopping ? 'shutdown' : 'lost');
    entry.signal.addEventListener('abort', onQueueAbort, { once: true });
    const timeout = setTimeout(() => this.#stop(job.id, 'timeout'), type.timeoutMs);
    const reporter = new AttemptReporter({ orm, attempts, ref, logger: this.#logger, onLost: () => this.#stop(job.id, 'lost') });
    const outputFileIds: string[] = [];
    let attemptOver = false;
    try {
      let inputs: JobInputFile[];
      try {
        inputs = await this.#deps.files.inputs(orm.em.fork(), job);
      } catch (error) {
        return await attempts.finish(ref, attemptResult(undefined, { ok: false, error }, false, type));
      }
      const writeOutput = async (spec: Parameters<JobFiles['writeOutput']>[2], bytes: AsyncIterable<Uint8Array>) => {
        if (attemptOver) throw new Error('the attempt is over: its outputs can no longer be written');
        const id = await this.#deps.files.writeOutput(orm.em.fork(), job, spec, bytes, running.controller.signal);
        outputFileIds.push(id);
        return { id };
      };
      const settled = Promise.resolve()
        .then(() =>
          type.run({
            jobId: job.id,
            ownerId: job.ownerId,
            params: job.params,
            attempt: ref.attempt,
            signal: running.controller.signal,
            progress: reporter.progress,
            log: reporter.log,
            inputs,
            writeOutput,
          }),
        )
        .then(
          (value) => ({ ok: true as const, value: value ?? {} }),
          (error: unknown) => ({ ok: false as const, error }),
        );
      const first = await Promise.race([settled, aborted(running.controller.signal)]);
      let outcome: HandlerOutcome | undefined = first === 'aborted' ? undefined : first;
      let abandoned = false;
      if (first === 'aborted') {
        const graceOver = new AbortController();
        const afterGrace = await Promise.race([
          settled,
          sleep(type.cancelGraceMs, 'abandoned' as const, { signal: graceOver.signal }).catch(() => 'abandoned' as const),
        ]);
        graceOver.abort();
        if (afterGrace === 'abandoned') {
          abandoned = true;
          this.#logger.warn(
            { jobId: job.id, type: type.name, reason: running.reason },
            'the handler did not stop within its grace period: abandoned',
          );
        } else {
          outcome = afterGrace;
        }
      }
      attemptOver = true;
      await reporter.close();
      const result = attemptResult(running.reason, outcome, abandoned, type);
      if (result.kind === 'succeeded') result.outputFileIds = outputFileIds;
      const disposition = await this.#finisher.finish(ref, result);
      if (result.kind !== 'succeeded' && outputFileIds.length > 0) await this.#deps.files.discard(orm.em.fork(), outputFileIds);
      return disposition;
    } finally {
      attemptOver = true;
      clearTimeout(timeout);
      entry.signal.removeEventListener('abort', onQueueAbort);
      this.#running.delete(job.id);
      this.#done.set(type.name, (this.#done.get(type.name) ?? 0) + 1);
    }
  }

  /**
   * Starts the drain time of a pool an admin stopped (once per stop), or cancels it when
   * the pool runs again. A pause has none: the jobs of a paused queue finish however long
   * they take, as a pause is not meant to interrupt work.
   */
  #planDrain(queue: string, stopped: boolean): void {
    const timer = this.#drains.get(queue);
    if (!stopped) {
      clearTimeout(timer);
      this.#drains.delete(queue);
      return;
    }
    if (timer !== undefined) return;
    const drainMs = this.#deps.poolDrainMs();
    const handBack = () => {
      const jobIds = [...this.#running].filter(([, attempt]) => attempt.queue === queue).map(([jobId]) => jobId);
      if (jobIds.length === 0) return;
      this.#logger.info({ queue, jobs: jobIds.length, drainMs }, 'the stopped pool drained for its drain time: handing its jobs back');
      for (const jobId of jobIds) this.#stop(jobId, 'shutdown');
    };
    this.#drains.set(queue, setTimeout(handBack, drainMs).unref());
  }

  /** Aborts the attempt of `jobId` running here, if any, remembering why. */
  #stop(jobId: string, reason: StopReason): void {
    const running = this.#running.get(jobId);
    if (!running || running.controller.signal.aborted) return;
    running.reason = reason;
    running.controller.abort(new Error(`job ${reason}`));
  }

  /** Catches cancellations whose notification this instance missed. */
  async #checkCancellations(): Promise<void> {
    if (this.#running.size === 0) return;
    try {
      const cancelled = await this.#deps.attempts.cancelRequested(this.#deps.orm.em.fork(), [...this.#running.keys()]);
      for (const jobId of cancelled) this.#stop(jobId, 'cancelled');
    } catch (error) {
      this.#logger.warn({ err: error }, 'checking for cancellations failed');
    }
  }

  /**
   * Fails jobs whose attempt was lost for good: the instance running them died, and
   * pg-boss gave up on their queue entry (no attempts left), so no redelivery will
   * ever tell us.
   */
  async #reconcileLostAttempts(): Promise<void> {
    const { orm, boss, attempts } = this.#deps;
    try {
      const stale = await orm.em
        .fork()
        .find(Job, { status: 'running', updatedAt: { $lt: new Date(Date.now() - reconcileIntervalMs) } }, { limit: 100 });
      for (const job of stale) {
        if (this.#running.has(job.id) || !job.queueJobId || !job.workerId) continue;
        const entry = await boss.getJobById(job.type, job.queueJobId);
        if (entry && (entry.state === 'active' || entry.state === 'created' || entry.state === 'retry')) continue;
        await attempts.finish(
          { jobId: job.id, attempt: job.attempt, workerId: job.workerId },
          {
            kind: 'failed',
            message: `attempt ${job.attempt} was lost: the worker running it stopped answering`,
            code: jobErrorCodes.WORKER_LOST,
            retryable: false,
          },
        );
      }
    } catch (error) {
      this.#logger.warn({ err: error }, 'reconciling lost attempts failed');
    }
  }
}

/** The SQLSTATE of a database error, or of the error it wraps. */
function errorCodeOf(error: unknown): unknown {
  for (let current = error; current && typeof current === 'object'; current = (current as { cause?: unknown }).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

function aborted(signal: AbortSignal): Promise<'aborted'> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve('aborted');
    else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
}

type HandlerOutcome = { ok: true; value: Record<string, unknown> } | { ok: false; error: unknown };

/** What the attempt amounts to, from why it was stopped (if it was) and how the handler ended. */
function attemptResult(
  reason: StopReason | undefined,
  outcome: HandlerOutcome | undefined,
  abandoned: boolean,
  type: JobType,
): AttemptResult {
  switch (reason) {
    case 'cancelled':
      return { kind: 'cancelled', abandoned };
    case 'shutdown':
      return { kind: 'interrupted' };
    case 'timeout':
      return {
        kind: 'failed',
        message: `the attempt ran longer than the ${type.name} timeout (${type.timeoutMs / 1000} s)`,
        code: jobErrorCodes.DEADLINE_EXCEEDED,
        retryable: true,
        abandoned,
      };
    case 'lost':
      return {
        kind: 'failed',
        message: 'the attempt lost its claim on the job',
        code: jobErrorCodes.WORKER_LOST,
        retryable: true,
        abandoned,
      };
    case undefined:
      break;
  }
  if (!outcome)
    return { kind: 'failed', message: 'the handler did not finish', code: jobErrorCodes.HANDLER_ERROR, retryable: true, abandoned };
  if (outcome.ok) return { kind: 'succeeded', result: outcome.value };
  const error = outcome.error;
  if (error instanceof JobFailure) return { kind: 'failed', message: error.message, code: error.code, retryable: error.retryable };
  return {
    kind: 'failed',
    message: error instanceof Error ? error.message : String(error),
    code: jobErrorCodes.HANDLER_ERROR,
    retryable: true,
  };
}

interface PendingFinish {
  ref: AttemptRef;
  result: AttemptResult;
  resolve: (disposition: QueueDisposition) => void;
  reject: (error: unknown) => void;
}

/**
 * Ends attempts in shared transactions: finishes that arrive while one transaction is
 * being written wait and go together in the next, so a busy runner commits once per
 * group of jobs and an idle one adds no delay. A group that fails is retried one attempt
 * at a time, so one bad attempt cannot fail the others.
 */
class AttemptFinisher {
  readonly #attempts: JobAttempts;
  #pending: PendingFinish[] = [];
  #flushing = false;

  constructor(attempts: JobAttempts) {
    this.#attempts = attempts;
  }

  finish(ref: AttemptRef, result: AttemptResult): Promise<QueueDisposition> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ ref, result, resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    // The attempts of a fetched batch that end in the same turn of the event loop go
    // together: without this wait the first would commit alone and the rest after it.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.#pending.length > 0) {
      const group = this.#pending.splice(0, finishGroupSize);
      try {
        const dispositions = await this.#attempts.finishMany(group);
        for (const [index, item] of group.entries()) item.resolve(dispositions[index]!);
      } catch (error) {
        if (group.length === 1) {
          group[0]!.reject(error);
          continue;
        }
        for (const item of group) {
          await this.#attempts.finish(item.ref, item.result).then(item.resolve, item.reject);
        }
      }
    }
    this.#flushing = false;
  }
}
