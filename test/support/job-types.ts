/**
 * The job types the tests register besides the built-in ones (`startTestServer({ jobTypes })`),
 * each with the handles a test drives it by. Every test file imports this module afresh
 * (vitest isolates files), so the maps below are per file.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJobType, JobFailure } from '../../src/jobs/job-types.ts';
import { randomHex } from './assertions.ts';

// ---------------------------------------------------------------------------------------
// JobsService tests (test/jobs/)

export const heldJobType = defineJobType({
  name: 'held',
  description: 'Its queue stays paused for the whole file, so its jobs stay queued.',
  paramsSchema: z.object({ note: z.string().optional() }).strict(),
  concurrency: 5,
  batchSize: 1,
  timeoutMs: 10_000,
  cancelGraceMs: 500,
  retry: { defaultMaxAttempts: 2, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run() {
    return {};
  },
});

export const echoJobType = defineJobType({
  name: 'echo',
  description: 'Returns its message at once.',
  paramsSchema: z.object({ message: z.string().default('') }).strict(),
  concurrency: 10,
  batchSize: 1,
  timeoutMs: 10_000,
  cancelGraceMs: 500,
  retry: { defaultMaxAttempts: 1, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run({ params }) {
    return { echo: params.message };
  },
});

export const waiterJobType = defineJobType({
  name: 'waiter',
  description: 'Runs until its signal aborts, then stops at once.',
  paramsSchema: z.object({}).strict(),
  concurrency: 10,
  batchSize: 1,
  timeoutMs: 60_000,
  cancelGraceMs: 2000,
  retry: { defaultMaxAttempts: 1, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run({ signal, log }) {
    log('waiting for the signal');
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    throw signal.reason;
  },
});

export const stubbornGraceMs = 300;
export const stubbornJobType = defineJobType({
  name: 'stubborn',
  description: 'Ignores its signal and finishes by itself after 3 s.',
  paramsSchema: z.object({}).strict(),
  concurrency: 10,
  batchSize: 1,
  timeoutMs: 60_000,
  cancelGraceMs: stubbornGraceMs,
  retry: { defaultMaxAttempts: 1, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run() {
    await new Promise((resolve) => setTimeout(resolve, 3000).unref());
    return { finished: 'late' };
  },
});

export const deadlineTimeoutMs = 300;
export const deadlineJobType = defineJobType({
  name: 'deadline',
  description: 'Runs until its signal aborts; its timeout is 300 ms.',
  paramsSchema: z.object({}).strict(),
  concurrency: 10,
  batchSize: 1,
  timeoutMs: deadlineTimeoutMs,
  cancelGraceMs: 300,
  retry: { defaultMaxAttempts: 1, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run({ signal }) {
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    throw signal.reason;
  },
});

/** Runs of `flaky` so far, by its `key` param (across attempts and RetryJob). */
export const flakyRuns = new Map<string, number>();
export const flakyJobType = defineJobType({
  name: 'flaky',
  description: 'Fails its first `failures` runs, then succeeds; with `fatal`, fails for good at once.',
  paramsSchema: z.object({ key: z.string(), failures: z.number().int().min(0), fatal: z.boolean().default(false) }).strict(),
  concurrency: 10,
  batchSize: 1,
  timeoutMs: 10_000,
  cancelGraceMs: 500,
  retry: { defaultMaxAttempts: 3, delayMs: 0, backoff: false, maxDelayMs: 0 },
  async run({ params, attempt, log }) {
    log(`attempt ${attempt}`);
    const runs = (flakyRuns.get(params.key) ?? 0) + 1;
    flakyRuns.set(params.key, runs);
    if (params.fatal) throw new JobFailure('the input can never work', { retryable: false, code: 'INVALID_INPUT' });
    if (runs <= params.failures) throw new Error(`flaky failure on attempt ${attempt}`);
    return { runs };
  },
});

// ---------------------------------------------------------------------------------------
// Job stream tests (test/job-streams/): `stepped` is stepped by hand, `chatty` logs over time

interface ScriptContext {
  log(message: string): void;
  progress(percent: number, message?: string): void;
}
type ScriptEnd = (outcome: { ok: true; result: Record<string, unknown> } | { ok: false; message: string }) => void;

