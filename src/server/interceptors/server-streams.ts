import type { ContextValues } from '@connectrpc/connect';
import { streamHandoffKey } from '../context.ts';

/** How a server stream ended: all sent, failed, or stopped by the client (or never read). */
export type StreamEnd = { kind: 'done' } | { kind: 'failed'; error: unknown } | { kind: 'stopped' };

export interface StreamHooks {
  /** Runs before each message; throwing ends the stream with that error. */
  beforeMessage?: () => void | Promise<void>;
  /** Turns an error the stream fails with into the one passed on. */
  mapError?: (error: unknown) => unknown;
  /** Runs once when the stream ends, however it ends. */
  end?: (end: StreamEnd) => void | Promise<void>;
  /**
   * Once the stream has left Connect's pipeline (`StreamHandoff`), it has no "before each
   * message" any more: this runs every `everyMs` instead; throwing ends the stream with
   * that error.
   */
  whileTaken?: { everyMs: number; run: () => Promise<void> };
}

/** What `observeStream` reads of the call: its signal, and its handoff when it may have one. */
export interface ObservedCall {
  signal: AbortSignal;
  contextValues: ContextValues;
}

/**
 * The one way interceptors watch a server stream's messages: `res` with its message
 * iterator wrapped by `hooks`. A stream the call never started reading (the client went
 * away first) still ends, when the call's signal aborts. A stream that leaves Connect's
 * pipeline (its handoff is taken) is never resumed here again: its handoff runs `hooks`.
 */
export function observeStream<R extends { message: AsyncIterable<unknown> }>(res: R, call: ObservedCall, hooks: StreamHooks): R {
  const signal = call.signal;
  call.contextValues.get(streamHandoffKey)?.adopt(hooks);
  const messages = res.message;
  let started = false;
  let ended = false;
  const end = async (how: StreamEnd) => {
    if (ended) return;
    ended = true;
    await hooks.end?.(how);
  };
  const endUnread = () => {
    if (!started) void Promise.resolve(end({ kind: 'stopped' })).catch(() => {});
  };
  signal.addEventListener('abort', endUnread, { once: true });
  return {
    ...res,
    message: (async function* () {
      started = true;
      signal.removeEventListener('abort', endUnread);
      let how: StreamEnd = { kind: 'stopped' };
      try {
        for await (const message of messages) {
          await hooks.beforeMessage?.();
          yield message;
        }
        how = { kind: 'done' };
      } catch (error) {
        const passed = hooks.mapError ? hooks.mapError(error) : error;
        how = { kind: 'failed', error: passed };
        throw passed;
      } finally {
        await end(how);
      }
    })(),
  };
}

/**
 * Runs the call while holding something (a slot of a limit) and gives it back with
 * `release` when the call is over: when it fails or answers one message, or when its
 * server stream ends however it ends.
 */
export async function holdDuringCall<Res extends { stream: boolean }>(
  call: () => Promise<Res>,
  observed: ObservedCall,
  release: () => void,
): Promise<Res> {
  let res: Res;
  try {
    res = await call();
  } catch (error) {
    release();
    throw error;
  }
  if (!res.stream) {
    release();
    return res;
  }
  return observeStream(res as Res & { message: AsyncIterable<unknown> }, observed, { end: release });
}
