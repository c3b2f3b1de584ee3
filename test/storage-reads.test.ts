/**
 * ObjectReads, the object GETs Download reads storage with (net's `onread` into the
 * caller's buffers, a minimal HTTP/1.1 reader, keep-alive connections of its own), against
 * the run's embedded S3 store (s3rver behind its Signature V4 front), a bucket of this
 * file's own; and, for what that store never sends (chunked bodies, a connection cut
 * mid-body, keep-alive closed by the other side), small local servers. Each test checks the
 * bytes read against the bytes stored, the error against minio's for the same call, and the
 * connections left open.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client as S3Client } from 'minio';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { type ObjectBody, ObjectReads } from '../src/platform/storage/object-reads.ts';
import { isNotFoundError } from '../src/platform/storage/object-storage.ts';
import { download, uploadStream } from './files/support.ts';
import { eventually, expectConnectError } from './support/assertions.ts';
import { startTestServer } from './support/test-server.ts';

const endpoint = inject('s3Endpoint');
const credentials = inject('s3Credentials');
const bucket = `reads-${randomBytes(4).toString('hex')}`;
let store: S3Client;
let reads: ObjectReads;
/** Crosses the 16 KiB scratch, 64 KiB socket reads and 1 MiB buffers at odd offsets. */
const bytes = randomBytes(3 * 1024 * 1024 + 12_345);

beforeAll(async () => {
  const url = new URL(endpoint);
  store = new S3Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    ...credentials,
    region: 'us-east-1',
    pathStyle: true,
  });
  await store.makeBucket(bucket, 'us-east-1');
  await store.putObject(bucket, 'dir/the object', bytes, bytes.length);
  await store.putObject(bucket, 'empty', Buffer.alloc(0), 0);
  reads = new ObjectReads({ endpoint, ...credentials, region: 'us-east-1', bucket });
});

afterAll(() => {
  reads?.close();
});

/** The whole body, read with buffers of `bufferBytes` (each filled before the next). */
async function readAll(body: ObjectBody, bufferBytes: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (;;) {
    const buffer = Buffer.alloc(bufferBytes);
    const read = await body.readInto(buffer);
    if (read === 0) break;
    pieces.push(buffer.subarray(0, read));
    if (read < bufferBytes) {
      expect(await body.readInto(Buffer.alloc(1))).toBe(0);
      break;
    }
  }
  body.close();
  return Buffer.concat(pieces);
}

test('a body read with buffers of any size is the object, byte for byte, on one kept connection', async () => {
  for (const bufferBytes of [1024 * 1024 - 16, 1, 7, 16 * 1024 - 1, 16 * 1024 + 1, 65_537, 5 * 1024 * 1024]) {
    const body = await reads.open('dir/the object');
    expect(body.size).toBe(bytes.length);
    const read = bufferBytes === 1 ? await readAll(await reads.open('dir/the object', 0, 70_000), 1) : await readAll(body, bufferBytes);
    if (bufferBytes === 1) {
      body.close();
      expect(read.equals(bytes.subarray(0, 70_000))).toBe(true);
    } else expect(read.equals(bytes)).toBe(true);
  }
  // Every read above either went back to the pool or (the one closed unread) was closed.
  await eventually(async () => expect(reads.openConnections).toBe(1));
  expect(reads.idleConnections).toBe(1);
});

test('ranges: from an offset, a length from an offset, and an empty object', async () => {
  const from = await reads.open('dir/the object', 1_000_003);
  expect(from.size).toBe(bytes.length - 1_000_003);
  expect((await readAll(from, 1024 * 1024 - 16)).equals(bytes.subarray(1_000_003))).toBe(true);
  const part = await reads.open('dir/the object', 65_535, 2 * 1024 * 1024 + 3);
  expect((await readAll(part, 300_000)).equals(bytes.subarray(65_535, 65_535 + 2 * 1024 * 1024 + 3))).toBe(true);
  const empty = await reads.open('empty');
  expect(empty.size).toBe(0);
  expect(await empty.readInto(Buffer.alloc(10))).toBe(0);
  empty.close();
});

test('a missing object fails as minio fails it (NoSuchKey), a wrong secret too, and the connection is kept for the next read', async () => {
  const minioError = await store.getObject(bucket, 'no/such/object').catch((error: unknown) => error);
  const ours = await reads.open('no/such/object').catch((error: unknown) => error);
  expect(isNotFoundError(ours)).toBe(true);
  expect(ours).toMatchObject({
    name: (minioError as Error).name,
    code: (minioError as { code: string }).code,
    message: (minioError as Error).message,
  });

  const wrongSecret = new ObjectReads({ endpoint, ...credentials, secretKey: 'not-the-secret', region: 'us-east-1', bucket });
  const refusedByMinio = await new S3Client({
    endPoint: new URL(endpoint).hostname,
    port: Number(new URL(endpoint).port),
    useSSL: false,
    accessKey: credentials.accessKey,
    secretKey: 'not-the-secret',
    region: 'us-east-1',
    pathStyle: true,
  })
    .getObject(bucket, 'dir/the object')
    .catch((error: unknown) => error);
  const refused = await wrongSecret.open('dir/the object').catch((error: unknown) => error);
  expect(refused).toMatchObject({ code: (refusedByMinio as { code: string }).code, message: (refusedByMinio as Error).message });
  wrongSecret.close();

  const opened = reads.openConnections;
  expect((await readAll(await reads.open('dir/the object'), 1024 * 1024)).equals(bytes)).toBe(true);
  expect(reads.openConnections).toBe(opened);
});

