import type { Readable } from 'node:stream';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { DownloadResponseSchema, File as FileMessage } from '../../gen/yardmaster/v1/files_pb.ts';
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

/** The bytes of one message: slices of what storage sent, not copied. */
interface MessageBytes {
  pieces: Buffer[];
  size: number;
}

/** A byte stream cut into messages of downloadChunkBytes (the last one shorter), as slices of its own pieces. */
async function* messagesOf(source: AsyncIterable<Buffer>): AsyncGenerator<MessageBytes> {
  let pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of source) {
    for (let offset = 0; offset < piece.byteLength; ) {
      const take = Math.min(piece.byteLength - offset, downloadChunkBytes - size);
      pieces.push(take === piece.byteLength ? piece : piece.subarray(offset, offset + take));
      size += take;
      offset += take;
      if (size === downloadChunkBytes) {
        yield { pieces, size };
        pieces = [];
        size = 0;
      }
    }
  }
  if (size > 0) yield { pieces, size };
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
 * storage's own buffers behind a 7-to-9-byte header, paced by the client.
 *
 * Through Connect each MiB sent was five fresh MiB (storage's reads, the message's chunk,
 * protobuf's writer buffer, its finished slice, the envelope), and collecting them was a
 * third of the server's time. JSON clients, and the moments an interceptor must see the
 * messages (`DirectFrames.writable`), still go through the pipeline, one copy per message.
 */
export async function* downloadMessages(
  file: FileMessage,
  bytes: Readable,
  frames: DirectFrames | undefined,
  signal: AbortSignal,
): AsyncGenerator<MessageInitShape<typeof DownloadResponseSchema>> {
  const direct = frames?.format === 'binary' ? { frames, writer: new PacedFrameWriter(frames, signal) } : undefined;
  try {
    let first = true;
    for await (const message of messagesOf(bytes as AsyncIterable<Buffer>)) {
      if (!first && direct?.frames.writable) {
        await direct.writer.write([chunkFrameHeader(message.size), ...message.pieces]);
        continue;
      }
      const chunk = message.pieces.length === 1 ? message.pieces[0]! : Buffer.concat(message.pieces, message.size);
      yield first ? { chunk, file } : { chunk };
      first = false;
    }
  } finally {
    bytes.destroy();
  }
}