/** A running `stepped` job, stepped by the test: it logs, reports progress and ends on command. */
export class Script {
  readonly key = `script-${randomHex(6)}`;
  #started!: () => void;
  readonly started = new Promise<void>((resolve) => {
    this.#started = resolve;
  });
  #context: ScriptContext | undefined;
  #end: ScriptEnd | undefined;

  attach(context: ScriptContext, end: ScriptEnd): void {
    this.#context = context;
    this.#end = end;
    this.#started();
  }

  log(message: string): void {
    this.#context!.log(message);
  }

  progress(percent: number, message = ''): void {
    this.#context!.progress(percent, message);
  }

  succeed(result: Record<string, unknown> = {}): void {
    this.#end!({ ok: true, result });
  }

  fail(message: string): void {
    this.#end!({ ok: false, message });
  }
}

const scripts = new Map<string, Script>();

export function newScript(): Script {
  const script = new Script();
  scripts.set(script.key, script);
  return script;
}

export const steppedJobType = defineJobType({
  name: 'stepped',
  description: 'Test job stepped by the test: logs, progress and its end come on command.',
  paramsSchema: z.object({ key: z.string() }).strict(),
  concurrency: 50,
  batchSize: 1,
  timeoutMs: 120_000,
  cancelGraceMs: 2000,
  retry: { defaultMaxAttempts: 1, delayMs: 1000, backoff: false, maxDelayMs: 1000 },
  async run({ params, signal, log, progress }) {
    const script = scripts.get(params.key);
    if (!script) throw new Error(`no script ${params.key}`);
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
      script.attach({ log, progress }, (outcome) => (outcome.ok ? resolve(outcome.result) : reject(new Error(outcome.message))));
    });
  },
});

/** Writes `lines` log lines ("line 1"...), `intervalMs` apart, then succeeds. */
export const chattyJobType = defineJobType({
  name: 'chatty',
  description: 'Test job that writes numbered log lines over time.',
  paramsSchema: z.object({ lines: z.number().int().min(1).max(5000), intervalMs: z.number().int().min(0).max(1000) }).strict(),
  concurrency: 10,
  batchSize: 1,
  timeoutMs: 120_000,
  cancelGraceMs: 1000,
  retry: { defaultMaxAttempts: 1, delayMs: 1000, backoff: false, maxDelayMs: 1000 },
  async run({ params, signal, log }) {
    for (let line = 1; line <= params.lines; line++) {
      log(`line ${line}`);
      if (params.intervalMs > 0) await sleep(params.intervalMs, undefined, { signal });
    }
    return { lines: params.lines };
  },
});

// ---------------------------------------------------------------------------------------
// QueueService tests (test/queue/): `runs-until-released` runs until the test releases it, `serial` one at a time

export const releases = new Map<string, { started: boolean; release: (() => void) | undefined }>();

export const runsUntilReleasedJobType = defineJobType({
  name: 'runs-until-released',
  description: 'Test job that runs until the test releases it.',
  paramsSchema: z.object({ key: z.string() }).strict(),
  concurrency: 7,
  batchSize: 1,
  timeoutMs: 120_000,
  cancelGraceMs: 1000,
  retry: { defaultMaxAttempts: 1, delayMs: 1000, backoff: false, maxDelayMs: 1000 },
  async run({ params, signal }) {
    const entry = releases.get(params.key) ?? { started: false, release: undefined };
    releases.set(params.key, entry);
    await new Promise<void>((resolve, reject) => {
      entry.release = resolve;
      entry.started = true;
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    });
    return { released: true };
  },
});

/** Runs one job at a time and records the order in which jobs start; a tag in `failOnce` fails its first run. */
export const startOrder: string[] = [];
export const failOnce = new Set<string>();
export const serialJobType = defineJobType({
  name: 'serial',
  description: 'Test job type that runs one job at a time and records the start order.',
  paramsSchema: z.object({ tag: z.string() }).strict(),
  concurrency: 1,
  batchSize: 1,
  timeoutMs: 60_000,
  cancelGraceMs: 1000,
  retry: { defaultMaxAttempts: 1, delayMs: 1000, backoff: false, maxDelayMs: 1000 },
  async run({ params }) {
    startOrder.push(params.tag);
    if (failOnce.delete(params.tag)) throw new Error('failing once, as asked');
    return {};
  },
});

export function release(key: string): void {
  const entry = releases.get(key);
  if (!entry?.release) throw new Error(`runs-until-released job ${key} is not running`);
  entry.release();
}
