import { Code, ConnectError } from '@connectrpc/connect';
import { encodeEnvelope, type UniversalServerResponse } from '@connectrpc/connect/protocol';
import { createEndStreamSerialization, endStreamFlag } from '@connectrpc/connect/protocol-connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import { createTrailerSerialization, trailerFlag } from '@connectrpc/connect/protocol-grpc-web';
import type { HttpResponse } from './http-handler.ts';
import type { StreamEnd, StreamHooks } from './interceptors/server-streams.ts';

/** The message encoding a call's client asked for: protobuf binary or JSON. */
export type MessageFormat = 'binary' | 'json';

/** The format of a call's messages, from its request's content type (every protocol names JSON in it). */
export function messageFormatOf(contentType: string | undefined): MessageFormat {
  return contentType?.includes('json') ? 'json' : 'binary';
}

type Protocol = 'grpc' | 'grpc-web' | 'connect';

function protocolOf(contentType: string | undefined): Protocol {
  if (contentType?.startsWith('application/grpc-web')) return 'grpc-web';
  if (contentType?.startsWith('application/grpc')) return 'grpc';
  return 'connect';
}

const endStreamSerialization = createEndStreamSerialization({});
const trailerSerialization = createTrailerSerialization();

/**
 * One interval timer per period for the checks of every taken stream, instead of one
 * per stream (a Timeout object each, a few hundred bytes of an open stream). A stream's
 * first check therefore comes at the next tick, within one period of its take-over.
 */
class SharedTicks {
  readonly #byPeriod = new Map<number, { timer: NodeJS.Timeout; runs: Set<() => void> }>();

  /** Calls `run` every `everyMs`, until the returned function is called. */
  every(everyMs: number, run: () => void): () => void {
    let period = this.#byPeriod.get(everyMs);
    if (!period) {
      const runs = new Set<() => void>();
      const timer = setInterval(() => {
        for (const each of runs) each();
      }, everyMs).unref();
      period = { timer, runs };
      this.#byPeriod.set(everyMs, period);
    }
    const { runs } = period;
    runs.add(run);
    return () => {
      runs.delete(run);
      if (runs.size === 0 && this.#byPeriod.get(everyMs)?.runs === runs) {
        clearInterval(this.#byPeriod.get(everyMs)!.timer);
        this.#byPeriod.delete(everyMs);
      }
    };
  }
}

const sharedTicks = new SharedTicks();

/**
 * A server stream that leaves Connect's pipeline once it is set up, and is then held by
 * whoever took it (the jobs fan-out) alone.
 *
 * Connect runs each message of a stream through a chain of async generators (the
 * handler's, every interceptor's, serialization, envelope, compression, the write with
 * its drain), and an open stream keeps that chain parked between messages: about 50 KiB
 * of closures, promises and generator objects per stream, and tens of microseconds per
 * message. A stream that hands the same events to a thousand clients is better off with
 * neither: once the call is authenticated, authorised, counted and has sent its first
 * messages through Connect, `take` unhooks the response from Connect's pipeline (which is
 * then garbage), and the taker writes already enveloped frames straight to the response.
 * Every protocol served here (gRPC, gRPC-Web, Connect streaming, over HTTP/1.1 and HTTP/2)
 * frames a message the same way (a flag byte, a 32-bit length, the message; an
 * uncompressed frame is valid whatever compression was negotiated), and `end` closes the
 * stream as Connect would have: gRPC trailers, the gRPC-Web trailer frame, or the Connect
 * end-stream message.
 *
 * What the interceptors would have done when the stream ended (give back its slot of the
 * stream limit, write the call's log line, count it closed) they registered here while
 * the call was set up (`observeStream`); `end` runs them. A check they make while the
 * stream runs (the credential re-check) runs on a timer instead of before each message.
 */
export class StreamHandoff {
  readonly format: MessageFormat;
  readonly #res: HttpResponse;
  readonly #protocol: Protocol;
  /** The interceptors' hooks of this call, innermost first (the order their streams end in). */
  #hooks: StreamHooks[] = [];
  #trailer: Headers | undefined;
  #ended = false;
  readonly #take: TakeSignal = { taken: false, wake: undefined };
  #onEnd: (() => void) | undefined;
  #stopChecks: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  constructor(res: HttpResponse, contentType: string | undefined) {
    this.#res = res;
    this.#protocol = protocolOf(contentType);
    this.format = messageFormatOf(contentType);
  }

