/** How long to wait between attempts: exponential, capped, with full jitter. */
export interface BackoffOptions {
  /** Delay before the first retry, before jitter. Default 500 ms. */
  initialMs?: number;
  /** Largest delay. Default 30 s. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  multiplier?: number;
  /** Give up after this many consecutive failed attempts (the last error is thrown). Default: never. */
  maxAttempts?: number;
}

/**
 * The delay before retry number `attempt` (1-based): a random time between half and all of
 * `initial * multiplier^(attempt-1)`, capped at `maxMs` ("equal jitter": never zero, so a
 * crowd of clients spreads out without hammering a server that just came back).
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const ceiling = Math.min(max, initial * (options.multiplier ?? 2) ** Math.max(0, attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
