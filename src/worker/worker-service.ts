import type { Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { invalidField, Violations } from '../platform/domain-errors.ts';
import { isUuid } from '../platform/ids.ts';
import type { ClaimWakeups } from './claim-wakeups.ts';
import type { ExternalWorkers, WorkerControl } from './external-workers.ts';

export type LogLevelName = 'debug' | 'info' | 'warn' | 'error';

/** Who holds a lease: a worker's own id (empty: any worker of the account) and its account. */
export interface LeaseHolder {
  workerId: string;
  accountId: string;
}

/** What the worker area needs of jobs held by external workers (the jobs area's JobLeases). */
export interface LeasedJobs<Job> {
  isClaimable(queue: string): boolean;
  claim(
    em: EntityManager,
    holder: LeaseHolder,
    queue: string,
    maxJobs: number,
  ): Promise<{ job: Job; leaseExpiresAt: Date; deadlineAt: Date }[]>;
  heartbeat(
    em: EntityManager,
    holder: LeaseHolder,
    jobIds: string[],
  ): Promise<{
    leases: { jobId: string; attempt: number; expiresAt: Date }[];
    released: string[];
    cancels: { jobId: string; reason: string }[];
    held: number;
    shortestLeaseMs: number | undefined;
  }>;
  progress(em: EntityManager, holder: LeaseHolder, jobId: string, percent: number, message: string): Promise<{ cancelRequested: boolean }>;
  appendLogs(
    em: EntityManager,
    holder: LeaseHolder,
    jobId: string,
    lines: { message: string; level: LogLevelName; createdAt: Date }[],
  ): Promise<number>;
  complete(em: EntityManager, holder: LeaseHolder, jobId: string, result: Record<string, unknown>, outputFileIds: string[]): Promise<Job>;
  fail(em: EntityManager, holder: LeaseHolder, jobId: string, failure: { message: string; code: string; retryable: boolean }): Promise<Job>;
}

export type WorkerCommandKind = 'cancel_job' | 'drain' | 'stop' | 'restart';

export interface WorkerCommand {
  kind: WorkerCommandKind;
  jobId: string;
  reason: string;
}

export interface ClaimInput {
  workerId: string;
  queues: string[];
  maxJobs: number;
  waitMs: number;
}

export interface ClaimReply<Job> {
  jobs: { job: Job; leaseExpiresAt: Date; deadlineAt: Date }[];
  commands: WorkerCommand[];
  heartbeatIntervalMs: number;
}

export interface HeartbeatReply {
  leases: { jobId: string; attempt: number; expiresAt: Date }[];
  released: string[];
  commands: WorkerCommand[];
  heartbeatIntervalMs: number;
}

export interface WorkerServiceDeps<Job> {
  jobs: LeasedJobs<Job>;
  workers: ExternalWorkers;
  wakeups: ClaimWakeups;
  isPaused: (queue: string) => boolean;
  /**
   * How often a waiting claim looks again without being woken: jobs whose run_after or
   * retry delay comes due announce nothing, and a stopped worker may be started.
   */
  recheckMs?: number;
}

const workerIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$/;
const codePattern = /^[A-Z0-9_]{1,64}$/;
const maxWaitMs = 60_000;
const maxQueues = 50;
const maxJobsPerClaim = 100;
const maxJobIds = 1000;
const maxLogLines = 1000;
const maxOutputs = 100;
const maxResultBytes = 1024 * 1024;
/** The heartbeat pace a worker is given: often enough to be seen live, and a third of its shortest lease. */
const defaultHeartbeatMs = 10_000;
const minHeartbeatMs = 1000;

/**
 * WorkerService: external workers claim jobs of declared types, keep their leases with
 * heartbeats, report on them and end them. Every call names the caller's account as the
 * holder, so a worker can touch only the jobs it holds.
 */
export class WorkerService<Job> {
  readonly #deps: WorkerServiceDeps<Job>;
  readonly #recheckMs: number;

  constructor(deps: WorkerServiceDeps<Job>) {
    this.#deps = deps;
    this.#recheckMs = deps.recheckMs ?? 5000;
  }

  /**
   * Claims jobs for a worker: at once when some are ready, else as soon as one is queued
   * (woken by ClaimWakeups), else empty at the end of the wait.
   */
  async claim(em: EntityManager, caller: Caller, input: ClaimInput, signal: AbortSignal): Promise<ClaimReply<Job>> {
    const { jobs, workers, wakeups, isPaused } = this.#deps;
    const violations = new Violations();
    checkWorkerId(input.workerId, violations);
    const queues = [...new Set(input.queues)];
    violations.check(queues.length >= 1 && queues.length <= maxQueues, 'queues', `must name 1 to ${maxQueues} queues`);
    for (const [index, queue] of input.queues.entries()) {
      violations.check(jobs.isClaimable(queue), `queues[${index}]`, 'is not a job type declared for external workers');
    }
    const maxJobs = input.maxJobs === 0 ? 1 : input.maxJobs;
    violations.check(maxJobs >= 1 && maxJobs <= maxJobsPerClaim, 'max_jobs', `must be from 1 to ${maxJobsPerClaim}`);
    violations.check(input.waitMs >= 0 && input.waitMs <= maxWaitMs, 'wait', 'must be from 0 to 60 s');
    violations.throwIfAny();

    const holder = { workerId: input.workerId, accountId: caller.userId };
    const deadline = Date.now() + input.waitMs;
    // Marked waiting only once it waits: a claim that finds jobs at once writes the row once.
    let control = await workers.touch(em, caller.userId, input.workerId, { queues, waitingUntil: null });
    let waiting = false;
    // Every touch clears the restart flag it reads: remember one seen by any of them.
    let restart = control.restart;
    const claimed: ClaimReply<Job>['jobs'] = [];
    for (;;) {
      const ticket = wakeups.ticket(queues);
      if (!control.stopped) {
        for (const queue of queues) {
          if (claimed.length >= maxJobs) break;
          if (isPaused(queue)) continue;
          claimed.push(...(await jobs.claim(em.fork(), holder, queue, maxJobs - claimed.length)));
        }
      }
      if (claimed.length > 0 || Date.now() >= deadline || signal.aborted) break;
      if (!waiting) {
        waiting = true;
        control = await workers.touch(em, caller.userId, input.workerId, { waitingUntil: new Date(deadline) });
        restart ||= control.restart;
      }
      await wakeups.wait(queues, ticket, Math.min(deadline, Date.now() + this.#recheckMs), signal);
      if (signal.aborted) break;
      control = await workers.touch(em, caller.userId, input.workerId, {});
      restart ||= control.restart;
    }
    if (waiting) control = await workers.touch(em, caller.userId, input.workerId, { waitingUntil: null });
    const { held, shortestLeaseMs } = await jobs.heartbeat(em, holder, []);
    return {
      jobs: claimed,
      commands: workerCommands({ ...control, restart: restart || control.restart }, held),
      heartbeatIntervalMs: heartbeatIntervalOf(shortestLeaseMs),
    };
  }

  /** Extends the worker's leases on the jobs it names; replies with what it must do. */
  async heartbeat(em: EntityManager, caller: Caller, input: { workerId: string; jobIds: string[] }): Promise<HeartbeatReply> {
    const violations = new Violations();
    checkWorkerId(input.workerId, violations);
    violations.check(input.jobIds.length <= maxJobIds, 'job_ids', `must name at most ${maxJobIds} jobs`);
    for (const [index, id] of input.jobIds.entries()) violations.check(isUuid(id), `job_ids[${index}]`, 'must be a UUID');
    violations.throwIfAny();
    const control = await this.#deps.workers.touch(em, caller.userId, input.workerId, {});
    const outcome = await this.#deps.jobs.heartbeat(em, { workerId: input.workerId, accountId: caller.userId }, input.jobIds);
    return {
      leases: outcome.leases,
      released: outcome.released,
      commands: [
        ...outcome.cancels.map((cancel): WorkerCommand => ({ kind: 'cancel_job', jobId: cancel.jobId, reason: cancel.reason })),
        ...workerCommands(control, outcome.held),
      ],
      heartbeatIntervalMs: heartbeatIntervalOf(outcome.shortestLeaseMs),
    };
  }

  progress(em: EntityManager, caller: Caller, input: { workerId: string; jobId: string; percent: number; message: string }) {
    checkOptionalWorkerId(input.workerId);
    if (input.message.length > 500) throw invalidField('message', 'must be at most 500 characters');
    return this.#deps.jobs.progress(em, holderOf(caller, input.workerId), input.jobId, input.percent, input.message);
  }

  appendLogs(
    em: EntityManager,
    caller: Caller,
    input: { workerId: string; jobId: string; lines: { message: string; level: LogLevelName; createdAt: Date }[] },
  ): Promise<number> {
    checkOptionalWorkerId(input.workerId);
    if (input.lines.length < 1 || input.lines.length > maxLogLines) throw invalidField('lines', `must hold 1 to ${maxLogLines} lines`);
    return this.#deps.jobs.appendLogs(em, holderOf(caller, input.workerId), input.jobId, input.lines);
  }

  complete(
    em: EntityManager,
    caller: Caller,
    input: { workerId: string; jobId: string; result: Record<string, unknown>; outputFileIds: string[] },
  ): Promise<Job> {
    checkOptionalWorkerId(input.workerId);
    const violations = new Violations();
    violations.check(Buffer.byteLength(JSON.stringify(input.result)) <= maxResultBytes, 'result', 'must be at most 1 MiB as JSON');
    violations.check(input.outputFileIds.length <= maxOutputs, 'output_file_ids', `must name at most ${maxOutputs} files`);
    violations.check(new Set(input.outputFileIds).size === input.outputFileIds.length, 'output_file_ids', 'must not name a file twice');
    violations.throwIfAny();
    return this.#deps.jobs.complete(em, holderOf(caller, input.workerId), input.jobId, input.result, input.outputFileIds);
  }

  fail(
    em: EntityManager,
    caller: Caller,
    input: { workerId: string; jobId: string; error: string; retryable: boolean; code: string },
  ): Promise<Job> {
    checkOptionalWorkerId(input.workerId);
    if (input.code !== '' && !codePattern.test(input.code)) {
      throw invalidField('code', 'must be 1 to 64 characters of A-Z, 0-9 and _');
    }
    return this.#deps.jobs.fail(em, holderOf(caller, input.workerId), input.jobId, {
      message: input.error.trim() === '' ? 'the worker reported a failure without a message' : input.error,
      code: input.code || 'HANDLER_ERROR',
      retryable: input.retryable,
    });
  }
}

function holderOf(caller: Caller, workerId: string): LeaseHolder {
  return { workerId, accountId: caller.userId };
}

function checkWorkerId(workerId: string, violations: Violations): void {
  violations.check(
    workerIdPattern.test(workerId),
    'worker_id',
    workerId === ''
      ? 'is required'
      : 'must be 1 to 100 characters of A-Z, a-z, 0-9, ".", "_", ":", "@" and "-", starting with a letter or digit',
  );
}

function checkOptionalWorkerId(workerId: string): void {
  if (workerId === '') return;
  const violations = new Violations();
  checkWorkerId(workerId, violations);
  violations.throwIfAny();
}

/** Drain while a stopped worker still holds jobs, stop once it holds none; a restart once. */
function workerCommands(control: WorkerControl, held: number): WorkerCommand[] {
  const commands: WorkerCommand[] = [];
  if (control.stopped) {
    commands.push(
      held > 0
        ? { kind: 'drain', jobId: '', reason: 'an admin stopped this worker: finish the held jobs and claim no more' }
        : { kind: 'stop', jobId: '', reason: 'an admin stopped this worker' },
    );
  }
  if (control.restart) commands.push({ kind: 'restart', jobId: '', reason: 'an admin asked for a restart' });
  return commands;
}

function heartbeatIntervalOf(shortestLeaseMs: number | undefined): number {
  if (shortestLeaseMs === undefined) return defaultHeartbeatMs;
  return Math.max(minHeartbeatMs, Math.min(defaultHeartbeatMs, Math.floor(shortestLeaseMs / 3)));
}
