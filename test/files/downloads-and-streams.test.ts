/**
 * FilesService GetDownloadUrl, the Upload and Download streams, and the embedded store's own access rules.
 */
import { randomBytes } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { Client as S3Client } from 'minio';
import { describe, expect, inject, test } from 'vitest';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { eventually, expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  kib,
  mib,
  server,
  bucket,
  sha256,
  png,
  text,
  randomData,
  createUpload,
  uploadPresigned,
  type UploadMessage,
  uploadMessages,
  uploadStream,
  download,
  fetchBytes,
  fileRow,
  fileRowsOf,
  objectBytes,
  openMultipartUploads,
  admin,
  storedFor,
  useFilesServer,
} from './support.ts';

useFilesServer();

// =======================================================================================

describe('GetDownloadUrl', () => {
  test('a plain fetch of the URL returns the bytes as an attachment named after the file, with its content type', async () => {
    const { client } = await server.createUser();
    const bytes = png();
    const file = await uploadPresigned(client, { name: 'résumé 2024.png' }, bytes);
    const { url, expireTime } = await client.files.getDownloadUrl({ id: file.id });
    const expiresIn = timestampDate(expireTime!).getTime() - Date.now();
    expect(expiresIn).toBeGreaterThan(14 * 60_000);
    expect(expiresIn).toBeLessThanOrEqual(15 * 60_000 + 1000);
    const { res, bytes: fetched } = await fetchBytes(url);
    expect(res.status).toBe(200);
    expect(fetched).toEqual(bytes);
    const disposition = res.headers.get('content-disposition') ?? '';
    expect(disposition).toMatch(/^attachment;/);
    expect(disposition).toContain(`filename*=UTF-8''${encodeURIComponent('résumé 2024.png')}`);
    expect(disposition).toMatch(/filename="r_sum_ 2024\.png"|filename="résumé 2024\.png"/);
    expect(res.headers.get('content-type')).toBe('image/png');

    const week = await client.files.getDownloadUrl({ id: file.id, expires: { seconds: 7n * 86_400n } });
    expect((await fetchBytes(week.url)).bytes).toEqual(bytes);
    for (const expires of [{ seconds: 7n * 86_400n + 1n }, { seconds: 0n, nanos: 500_000_000 }, { seconds: -5n }]) {
      const error = await expectConnectError(client.files.getDownloadUrl({ id: file.id, expires }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['expires']);
    }
  });

  test('an UPLOADING file has no download: FailedPrecondition FILE_NOT_AVAILABLE for the URL and for Download', async () => {
    const { client } = await server.createUser();
    const plan = await createUpload(client, { name: 'not-yet.txt', size: 3 });
    await expectConnectError(client.files.getDownloadUrl({ id: plan.file!.id }), Code.FailedPrecondition, 'FILE_NOT_AVAILABLE');
    await expectConnectError(download(client, plan.file!.id), Code.FailedPrecondition, 'FILE_NOT_AVAILABLE');
  });
});

// =======================================================================================

describe('Upload and Download streams', () => {
  test('Download is sent uncompressed even to a client that offers gzip, in messages of just under 1 MiB', async () => {
    const { client } = await server.createUser();
    // Highly compressible bytes: had the server compressed anything, it would be these.
    const bytes = Buffer.alloc(3 * mib, 'yardmaster ');
    const file = await uploadStream(client, { name: 'plain.bin' }, bytes);
    const id = Buffer.from(file.id);
    const request = Buffer.concat([Buffer.from([0, 0, 0, 0, id.length + 2, 0x0a, id.length]), id]);
    const reply = await fetch(`${server.url}/yardmaster.v1.FilesService/Download`, {
      method: 'POST',
      headers: {
        'content-type': 'application/connect+proto',
        'connect-accept-encoding': 'gzip, br',
        authorization: `Bearer ${client.tokens!.accessToken}`,
      },
      body: request,
    });
    expect(reply.status).toBe(200);
    const body = Buffer.from(await reply.arrayBuffer());
    const frames: { flags: number; size: number }[] = [];
    for (let offset = 0; offset < body.length; offset += 5 + body.readUInt32BE(offset + 1))
      frames.push({ flags: body[offset]!, size: body.readUInt32BE(offset + 1) });
    const messages = frames.slice(0, -1);
    expect(frames.at(-1)!.flags).toBe(2); // the end of the stream
    expect(messages.map((frame) => frame.flags & 1)).toEqual(messages.map(() => 0));
    expect(messages.length).toBe(4);
    // The chunk with its 4-byte field header fits 1 MiB exactly (the first message also carries the file).
    expect(messages.slice(1, 3).map((frame) => frame.size)).toEqual([mib - 12, mib - 12]);
    expect((await download(client, file.id)).bytes.equals(bytes)).toBe(true);
  });

  for (const protocol of ['connect', 'grpc'] as const) {
    test(`${protocol}: Upload computes the sha256 and sniffs the type; Download returns the bytes, or exactly a range`, async () => {
      const { user, client } = await server.createUser({ clientOptions: { protocol } });
      const bytes = Buffer.concat([png(), randomBytes(3 * mib)]);
      const file = await uploadStream(client, { directory: '/streamed', name: 'picture.png', contentType: 'application/pdf' }, bytes);
      expect(file).toMatchObject({
        status: FileStatus.AVAILABLE,
        size: BigInt(bytes.length),
        sha256: sha256(bytes),
        contentType: 'image/png',
        directory: '/streamed',
      });
      expect(await fileRow(file.id)).toMatchObject({ status: 'available', sha256: sha256(bytes), upload_mode: 'stream' });
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${file.id}`], multipart: [] });
      expect(await objectBytes(`files/${user.id}/${file.id}`)).toEqual(bytes);

      const whole = await download(client, file.id);
      expect(whole.file).toMatchObject({ id: file.id, sha256: sha256(bytes) });
      expect(whole.bytes.length).toBe(bytes.length);
      expect(whole.bytes.equals(bytes)).toBe(true);
      // Messages stay well below the 4 MiB that gRPC clients accept by default.
      expect(whole.largestChunk).toBeLessThanOrEqual(1024 * kib);
      expect((await download(client, file.id, 100, 1000)).bytes).toEqual(bytes.subarray(100, 1100));
      expect((await download(client, file.id, bytes.length - 10)).bytes).toEqual(bytes.subarray(bytes.length - 10));
      expect((await download(client, file.id, 5, bytes.length * 2)).bytes).toEqual(bytes.subarray(5));
      const atEnd = await download(client, file.id, bytes.length);
      expect(atEnd.bytes.length).toBe(0);
      expect(atEnd.file?.id).toBe(file.id);
      const beyond = await expectConnectError(download(client, file.id, bytes.length + 1), Code.InvalidArgument);
      expect(violatedFields(beyond)).toEqual(['offset']);
      const negative = await expectConnectError(download(client, file.id, 0, -1), Code.InvalidArgument);
      expect(violatedFields(negative)).toEqual(['length']);

      // A declared sha256 is checked; an empty file is fine.
      const checked = await uploadStream(client, { name: 'checked.bin', sha256: sha256(bytes) }, bytes);
      expect(checked.sha256).toBe(sha256(bytes));
      await expectConnectError(
        uploadStream(client, { name: 'wrong.bin', sha256: sha256(text('no')) }, bytes),
        Code.InvalidArgument,
        'CHECKSUM_MISMATCH',
      );
      const empty = await uploadStream(client, { name: 'empty.txt' }, new Uint8Array());
      expect(empty).toMatchObject({ size: 0n, sha256: sha256(new Uint8Array()), status: FileStatus.AVAILABLE });
      expect((await download(client, empty.id)).bytes.length).toBe(0);
      expect((await fileRowsOf(user.id)).map((row) => row.name).sort()).toEqual(['checked.bin', 'empty.txt', 'picture.png']);
      expect(await storedFor(user.id).then((stored) => stored.multipart)).toEqual([]);
    });
  }

  // Binary chunks after the first message are written as ready-made frames around Connect's
  // pipeline; JSON goes through Connect. Each must come out as the exact bytes.
  const transports = [
    { name: 'Connect JSON over HTTP/1.1', options: { protocol: 'connect', binary: false, httpVersion: '1.1' } },
    { name: 'Connect binary over HTTP/1.1', options: { protocol: 'connect', binary: true, httpVersion: '1.1' } },
    { name: 'Connect binary over HTTP/2', options: { protocol: 'connect', binary: true, httpVersion: '2' } },
    { name: 'gRPC', options: { protocol: 'grpc' } },
    { name: 'gRPC-Web over HTTP/1.1', options: { protocol: 'grpc-web', httpVersion: '1.1' } },
    { name: 'gRPC-Web over HTTP/2', options: { protocol: 'grpc-web', httpVersion: '2' } },
  ] as const;
  test('Download returns the exact bytes, whole and a range, in messages of just under 1 MiB, over every protocol', async () => {
    const { user, password, client: uploader } = await server.createUser();
    // Not a multiple of the message size, so the last message is a short one.
    const bytes = randomBytes(5 * mib + 12_345);
    const file = await uploadStream(uploader, { name: 'every-protocol.bin' }, bytes);
    for (const { name, options } of transports) {
      const client = await server.signIn(user.username, password, options);
      const whole = await download(client, file.id);
      expect(whole.file?.id, name).toBe(file.id);
      expect(whole.bytes.equals(bytes), name).toBe(true);
      expect(whole.messages, name).toBe(6);
      expect(whole.largestChunk, name).toBe(mib - 16);
      const range = await download(client, file.id, mib + 3, 3 * mib);
      expect(range.bytes.equals(bytes.subarray(mib + 3, 4 * mib + 3)), name).toBe(true);
    }
  });

  test('Downloads of different files at once, each client reading at its own pace, get their own bytes (buffers are reused only once their frame has left)', async () => {
    const { user, password, client: uploader } = await server.createUser();
    const files = await Promise.all(
      [3 * mib + 1, 4 * mib - 5, 2 * mib + 777].map(async (size, index) => {
        const bytes = randomBytes(size);
        return { bytes, file: await uploadStream(uploader, { name: `concurrent-${index}.bin` }, bytes) };
      }),
    );
    const binaryTransports = ['Connect binary over HTTP/1.1', 'gRPC', 'gRPC-Web over HTTP/2'];
    const clients = await Promise.all(
      transports
        .filter((transport) => binaryTransports.includes(transport.name))
        .map(async ({ name, options }) => ({ name, client: await server.signIn(user.username, password, options) })),
    );
    const runs = clients.flatMap(({ name, client }) =>
      files.map(async ({ bytes, file }, index) => {
        const pieces: Uint8Array[] = [];
        for await (const message of client.files.download({ id: file.id })) {
          // Copied at once: a chunk's bytes must not change after it arrived, and slow readers hold frames longer.
          pieces.push(Uint8Array.from(message.chunk));
          if (index === 1) await new Promise((resolve) => setTimeout(resolve, 5));
        }
        expect(Buffer.concat(pieces).equals(bytes), `${name}, file ${index}`).toBe(true);
      }),
    );
    await Promise.all(runs);
  }, 60_000);

  test('a client that stops reading holds the Download, and one that cancels mid-way ends it; the next Download is whole, over HTTP/1.1 and HTTP/2', async () => {
    const { user, password, client: uploader } = await server.createUser();
    const bytes = randomBytes(12 * mib);
    const file = await uploadStream(uploader, { name: 'cancelled-download.bin' }, bytes);
    const binaryTransports = ['Connect binary over HTTP/1.1', 'gRPC', 'gRPC-Web over HTTP/2'];
    for (const { name, options } of transports.filter((transport) => binaryTransports.includes(transport.name))) {
      const client = await server.signIn(user.username, password, options);
      const controller = new AbortController();
      let received = 0;
      const call = (async () => {
        for await (const message of client.files.download({ id: file.id }, { signal: controller.signal })) {
          received += message.chunk.byteLength;
          // A pause past the server's buffers and the flow-control windows: it must wait, not fail.
          if (received >= 3 * mib && received < 4 * mib) await new Promise((resolve) => setTimeout(resolve, 300));
          if (received >= 6 * mib) controller.abort();
        }
      })();
      await expectConnectError(call, Code.Canceled);
      expect(received, name).toBeLessThan(bytes.length);
      const whole = await download(client, file.id);
      expect(whole.bytes.equals(bytes), name).toBe(true);
    }
  }, 60_000);

  test('a Download whose account is deactivated while it runs ends Unauthenticated at the next credential re-check, its chunks written directly or not', async () => {
    const { user, password, client: uploader } = await server.createUser();
    // Larger than what the flow-control windows and socket buffers hold, so the server has more to send after the pause.
    const bytes = randomBytes(24 * mib);
    const file = await uploadStream(uploader, { name: 'revoked-download.bin' }, bytes);
    const held = ['Connect binary over HTTP/1.1', 'gRPC', 'Connect JSON over HTTP/1.1'];
    const clients = [];
    for (const { name, options } of transports.filter((transport) => held.includes(transport.name)))
      clients.push({ name, client: await server.signIn(user.username, password, options) });
    const calls = clients.map(({ name, client }) => {
      let received = 0;
      const call = (async () => {
        for await (const message of client.files.download({ id: file.id })) {
          received += message.chunk.byteLength;
          // Past the re-check interval (5 s) between two messages: the account is deactivated meanwhile.
          if (received === message.chunk.byteLength) await new Promise((resolve) => setTimeout(resolve, 6_000));
        }
      })();
      return { name, call, received: () => received };
    });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await admin.admin.updateUser({ user: { id: user.id, active: false }, updateMask: { paths: ['active'] } });
    await Promise.all(calls.map(({ call }) => expectConnectError(call, Code.Unauthenticated)));
    for (const { name, received } of calls) expect(received(), name).toBeLessThan(bytes.length);
  }, 60_000);

  test('a first message without metadata, an empty stream, or a second metadata message is InvalidArgument, and nothing is kept', async () => {
    const { user, client } = await server.createUser();
    async function* chunkFirst(): AsyncGenerator<UploadMessage> {
      yield { content: { case: 'chunk', value: text('no metadata') } };
    }
    const noMetadata = await expectConnectError(client.files.upload(chunkFirst()), Code.InvalidArgument);
    expect(violatedFields(noMetadata)).toEqual(['metadata']);
    async function* nothing(): AsyncGenerator<UploadMessage> {}
    const empty = await expectConnectError(client.files.upload(nothing()), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['metadata']);
    async function* twice(): AsyncGenerator<UploadMessage> {
      yield { content: { case: 'metadata', value: { name: 'twice.txt', size: 4n } } };
      yield { content: { case: 'chunk', value: text('ab') } };
      yield { content: { case: 'metadata', value: { name: 'again.txt', size: 2n } } };
    }
    const second = await expectConnectError(client.files.upload(twice()), Code.InvalidArgument);
    expect(violatedFields(second)).toEqual(['chunk']);
    await eventually(async () => {
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    }, 3000);
  });

  test.each([
    ['more', 9 * mib, 10 * mib],
    ['fewer', 2 * mib, mib],
  ])(
    '%s bytes than declared: InvalidArgument SIZE_MISMATCH, no row, no object, no open multipart upload',
    async (_title, declared, sent) => {
      const { user, client } = await server.createUser();
      const error = await expectConnectError(
        uploadStream(client, { name: 'wrong-size.bin', size: declared }, randomData(sent)),
        Code.InvalidArgument,
        'SIZE_MISMATCH',
      );
      expect(violatedFields(error)).toEqual(['size']);
      await eventually(async () => {
        expect(await fileRowsOf(user.id)).toEqual([]);
        expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
      }, 3000);
    },
  );

  test('cancelling an Upload mid-way (the client aborts its signal) leaves no row, no object and no open multipart upload', async () => {
    const { user, client } = await server.createUser({ clientOptions: { protocol: 'grpc' } });
    const controller = new AbortController();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    async function* halfThenWait(): AsyncGenerator<Uint8Array> {
      for (let index = 0; index < 12; index++) yield randomBytes(mib);
      await held;
    }
    const call = client.files.upload(uploadMessages({ name: 'cancelled.bin', size: BigInt(64 * mib) }, halfThenWait()), {
      signal: controller.signal,
    });
    call.catch(() => undefined);
    try {
      // The server has the row and has sent a first part to storage.
      await eventually(async () => {
        expect((await fileRowsOf(user.id)).map((row) => row.status)).toEqual(['uploading']);
        expect(openMultipartUploads(`files/${user.id}/`).map((upload) => upload.parts)).toEqual([1]);
      }, 10_000);
      controller.abort();
      await expectConnectError(call, Code.Canceled);
    } finally {
      release();
    }
    await eventually(async () => {
      expect(await fileRowsOf(user.id)).toEqual([]);
      expect(await storedFor(user.id)).toEqual({ objects: [], multipart: [] });
    }, 5000);
  });
});

// =======================================================================================

describe('the embedded store', () => {
  test('refuses what is not signed with its secret: anonymous reads, writes, deletes and aborts, a presigned URL for another key or with another secret', async () => {
    const { user, client } = await server.createUser();
    const bytes = text('guarded bytes\n');
    const file = await uploadPresigned(client, { name: 'guarded.txt' }, bytes);
    const key = `files/${user.id}/${file.id}`;
    const objectUrl = `${new URL(inject('s3Endpoint')).origin}/${bucket}/${key}`;
    for (const [method, body] of [
      ['GET', undefined],
      ['PUT', 'overwritten'],
      ['DELETE', undefined],
    ] as const) {
      const res = await fetch(objectUrl, { method, body });
      expect(res.status, `${method} without a signature`).toBe(403);
      expect(await res.text()).toContain('<Code>AccessDenied</Code>');
    }
    expect((await fetch(`${new URL(inject('s3Endpoint')).origin}/${bucket}?list-type=2`)).status).toBe(403);

    const multipart = await createUpload(client, { name: 'open.bin', size: 70 * mib });
    const uploadId = new URL(multipart.parts[0]!.url).searchParams.get('uploadId')!;
    expect(
      (await fetch(`${objectUrl.replace(file.id, multipart.file!.id)}?uploadId=${encodeURIComponent(uploadId)}`, { method: 'DELETE' }))
        .status,
    ).toBe(403);
    expect(openMultipartUploads(`files/${user.id}/`).map((upload) => upload.key)).toEqual([`files/${user.id}/${multipart.file!.id}`]);

    // A signed URL for one key does not open another, and a guessed secret signs nothing.
    const { url } = await client.files.getDownloadUrl({ id: file.id });
    const elsewhere = new URL(url);
    elsewhere.pathname = `/${bucket}/files/${user.id}/${multipart.file!.id}`;
    expect((await fetch(elsewhere)).status).toBe(403);
    const forger = new S3Client({
      endPoint: '127.0.0.1',
      port: Number(new URL(inject('s3Endpoint')).port),
      useSSL: false,
      accessKey: inject('s3Credentials').accessKey,
      secretKey: 'S3RVER',
      region: 'us-east-1',
      pathStyle: true,
    });
    expect((await fetch(await forger.presignedGetObject(bucket, key, 60))).status).toBe(403);
    await expect(forger.removeObject(bucket, key)).rejects.toThrow();

    expect(await objectBytes(key)).toEqual(bytes);
    await client.files.abortUpload({ fileId: multipart.file!.id });
  });
});
