import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse, ServerHttp2Stream } from 'node:http2';
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
 * per stream (a Timeout object and a callback each, a few hundred bytes of an open
 * stream). A stream's first check therefore comes at the next tick, within one period of
 * its take-over.
 */
class SharedChecks {
  readonly #byPeriod = new Map<number, { timer: NodeJS.Timeout; handoffs: Set<StreamHandoff> }>();

  /** Runs `handoff`'s checks every `everyMs`, until `delete`. */
  add(everyMs: number, handoff: StreamHandoff): void {
    let period = this.#byPeriod.get(everyMs);
    if (!period) {
      const handoffs = new Set<StreamHandoff>();
      const timer = setInterval(() => {
        for (const each of handoffs) each.runChecks();
      }, everyMs).unref();
      period = { timer, handoffs };
      this.#byPeriod.set(everyMs, period);
    }
    period.handoffs.add(handoff);
  }

  delete(everyMs: number, handoff: StreamHandoff): void {
    const period = this.#byPeriod.get(everyMs);
    if (!period?.handoffs.delete(handoff) || period.handoffs.size > 0) return;
    clearInterval(period.timer);
    this.#byPeriod.delete(everyMs);
  }
}

const sharedChecks = new SharedChecks();

/**
 * The taken streams to end when the server shuts down, one listener on its shutdown
 * signal for all of them (instead of a listener per stream on the call's signal, which
 * kept Connect's signals and context alive).
 */
const takenUntilShutdown = new WeakMap<AbortSignal, Set<StreamHandoff>>();

function endAtShutdown(shutdownSignal: AbortSignal, handoff: StreamHandoff): void {
  let handoffs = takenUntilShutdown.get(shutdownSignal);
  if (!handoffs) {
    const all = new Set<StreamHandoff>();
    handoffs = all;
    takenUntilShutdown.set(shutdownSignal, all);
    shutdownSignal.addEventListener('abort', () => {
      for (const each of [...all]) each.end();
    });
  }
  handoffs.add(handoff);
}

/** The handoff of a taken stream, on the object it writes to (its HTTP/2 stream, or its response). */
const takenHandoff = Symbol('taken stream handoff');
/** What a taken stream writes to: its HTTP/2 stream, or its response (HTTP/1.1, or a compat layer this does not know). */
type Sink = (ServerHttp2Stream | ServerResponse | Http2ServerResponse) & { [takenHandoff]?: StreamHandoff };

/** Whether more can be written to `sink`. */
function isWritable(sink: Sink): boolean {
  if (sink.writableEnded) return false;
  // A compat response has no `destroyed` of its own (whatever its type says): its stream has.
  return 'stream' in sink ? !sink.stream.destroyed : !sink.destroyed;
}

/** Shared by every taken stream: its sink closed (the client went away, or the stream ended). */
function onSinkClose(this: Sink): void {
  this[takenHandoff]?.sinkClosed();
}

/** Shared by every taken stream with a deadline. */
function endAtDeadline(handoff: StreamHandoff): void {
  handoff.end(new ConnectError('the operation timed out', Code.DeadlineExceeded));
}

/** What Connect's call signal reports once its stream has been taken (Connect lets go of the call then). */
const handedOver = new DOMException('the stream left Connect for its taker', 'AbortError');

/**
 * The listeners Node's HTTP/2 compat layer puts on a stream for its request and response,
 * by event: once those are gone, three of them would throw (timeouts, trailers) and the
 * others do nothing. Its error listener (which does nothing, so that a reset stream's
 * error is not thrown) and its data listener (the request is read to its end by then) stay.
 */
const compatListeners: Record<string, readonly string[]> = {
  timeout: ['onStreamTimeoutRequest', 'onStreamTimeoutResponse'],
  wantTrailers: ['onStreamTrailersReady'],
  close: ['onStreamCloseRequest', 'onStreamCloseResponse'],
  aborted: ['onStreamAbortedRequest', 'onStreamAbortedResponse'],
  trailers: ['onStreamTrailers'],
  end: ['onStreamEnd'],
  drain: ['onStreamDrain'],
};

