import { Code, ConnectError } from '@connectrpc/connect';
import { ErrorInfoSchema } from '@gen/yardmaster/v1/common_pb.ts';

/** Codes that a new attempt will not change: the stream gives up and reports them. */
const finalCodes = new Set([Code.NotFound, Code.PermissionDenied, Code.Unauthenticated, Code.InvalidArgument]);

export function isResyncRequired(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    error.code === Code.FailedPrecondition &&
    error.findDetails(ErrorInfoSchema).some((detail) => detail.reason === 'RESYNC_REQUIRED')
  );
}

export interface ResumableStream<T> {
  /** Opens the stream from where the last one stopped (the caller keeps the resume point). */
  open(signal: AbortSignal): AsyncIterable<T>;
  onMessage(message: T): void;
  /** The resume point is gone (RESYNC_REQUIRED): start over from the current state. */
  onResync?(): void;
  /** A failure a retry will not fix (NotFound...). */
  onFatal?(error: unknown): void;
  /** Whether a stream that ended on its own is finished (WatchJob after a final state) or just dropped. */
  endsWhenComplete: boolean;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Follows a server stream until `signal` aborts: after a drop it opens it again (the
 * caller's `open` resumes from its last sequence), waiting 0.5 s, 1 s, 2 s... up to 15 s
 * with jitter between failed attempts, and starting over when the server says the resume
 * point is gone.
 */
export async function followStream<T>(stream: ResumableStream<T>, signal: AbortSignal): Promise<void> {
  let failures = 0;
  while (!signal.aborted) {
    try {
      for await (const message of stream.open(signal)) {
        failures = 0;
        stream.onMessage(message);
      }
      if (stream.endsWhenComplete) return;
    } catch (error) {
      if (signal.aborted) return;
      if (isResyncRequired(error)) {
        stream.onResync?.();
        continue;
      }
      if (error instanceof ConnectError && finalCodes.has(error.code)) {
        stream.onFatal?.(error);
        return;
      }
      failures++;
    }
    const backoff = Math.min(15_000, 500 * 2 ** Math.max(0, failures - 1));
    await sleep(backoff * (0.75 + Math.random() * 0.5), signal);
  }
}