test('a body closed mid-way closes its connection (the pool does not grow), a pending read rejects, the next read is whole', async () => {
  await eventually(async () => expect(reads.openConnections).toBeLessThanOrEqual(1));
  const before = reads.openConnections;
  const body = await reads.open('dir/the object');
  expect(reads.openConnections).toBe(Math.max(before, 1));
  const first = Buffer.alloc(100_000);
  expect(await body.readInto(first)).toBe(first.length);
  expect(first.equals(bytes.subarray(0, first.length))).toBe(true);
  const pending = body.readInto(Buffer.alloc(2 * 1024 * 1024));
  body.close();
  await expect(pending).rejects.toThrow();
  await eventually(async () => expect(reads.openConnections).toBe(0));
  expect((await readAll(await reads.open('dir/the object'), 1024 * 1024)).equals(bytes)).toBe(true);
  expect(reads.openConnections).toBe(1);
});

test('two bodies read at once into buffers handed back and forth stay apart', async () => {
  const other = randomBytes(2 * 1024 * 1024 + 1);
  await store.putObject(bucket, 'other', other, other.length);
  const [a, b] = await Promise.all([reads.open('dir/the object'), reads.open('other')]);
  const [readA, readB] = await Promise.all([readAll(a, 64 * 1024), readAll(b, 100_000)]);
  expect(readA.equals(bytes)).toBe(true);
  expect(readB.equals(other)).toBe(true);
  expect(reads.openConnections).toBe(2);
});

/** A local HTTP/1.1 server answering every GET with `answer` (no signature check: the reader's parsing is what is tested). */
async function localServer(
  answer: (socket: net.Socket, request: string) => void,
): Promise<{ endpoint: string; close: () => void; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let received = '';
    socket.on('data', (data) => {
      received += data.toString('latin1');
      if (received.includes('\r\n\r\n')) {
        const request = received;
        received = '';
        answer(socket, request);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

test('a chunked body (chunks of every size, extensions, a trailer) is read byte for byte', async () => {
  const payload = randomBytes(200_000);
  const local = await localServer((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
    let at = 0;
    for (const size of [1, 15, 16 * 1024, 16 * 1024 + 3, 70_000]) {
      socket.write(`${size.toString(16)};ext=1\r\n`);
      socket.write(payload.subarray(at, at + size));
      socket.write('\r\n');
      at += size;
    }
    socket.write(`${(payload.length - at).toString(16)}\r\n`);
    socket.write(payload.subarray(at));
    socket.write('\r\n0\r\nx-trailer: yes\r\n\r\n');
  });
  const chunked = new ObjectReads({ endpoint: local.endpoint, ...credentials, region: 'us-east-1', bucket });
  try {
    for (const bufferBytes of [1, 999, 16 * 1024 + 1, 1024 * 1024]) {
      const body = await chunked.open('any');
      expect(body.size).toBeUndefined();
      expect((await readAll(body, bufferBytes)).equals(payload)).toBe(true);
    }
    expect(chunked.openConnections).toBe(1);
  } finally {
    chunked.close();
    local.close();
  }
});

test('an error reply in chunks is read whole and becomes the same S3Error', async () => {
  const xml =
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>k</Key></Error>';
  const local = await localServer((socket) => {
    socket.write('HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nContent-Type: application/xml\r\n\r\n');
    for (let at = 0; at < xml.length; at += 10)
      socket.write(`${Math.min(10, xml.length - at).toString(16)}\r\n${xml.slice(at, at + 10)}\r\n`);
    socket.write('0\r\n\r\n');
  });
  const local404 = new ObjectReads({ endpoint: local.endpoint, ...credentials, region: 'us-east-1', bucket });
  try {
    const error = await local404.open('k').catch((caught: unknown) => caught);
    expect(isNotFoundError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'NoSuchKey', message: 'The specified key does not exist.' });
    // Read whole: the connection is kept.
    expect(local404.idleConnections).toBe(1);
  } finally {
    local404.close();
    local.close();
  }
});

test('storage closing the connection mid-body is a clean error and leaves no connection behind', async () => {
  const payload = randomBytes(1024 * 1024);
  const local = await localServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${payload.length}\r\n\r\n`);
    socket.end(payload.subarray(0, 300_000));
  });
  const cut = new ObjectReads({ endpoint: local.endpoint, ...credentials, region: 'us-east-1', bucket });
  try {
    const body = await cut.open('k');
    expect(body.size).toBe(payload.length);
    const buffer = Buffer.alloc(payload.length);
    await expect(body.readInto(buffer)).rejects.toThrow(/closed the connection/);
    expect(buffer.subarray(0, 300_000).equals(payload.subarray(0, 300_000))).toBe(true);
    body.close();
    await eventually(async () => expect(cut.openConnections).toBe(0));
  } finally {
    cut.close();
    local.close();
  }
});

test('a kept connection the other side closed while idle is replaced, the GET sent again', async () => {
  const payload = randomBytes(50_000);
  const server = http.createServer((_req, res) => res.end(payload));
  server.keepAliveTimeout = 100;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const local = new ObjectReads({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ...credentials,
    region: 'us-east-1',
    bucket,
  });
  try {
    expect((await readAll(await local.open('k'), 1024 * 1024)).equals(payload)).toBe(true);
    expect(local.idleConnections).toBe(1);
    // Node's server closes it after keepAliveTimeout and its buffer (1 s on Node 24).
    await eventually(async () => expect(local.openConnections).toBe(0), 5000);
    expect((await readAll(await local.open('k'), 1024 * 1024)).equals(payload)).toBe(true);
  } finally {
    local.close();
    server.close();
  }
});

test('a kept connection that fails before any answer (closed as the GET went out) is replaced, the GET sent again', async () => {
  const payload = randomBytes(40_000);
  const answered = new WeakSet<net.Socket>();
  const local = await localServer((socket) => {
    if (answered.has(socket)) return void socket.destroy();
    answered.add(socket);
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${payload.length}\r\n\r\n`);
    socket.write(payload);
  });
  const racing = new ObjectReads({ endpoint: local.endpoint, ...credentials, region: 'us-east-1', bucket });
  try {
    for (let round = 0; round < 3; round++) expect((await readAll(await racing.open('k'), 1024 * 1024)).equals(payload)).toBe(true);
    expect(racing.openConnections).toBe(1);
  } finally {
    racing.close();
    local.close();
  }
});

