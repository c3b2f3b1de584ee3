import { create, toBinary } from '@bufbuild/protobuf';
import { encodeEnvelope } from '@connectrpc/connect/protocol';
import { expect, test } from 'vitest';
import { DownloadResponseSchema } from '../../gen/yardmaster/v1/files_pb.ts';
import { chunkFrameHeader, downloadChunkBytes } from '../../src/files/download-rpc.ts';

// Every length of the chunk's varint (1 to 3 bytes) up to the largest message: the header
// followed by the chunk must be, byte for byte, the frame Connect would have written.
test.each([1, 127, 128, 16_383, 16_384, 12_345, downloadChunkBytes])('a frame of a %i-byte chunk is the one Connect writes', (size) => {
  const chunk = new Uint8Array(size).map((_, index) => index % 251);
  const frame = Buffer.concat([chunkFrameHeader(size), chunk]);
  const expected = encodeEnvelope(0, toBinary(DownloadResponseSchema, create(DownloadResponseSchema, { chunk })));
  expect(frame.equals(expected)).toBe(true);
});
