/** The result of checking one dependency. */
export interface DependencyStatus {
  name: string;
  ok: boolean;
  latencyMs: number;
  /** Why it is not ok; empty when it is. Safe to show: no connection strings or stacks. */
  detail: string;
}

export type DependencyCheck = () => Promise<void>;

const checkTimeoutMs = 3000;

/**
 * Checks the server's dependencies (database, and what later areas add), each with a
 * timeout, all at once. Used by /readyz, the gRPC health service and system status.
 */
export class Readiness {
  readonly #checks = new Map<string, DependencyCheck>();

  add(name: string, check: DependencyCheck): void {
    this.#checks.set(name, check);
  }

  async check(): Promise<{ ok: boolean; dependencies: DependencyStatus[] }> {
    const dependencies = await Promise.all([...this.#checks].map(([name, check]) => runCheck(name, check)));
    return { ok: dependencies.every((dependency) => dependency.ok), dependencies };
  }
}

async function runCheck(name: string, check: DependencyCheck): Promise<DependencyStatus> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${checkTimeoutMs} ms`)), checkTimeoutMs);
      }),
    ]);
    return { name, ok: true, latencyMs: performance.now() - started, detail: '' };
  } catch (error) {
    const detail = error instanceof Error && error.message.startsWith('no answer') ? error.message : 'unreachable';
    return { name, ok: false, latencyMs: performance.now() - started, detail };
  } finally {
    clearTimeout(timer);
  }
}
