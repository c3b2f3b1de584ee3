import { Listeners, type Unsubscribe } from '../platform/listeners.ts';

/** The result of checking one dependency. */
export interface DependencyStatus {
  name: string;
  /** Whether it works (answered in time). */
  ok: boolean;
  /** It works, but something needs attention (`detail` says what). */
  degraded: boolean;
  latencyMs: number;
  /** Why it is not ok or degraded; empty when it is neither. Safe to show: no connection strings or stacks. */
  detail: string;
}

export interface ReadinessReport {
  ok: boolean;
  /** When the checks of this report started. */
  checkedAt: Date;
  dependencies: DependencyStatus[];
}

/**
 * Resolves when the dependency works: with nothing when all is well, or with what needs
 * attention (the dependency is then degraded, which does not make the report not ok).
 */
export type DependencyCheck = () => Promise<string | undefined | void>;

const checkTimeoutMs = 3000;
const defaultReadinessIntervalMs = 3000;

/**
 * Checks the server's dependencies (database, storage, queue), each with a timeout, on
 * one schedule per instance, and keeps the last result for every reader: /readyz, the
 * gRPC health service and system status. Readers never start a check, so however many
 * there are (anonymous ones included), the dependencies see one check per interval.
 * Checks that are not about this instance's readiness (whether queues have workers) run
 * in an instance of their own, on the same terms.
 */
export class Readiness {
  readonly #checks = new Map<string, DependencyCheck>();
  readonly #intervalMs: number;
  readonly #listeners = new Listeners<ReadinessReport>();
  #last: ReadinessReport | undefined;
  #first: Promise<ReadinessReport> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #checksRun = 0;

  constructor(intervalMs = defaultReadinessIntervalMs) {
    this.#intervalMs = intervalMs;
  }

  add(name: string, check: DependencyCheck): void {
    this.#checks.set(name, check);
  }

  /** Runs the first check, then one every interval (each after the previous one ended) until stop(). */
  async start(): Promise<void> {
    this.#first = this.#run();
    await this.#first;
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }

  /** The last result (the first check's, while it runs). */
  async current(): Promise<ReadinessReport> {
    if (this.#last) return this.#last;
    if (!this.#first) throw new Error('readiness checks were not started');
    return this.#first;
  }

  /** How many checks ran since start; tests use it to see that readers share them. */
  get checksRun(): number {
    return this.#checksRun;
  }

  /** Calls `listener` when the overall status changes; returns the function that unsubscribes. */
  onChange(listener: (report: ReadinessReport) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.#run().finally(() => this.#schedule());
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async #run(): Promise<ReadinessReport> {
    this.#checksRun++;
    const checkedAt = new Date();
    const dependencies = await Promise.all([...this.#checks].map(([name, check]) => runCheck(name, check)));
    const report = { ok: dependencies.every((dependency) => dependency.ok), checkedAt, dependencies };
    const changed = this.#last !== undefined && this.#last.ok !== report.ok;
    this.#last = report;
    if (changed) this.#listeners.notify(report);
    return report;
  }
}

async function runCheck(name: string, check: DependencyCheck): Promise<DependencyStatus> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const attention = await Promise.race([
      check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${checkTimeoutMs} ms`)), checkTimeoutMs);
      }),
    ]);
    return { name, ok: true, degraded: Boolean(attention), latencyMs: performance.now() - started, detail: attention || '' };
  } catch (error) {
    const detail = error instanceof Error && error.message.startsWith('no answer') ? error.message : 'unreachable';
    return { name, ok: false, degraded: false, latencyMs: performance.now() - started, detail };
  } finally {
    clearTimeout(timer);
  }
}
