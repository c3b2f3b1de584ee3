import { Code, ConnectError } from '@connectrpc/connect';
import type { DirectFrames } from './direct-frames.ts';
import type { HttpResponse } from './http-handler.ts';

/** The 5-byte envelope of an uncompressed message of `messageBytes` (gRPC, gRPC-Web and Connect streaming alike). */
export function envelopeHeader(messageBytes: number, into: Uint8Array = new Uint8Array(5)): Uint8Array {
  into[0] = 0;
  new DataView(into.buffer, into.byteOffset, 5).setUint32(1, messageBytes);
  return into;
}

/**
 * Writes frames given in pieces (a header, then slices of the bytes the message carries)
 * to a call's response without joining them, paced by the client: a frame is written once
 * the one before it has left (HTTP/1.1: handed to the socket; HTTP/2: sent within the
 * client's window), so at most two frames are held here, one leaving while the next is
 * gathered.
 *
 * Paced by each frame's write callback rather than by `write()`'s answer and 'drain': a
 * corked HTTP/1.1 chunked response answers false and then never emits 'drain' (Node
 * flushes the corked chunks itself on uncork), which stalled a stream for good.
 *
 * Same rule as any direct frame: only while the stream's generator waits for its next
 * message (see DirectFrames). Rejects with Aborted, as Connect's own writes do, when the
 * client goes away, so the caller stops reading its source.
 */
export class PacedFrameWriter {
  readonly #res: HttpResponse;
  readonly #signal: AbortSignal;
  #previous: Promise<void> | undefined;

  constructor(frames: DirectFrames, signal: AbortSignal) {
    this.#res = frames.response;
    this.#signal = signal;
  }

  /**
   * `onSent` is called once the frame's bytes have left (its write's callback without an
   * error): from then on its buffers may be reused. Not called when the write fails, since
   * the transport may still hold them then.
   */
  async write(pieces: readonly Uint8Array[], onSent?: () => void): Promise<void> {
    await this.#previous;
    const res = this.#res;
    if (this.#signal.aborted) throw ConnectError.from(this.#signal.reason, Code.Aborted);
    if (res.destroyed || res.writableEnded) throw closed();
    // One vectored write to the socket (HTTP/1.1) or one pass through the stream (HTTP/2).
    res.cork();
    for (let index = 0; index < pieces.length - 1; index++) res.write(pieces[index]!);
    this.#previous = this.#sent(pieces.at(-1)!, onSent);
    res.uncork();
    // Observed by the next write; a failure after the last is the client's to see.
    this.#previous.catch(() => {});
  }

  #sent(last: Uint8Array, onSent: (() => void) | undefined): Promise<void> {
    const res = this.#res;
    const signal = this.#signal;
    return new Promise((resolve, reject) => {
      const settle = (error?: ConnectError) => {
        res.off('close', onClose);
        signal.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve();
      };
      const onClose = () => settle(closed());
      const onAbort = () => settle(ConnectError.from(signal.reason, Code.Aborted));
      res.once('close', onClose);
      signal.addEventListener('abort', onAbort, { once: true });
      res.write(last, (error) => {
        if (!error) onSent?.();
        settle(error ? closed() : undefined);
      });
    });
  }
}

function closed(): ConnectError {
  return new ConnectError('the client closed the stream', Code.Aborted);
}
