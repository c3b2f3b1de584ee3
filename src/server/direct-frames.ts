import type { HttpResponse } from './http-handler.ts';
import { messageFormatOf, type MessageFormat } from './stream-handoff.ts';

/**
 * A server stream's way around Connect's per-message pipeline: already enveloped
 * messages written straight to the call's HTTP response.
 *
 * Connect runs each message of a stream through a chain of async generators (the
 * handler's, every interceptor's, serialization, envelope, compression, the write with
 * its drain) at tens of microseconds each, and copies a large message several times on
 * the way (Download's chunks). Every protocol served here (gRPC,
 * gRPC-Web, Connect streaming) frames a message the same way (a flag byte, a 32-bit
 * length, the message; an uncompressed frame is valid whatever compression was
 * negotiated), so a frame built by hand is what Connect would have written.
 *
 * Streams that stay in Connect's pipeline use this (WatchJobs leaves it altogether once
 * set up, see `StreamHandoff`). A frame may only be written while the stream's generator waits for its next message:
 * Connect pulls that message only after it has written the previous one, so a direct
 * write then lands after everything Connect sent, and anything Connect sends next (a
 * heartbeat, the trailers) lands after it. The stream's own code knows when that is; this
 * object knows whether the response can take a frame at all.
 */
export class DirectFrames {
  readonly format: MessageFormat;
  readonly #res: HttpResponse;
  #directUntil = Number.POSITIVE_INFINITY;

  constructor(res: HttpResponse, contentType: string | undefined) {
    this.#res = res;
    this.format = messageFormatOf(contentType);
  }

  /**
   * An interceptor that must see the messages after `time` (ms since the epoch) says so
   * here: from then on, messages go through Connect's pipeline again (and through it),
   * until the interceptor moves the time on.
   */
  passMessagesFrom(time: number): void {
    this.#directUntil = time;
  }

  /** Whether a frame may be written now: headers sent, response open, no interceptor waiting for a message. */
  get writable(): boolean {
    const res = this.#res;
    return res.headersSent && !res.writableEnded && !res.destroyed && Date.now() < this.#directUntil;
  }

  /** The response itself, for writers that pace themselves by its backpressure (see paced-frames.ts). */
  get response(): HttpResponse {
    return this.#res;
  }
}