/**
 * The HTTP/2 stream under `res`, let go of by Node's compat layer (lib/internal/http2/compat.js):
 * the stream keeps its compat request and response under two symbol properties, and
 * its listeners find them there. Cleared, the compat objects (with everything their
 * listeners hold: Connect's request, its signals, the call's context) go to the garbage
 * collector while the stream lives on, and so do the compat listeners on the stream
 * (`compatListeners`). The stream's error listener stays (an HTTP/2 stream reset by its
 * client emits an error, which must find a listener). Undefined when the compat layer is
 * not the one this knows: the stream is then written through its response.
 */
function releasedFromCompat(res: Pick<Http2ServerResponse, 'stream'>): ServerHttp2Stream | undefined {
  const stream = res.stream as ServerHttp2Stream & Record<symbol, unknown>;
  const symbols = Object.getOwnPropertySymbols(stream);
  const request = symbols.find((symbol) => symbol.description === 'request');
  const response = symbols.find((symbol) => symbol.description === 'response');
  const proxySocket = symbols.find((symbol) => symbol.description === 'proxySocket');
  if (!request || !response || stream[response] !== res || stream.listenerCount('error') === 0) return undefined;
  for (const [event, names] of Object.entries(compatListeners))
    for (const listener of stream.listeners(event)) if (names.includes(listener.name)) stream.off(event, listener as () => void);
  stream[request] = undefined;
  stream[response] = undefined;
  if (proxySocket) stream[proxySocket] = null;
  return stream;
}

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
 * then garbage, with the call's request and signals), and the taker writes already
 * enveloped frames straight to the response: over HTTP/2, to its `Http2Stream` itself,
 * whose compat request and response are let go of too (`releasedFromCompat`).
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
  /** The call's response, until the stream is taken over HTTP/2 (then only its HTTP/2 stream is kept). */
  #res: HttpResponse | undefined;
  /** What a taken stream writes to: its HTTP/2 stream itself, or its HTTP/1.1 response. */
  #sink: Sink | undefined;
  readonly #protocol: Protocol;
  readonly #shutdownSignal: AbortSignal | undefined;
  /** Aborted when the stream is taken: Connect's signals for the call (linked to it) let go of their listeners. */
  #release: AbortController | undefined = new AbortController();
  /** The interceptors' hooks of this call, innermost first (the order their streams end in). */
  #hooks: StreamHooks[] = [];
  #checks: NonNullable<StreamHooks['whileTaken']>[] = [];
  #checkEveryMs = 0;
  #trailer: Headers | Record<string, string> | undefined;
  #ended = false;
  readonly #take: TakeSignal = { taken: false, wake: undefined };
  #owner: { streamEnded(): void } | undefined;
  #deadline: NodeJS.Timeout | undefined;

  constructor(res: HttpResponse, contentType: string | undefined, shutdownSignal?: AbortSignal) {
    this.#res = res;
    this.#protocol = protocolOf(contentType);
    this.format = messageFormatOf(contentType);
    this.#shutdownSignal = shutdownSignal;
  }

  /**
   * The signal to give Connect for the call: aborted when the client goes away
   * (`requestSignal`), when the server shuts down, and when the stream is taken: then
   * Connect's signals for the call, and through their listeners its context, are let go
   * of (a signal linked to the server's shutdown signal is otherwise kept until that aborts).
   */
  callSignal(requestSignal: AbortSignal): AbortSignal {
    const signals = [requestSignal, this.#release!.signal];
    if (this.#shutdownSignal) signals.push(this.#shutdownSignal);
    return AbortSignal.any(signals);
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
   * never resume that generator: it is left to the garbage collector, and so is the call's
   * request in Connect and, over HTTP/2, in Node's compat layer (from now on the HTTP/2
   * stream itself is written to). From now on the stream ends only through `end`, also
   * when the client goes away, the server shuts down or the call's deadline (`timeoutMs`
   * from now) passes; `owner.streamEnded` runs once it has.
   */
  take(owner: { streamEnded(): void }, timeoutMs?: number): void {
    this.#owner = owner;
    this.#take.taken = true;
    this.#take.wake?.(undefined);
    this.#take.wake = undefined;
    const trailer = this.#trailer;
    this.#trailer = trailer instanceof Headers && [...trailer.keys()].length > 0 ? Object.fromEntries(trailer) : undefined;
    const res = this.#res! as ServerResponse | Http2ServerResponse;
    const stream = 'stream' in res ? releasedFromCompat(res) : undefined;
    const sink: Sink = stream ?? res;
    if (stream) this.#res = undefined;
    this.#sink = sink;
    sink[takenHandoff] = this;
    sink.on('close', onSinkClose);
    this.#release?.abort(handedOver);
    this.#release = undefined;
    if (this.#shutdownSignal) endAtShutdown(this.#shutdownSignal, this);
    if (timeoutMs !== undefined) this.#deadline = setTimeout(endAtDeadline, Math.max(0, timeoutMs), this).unref();
    this.#checks = this.#hooks.map((hooks) => hooks.whileTaken).filter((check) => check !== undefined);
    if (this.#checks.length > 0) {
      this.#checkEveryMs = Math.min(...this.#checks.map((check) => check.everyMs));
      sharedChecks.add(this.#checkEveryMs, this);
    }
    if (this.#shutdownSignal?.aborted) this.end();
    else if (!this.#writable) this.sinkClosed();
  }

  /** Runs the stream's checks (the credential re-check); one that fails ends the stream with its error. */
  runChecks(): void {
    for (const check of this.#checks)
      Promise.resolve()
        .then(check.run)
        .catch((error: unknown) => this.end(error));
  }

  /** The taken stream's sink closed: the client went away (or the stream ended, and this is a no-op). */
  sinkClosed(): void {
    if (!this.#writable) this.#finish({ kind: 'stopped' });
    else this.end();
  }

  get #writable(): boolean {
    const sink = this.#sink ?? (this.#res as Sink | undefined);
    return sink !== undefined && isWritable(sink);
  }

  /**
   * Bytes written to the stream that the client has not taken yet: those still held
   * here. Over HTTP/2 a write completes only once flow control lets its data go out, so
   * this grows as soon as the peer's receive window is full.
   */
  get backlogBytes(): number {
    return (this.#sink ?? this.#res)?.writableLength ?? 0;
  }

  /** Writes an enveloped message; nothing once the stream has ended. */
  write(frame: Uint8Array): void {
    if (this.#ended || !this.#writable) return;
    (this.#sink as { write(chunk: Uint8Array): boolean } | undefined)?.write(frame);
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
    const sink = this.#sink;
    this.#finish(passed === undefined ? { kind: 'done' } : { kind: 'failed', error: passed });
    if (sink) this.#close(sink, connectError);
  }

  /**
   * Closes the stream in its protocol: gRPC trailers, or a last frame (gRPC-Web
   * trailers, Connect's end-stream message). Written here, not by the node adapter: the
   * adapter's write of the body was left waiting for a chunk that never comes, so that
   * nothing of it stays parked for as long as the stream lives.
   */
  #close(sink: Sink, error: ConnectError | undefined): void {
    switch (this.#protocol) {
      case 'grpc': {
        const trailer = Object.fromEntries(setTrailerStatus(new Headers(this.#trailer), error));
        if ('sendTrailers' in sink) {
          // The compat layer asked Node to wait for trailers when it sent the headers.
          sink.once('wantTrailers', () => sink.sendTrailers(trailer));
        } else {
          sink.addTrailers(trailer);
        }
        sink.end();
        return;
      }
      case 'grpc-web':
        sink.end(encodeEnvelope(trailerFlag, trailerSerialization.serialize(setTrailerStatus(new Headers(), error))));
        return;
      case 'connect':
        sink.end(encodeEnvelope(endStreamFlag, endStreamSerialization.serialize({ metadata: new Headers(), error })));
        return;
    }
  }

  #finish(how: StreamEnd): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#checks.length > 0) sharedChecks.delete(this.#checkEveryMs, this);
    this.#checks = [];
    clearTimeout(this.#deadline);
    if (this.#shutdownSignal) takenUntilShutdown.get(this.#shutdownSignal)?.delete(this);
    const sink = this.#sink;
    if (sink) {
      sink.off('close', onSinkClose);
      sink[takenHandoff] = undefined;
    }
    this.#owner?.streamEnded();
    this.#owner = undefined;
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
