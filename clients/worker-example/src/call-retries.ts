import { Code, ConnectError } from '@connectrpc/connect';
import { ErrorInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';

/** Failures another try may get past: the server or the network was down for a moment. */
export function isTransient(error: unknown): boolean {
  return error instanceof ConnectError && [Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.Unknown].includes(error.code);
}

/** The attempt this worker held is over (the lease lapsed, or the job moved on): drop the job. */
export function isLeaseExpired(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    error.code === Code.FailedPrecondition &&
    error.findDetails(ErrorInfoSchema).some((info) => info.reason === 'LEASE_EXPIRED')
  );
}

/** Exponential back-off with jitter: 0.5 s, 1 s, 2 s ... up to 15 s. */
export function backoffMs(failures: number): number {
  const ceiling = Math.min(15_000, 500 * 2 ** Math.max(0, failures - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Calls `call` again after a back-off while it fails transiently, at most `tries` times in all. */
export async function withRetries<T>(call: () => Promise<T>, tries = 6): Promise<T> {
  for (let failures = 1; ; failures++) {
    try {
      return await call();
    } catch (error) {
      if (!isTransient(error) || failures >= tries) throw error;
      await sleep(backoffMs(failures));
    }
  }
}