  /** An interceptor's stream hooks, run by `end` if the stream is taken (else by Connect's pipeline, as for any call). */
  adopt(hooks: StreamHooks): void {
    this.#hooks.push(hooks);
  }

  get taken(): boolean {
    return this.#take.taken;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Connect's response for the call, whose body stops being read from Connect's pipeline
   * when the stream is taken, and gives the node adapter nothing more: `end` closes the
   * response itself.
   */
  wrap(response: UniversalServerResponse): UniversalServerResponse {
    this.#trailer = response.trailer;
    const body = response.body;
    if (body === undefined) return response;
    return { ...response, body: new HandedOffBody(body, this.#take) };
  }

  /**
   * Takes the stream out of Connect's hands. Call it only while the handler's generator
   * waits to be asked for its next message (Connect has written every earlier one), and
   * never resume that generator: it is left to the garbage collector. From now on the
   * stream ends only through `end`, also when the client goes away or the server shuts
   * down (`signal`, the call's); `onEnd` runs once it has.
   */
  take(signal: AbortSignal, onEnd: () => void): void {
    this.#onEnd = onEnd;
    this.#signal = signal;
    this.#take.taken = true;
    this.#take.wake?.(undefined);
    this.#take.wake = undefined;
    signal.addEventListener('abort', this.#aborted);
    this.#res.once('close', this.#aborted);
    const checks = this.#hooks.map((hooks) => hooks.whileTaken).filter((check) => check !== undefined);
    if (checks.length > 0) {
      const everyMs = Math.min(...checks.map((check) => check.everyMs));
      this.#stopChecks = sharedTicks.every(everyMs, () => {
        for (const check of checks)
          Promise.resolve()
            .then(check.run)
            .catch((error: unknown) => this.end(error));
      });
    }
    if (signal.aborted || this.#res.destroyed) this.#aborted();
  }

  /** The client went away, or the server is shutting down (which ends a stream well, as Connect's handlers do). */
  readonly #aborted = () => {
    const reason: unknown = this.#signal?.reason;
    if (!this.#writable) this.#finish({ kind: 'stopped' });
    else if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) this.end(reason);
    else this.end();
  };

  get #writable(): boolean {
    const res = this.#res;
    return !res.writableEnded && !res.destroyed;
  }

  /**
   * Bytes written to the response that the client has not taken yet: those still held
   * here. Over HTTP/2 a write completes only once flow control lets its data go out, so
   * this grows as soon as the peer's receive window is full.
   */
  get backlogBytes(): number {
    return this.#res.writableLength;
  }

  /** Writes an enveloped message; nothing once the stream has ended. */
  write(frame: Uint8Array): void {
    if (this.#ended || !this.#writable) return;
    this.#res.write(frame);
  }

  /** Ends a taken stream: well, or with `error` (mapped as the interceptors map errors), in its protocol's framing. */
  end(error?: unknown): void {
    if (this.#ended) return;
    if (!this.#writable) {
      this.#finish({ kind: 'stopped' });
      return;
    }
    let passed = error;
    if (passed !== undefined) for (const hooks of this.#hooks) if (hooks.mapError) passed = hooks.mapError(passed);
    const connectError =
      passed === undefined || passed instanceof ConnectError
        ? passed
        : new ConnectError('internal error', Code.Internal, undefined, undefined, passed);
    this.#finish(passed === undefined ? { kind: 'done' } : { kind: 'failed', error: passed });
    this.#close(connectError);
  }

  /**
   * Closes the response in its protocol: gRPC trailers, or a last frame (gRPC-Web
   * trailers, Connect's end-stream message). Written here, not by the node adapter: the
   * adapter's write of the body was left waiting for a chunk that never comes, so that
   * nothing of it stays parked for as long as the stream lives.
   */
  #close(error: ConnectError | undefined): void {
    const res = this.#res;
    switch (this.#protocol) {
      case 'grpc': {
        const trailer = setTrailerStatus(this.#trailer ?? new Headers(), error);
        res.addTrailers(Object.fromEntries(trailer));
        res.end();
        return;
      }
      case 'grpc-web':
        res.end(encodeEnvelope(trailerFlag, trailerSerialization.serialize(setTrailerStatus(new Headers(), error))));
        return;
      case 'connect':
        res.end(encodeEnvelope(endStreamFlag, endStreamSerialization.serialize({ metadata: new Headers(), error })));
        return;
    }
  }

  #finish(how: StreamEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopChecks?.();
    this.#signal?.removeEventListener('abort', this.#aborted);
    this.#res.off('close', this.#aborted);
    this.#onEnd?.();
    const hooks = this.#hooks;
    this.#hooks = [];
    void (async () => {
      for (const hook of hooks) await hook.end?.(how);
    })().catch(() => {});
  }
}

/** Where a taken stream wakes its body's reader, which waits for Connect's next chunk. */
interface TakeSignal {
  taken: boolean;
  wake: ((next: undefined) => void) | undefined;
}

/**
 * The body the node adapter writes: Connect's, until the stream is taken; then nothing
 * more, ever (Connect's body is let go of, not ended: its pipeline goes to the garbage
 * collector, and so does the adapter's write). Until then it passes on what the adapter does to its reader (an early
 * return, a write error), as the adapter would have to Connect's body. Written as a plain
 * iterator, not a generator: a parked generator keeps its arguments, and with them
 * Connect's body.
 */
class HandedOffBody implements AsyncIterableIterator<Uint8Array> {
  #it: AsyncIterator<Uint8Array> | undefined;
  readonly #take: TakeSignal;
  #closed = false;

  constructor(body: AsyncIterable<Uint8Array>, take: TakeSignal) {
    this.#it = body[Symbol.asyncIterator]();
    this.#take = take;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#it && !this.#take.taken) {
      const next = await nextUntilTaken(this.#it, this.#take);
      if (next !== undefined) {
        if (next.done) {
          this.#it = undefined;
          this.#closed = true;
        }
        return next;
      }
    }
    this.#it = undefined;
    if (this.#closed) return { done: true, value: undefined };
    this.#closed = true;
    // Taken: the adapter waits here for good, on a promise nobody holds, and goes to the
    // garbage collector with it; the handoff closes the response itself.
    return new Promise<never>(() => {});
  }

  async return(): Promise<IteratorResult<Uint8Array>> {
    const it = this.#it;
    this.#it = undefined;
    this.#closed = true;
    if (it && !this.#take.taken) await it.return?.().catch(() => {});
    return { done: true, value: undefined };
  }

  async throw(error: unknown): Promise<IteratorResult<Uint8Array>> {
    const it = this.#it;
    this.#it = undefined;
    this.#closed = true;
    if (it && !this.#take.taken) await it.throw?.(error).catch(() => {});
    throw error;
  }
}

/**
 * `it`'s next chunk, or undefined once the stream is taken. A function of its own: the
 * closure that waits holds `it`, and must be done with before the body waits for the end.
 */
async function nextUntilTaken(it: AsyncIterator<Uint8Array>, take: TakeSignal): Promise<IteratorResult<Uint8Array> | undefined> {
  const next = await new Promise<IteratorResult<Uint8Array> | undefined>((resolve, reject) => {
    take.wake = resolve;
    it.next().then(resolve, reject);
  });
  take.wake = undefined;
  return next;
}