const haveOpenssl = ['/usr/bin/openssl', '/usr/local/bin/openssl', '/bin/openssl'].some((candidate) => existsSync(candidate));

test.skipIf(!haveOpenssl)(
  'over https (TLS sockets take onread too): byte for byte on a kept connection; an untrusted certificate is refused (skipped without openssl)',
  async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-reads-tls-'));
    // biome-ignore format: one flag per pair reads better
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')]);
    const [key, cert] = await Promise.all([readFile(path.join(dir, 'key.pem')), readFile(path.join(dir, 'cert.pem'))]);
    const payload = randomBytes(1024 * 1024 + 99);
    const server = https.createServer({ key, cert }, (_req, res) => res.end(payload));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const tlsEndpoint = `https://localhost:${(server.address() as AddressInfo).port}`;
    const trusted = new ObjectReads({ endpoint: tlsEndpoint, ...credentials, region: 'us-east-1', bucket, tls: { ca: cert } });
    const untrusted = new ObjectReads({ endpoint: tlsEndpoint, ...credentials, region: 'us-east-1', bucket });
    try {
      for (const bufferBytes of [1024 * 1024 - 16, 70_001])
        expect((await readAll(await trusted.open('k'), bufferBytes)).equals(payload)).toBe(true);
      expect(trusted.openConnections).toBe(1);
      await expect(untrusted.open('k')).rejects.toThrow(/certificate/i);
    } finally {
      trusted.close();
      untrusted.close();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

test('a Download cancelled mid-way closes its storage connection; the next Download is whole on one connection', async () => {
  // The server reaches storage through this proxy, which marks the connections that carried an object GET.
  const target = new URL(endpoint);
  const getConnections = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    client.on('data', (data) => {
      if (/^GET \/[^/]+\/files\//m.test(data.toString('latin1', 0, Math.min(data.length, 200)))) getConnections.add(client);
    });
    client.pipe(upstream).pipe(client);
    const forget = () => {
      client.destroy();
      upstream.destroy();
      getConnections.delete(client);
    };
    client.on('error', forget).on('close', forget);
    upstream.on('error', forget).on('close', forget);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const server = await startTestServer({ storageEndpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` });
  try {
    const { client } = await server.createUser();
    const payload = randomBytes(12 * 1024 * 1024);
    const file = await uploadStream(client, { name: 'cancelled.bin' }, payload);
    const controller = new AbortController();
    let received = 0;
    const call = (async () => {
      for await (const message of client.files.download({ id: file.id }, { signal: controller.signal })) {
        received += message.chunk.byteLength;
        if (received >= 2 * 1024 * 1024) {
          expect(getConnections.size).toBe(1);
          controller.abort();
        }
      }
    })();
    await expectConnectError(call, Code.Canceled);
    // The rest of the object is not read: the connection is closed, not kept.
    await eventually(async () => expect(getConnections.size).toBe(0), 5000);
    for (let round = 0; round < 2; round++) expect((await download(client, file.id)).bytes.equals(payload)).toBe(true);
    // Read to the end, the connection is kept for the next Download: one, not one per Download.
    expect(getConnections.size).toBe(1);
  } finally {
    await server.close();
    proxy.close();
  }
}, 60_000);
