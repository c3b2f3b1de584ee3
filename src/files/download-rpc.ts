import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { DownloadResponseSchema, File as FileMessage } from '../../gen/yardmaster/v1/files_pb.ts';
import type { ObjectBody } from '../platform/storage/object-reads.ts';
import type { DirectFrames } from '../server/direct-frames.ts';
import { envelopeHeader, PacedFrameWriter } from '../server/paced-frames.ts';

/**
 * Bytes per Download message: large enough to be cheap, small enough for any client. Just
 * under 1 MiB, the size Download has always used (protobuf-es's writer grows to 1 MiB, so a
 * message through Connect's pipeline fits it; at exactly 1 MiB of chunk it would allocate
 * 2 MiB per message).
 */
export const downloadChunkBytes = 1024 * 1024 - 16;

/** DownloadResponse.chunk: field 1, length-delimited. */
const chunkFieldTag = 0x0a;

/**
 * Buffers of a message's chunk for the direct frames, reused once their frame has left: what
 * storage sends is read straight into them (ObjectBody), so a download allocates nothing
 * per MiB. Two per download at most (one leaving, one filling); a few kept spare between
 * downloads, the rest left to the collector.
 */
const spareChunkBuffers: Buffer[] = [];
const maxSpareChunkBuffers = 8;

function takeChunkBuffer(): Buffer {
  return spareChunkBuffers.pop() ?? Buffer.allocUnsafeSlow(downloadChunkBytes);
}

function giveBackChunkBuffer(buffer: Buffer): void {
  if (spareChunkBuffers.length < maxSpareChunkBuffers) spareChunkBuffers.push(buffer);
}

/** The frame of a DownloadResponse carrying `chunkBytes` of chunk and nothing else, up to the chunk itself. */
export function chunkFrameHeader(chunkBytes: number): Uint8Array {
  const length: number[] = [];
  for (let rest = chunkBytes; ; rest >>>= 7) {
    if (rest < 0x80) {
      length.push(rest);
      break;
    }
    length.push((rest & 0x7f) | 0x80);
  }
  const header = new Uint8Array(5 + 1 + length.length);
  envelopeHeader(1 + length.length + chunkBytes, header);
  header[5] = chunkFieldTag;
  header.set(length, 6);
  return header;
}

/**
 * Download's messages: the first (with the file) through Connect's pipeline, which sends
 * the headers; the rest, in binary formats, written as frames straight to the response,
 * each a 7-to-9-byte header and a reused buffer storage's bytes were read into, paced by
 * the client.
 *
 * Through Connect each MiB sent was five fresh MiB (storage's reads, the message's chunk,
 * protobuf's writer buffer, its finished slice, the envelope), and collecting them was a
 * third of the server's time; then storage's reads through node:http alone were 85% of
 * what was left. JSON clients, and the moments an interceptor must see the messages
 * (`DirectFrames.writable`), still go through the pipeline, a fresh buffer per message.
 */
export async function* downloadMessages(
  file: FileMessage,
  body: ObjectBody,
  frames: DirectFrames | undefined,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof DownloadResponseSchema>> {
  const direct = frames?.format === 'binary' ? { frames, writer: new PacedFrameWriter(frames, signal) } : undefined;
  // A client gone while storage is read ends the read at once (the generator only notices at its next write).
  const onAbort = () => body.close();
  signal.addEventListener('abort', onAbort, { once: true });
  // A read ended by the call's end fails as the call did (cancel, deadline), not as a storage error.
  const readInto = (target: Uint8Array) =>
    body.readInto(target).catch((error: unknown) => {
      throw signal.aborted ? ConnectError.from(signal.reason, Code.Aborted) : error;
    });
  try {
    // Storage's declared length sizes the last buffer; a chunked body (no length) reads to its end.
    let left = body.size ?? Number.POSITIVE_INFINITY;
    let first = true;
    while (left > 0) {
      const capacity = Math.min(downloadChunkBytes, left);
      if (!first && direct?.frames.writable) {
        const buffer = takeChunkBuffer();
        const read = await readInto(buffer.subarray(0, capacity));
        if (read === 0) {
          giveBackChunkBuffer(buffer);
          break;
        }
        left -= read;
        const chunk = buffer.subarray(0, read);
        await direct.writer.write([chunkFrameHeader(read), chunk], () => giveBackChunkBuffer(buffer));
        if (read < capacity) break;
        continue;
      }
      const buffer = Buffer.allocUnsafeSlow(capacity);
      const read = await readInto(buffer);
      if (read === 0 && !first) break;
      left -= read;
      yield first ? { chunk: buffer.subarray(0, read), file } : { chunk: buffer.subarray(0, read) };
      first = false;
      if (read < capacity) break;
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    body.close();
  }
}
