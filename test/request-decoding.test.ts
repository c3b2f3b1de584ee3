/**
 * A request body that cannot be decoded is the client's mistake: every protocol answers
 * InvalidArgument in its own encoding, for unary, server-streaming and client-streaming
 * methods, while a server that cannot encode its own answer still says Internal.
 * Spoken with raw HTTP, so that nothing on the client side repairs or reinterprets bytes.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Health, type HealthCheckResponse_ServingStatus as ServingStatus } from '../gen/grpc/health/v1/health_pb.ts';
import { createLogger } from '../src/platform/logger.ts';
import { createRpcHandler } from '../src/server/rpc-handler.ts';
import { adminPassword, startTestServer, type TestServer } from './support/test-server.ts';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A length-delimited field 1 that promises five bytes and carries one. */
const truncated = Uint8Array.of(0x0a, 0x05, 0x61);
/** A field whose tag is not a valid wire type. */
const garbage = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);

function envelope(flags: number, data: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(flags, 0);
  header.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([header, data]);
}

function frames(body: Buffer): { flags: number; data: Buffer }[] {
  const found: { flags: number; data: Buffer }[] = [];
  for (let offset = 0; offset + 5 <= body.length; ) {
    const length = body.readUInt32BE(offset + 1);
    found.push({ flags: body.readUInt8(offset), data: body.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return found;
}

function h1Request(baseUrl: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${baseUrl}${path}`,
      { method: 'POST', headers: { ...headers, 'content-length': String(body.byteLength) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, trailers: res.trailers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function h2Request(baseUrl: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(baseUrl);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path, ...headers });
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (received) => (responseHeaders = received));
    stream.on('trailers', (received) => (trailers = received));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', reject);
    stream.on('end', () => {
      session.close();
      resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(body);
  });
}

interface Outcome {
  /** The Connect code string, or the gRPC status number as a string. */
  code: string;
  message: string;
}

type Protocol = 'connect' | 'grpc' | 'grpc-web';

/** Sends one request message (raw bytes as given) and reads the outcome in the protocol's own encoding. */
async function call(
  baseUrl: string,
  transport: { protocol: Protocol; httpVersion: '1.1' | '2' },
  path: string,
  kind: 'unary' | 'stream',
  message: Uint8Array,
  headers: Record<string, string> = {},
): Promise<{ outcome: Outcome; response: RawResponse }> {
  const send = transport.httpVersion === '2' ? h2Request : h1Request;
  if (transport.protocol === 'connect' && kind === 'unary') {
    const response = await send(baseUrl, path, { 'content-type': 'application/proto', ...headers }, message);
    if (response.status === 200) return { outcome: { code: 'ok', message: '' }, response };
    const error = JSON.parse(response.body.toString('utf8')) as { code: string; message: string };
    return { outcome: { code: error.code, message: error.message }, response };
  }
  if (transport.protocol === 'connect') {
    const response = await send(baseUrl, path, { 'content-type': 'application/connect+proto', ...headers }, envelope(0, message));
    const end = frames(response.body).find((frame) => (frame.flags & 0x02) === 0x02);
    const error = (JSON.parse(end!.data.toString('utf8')) as { error?: { code: string; message: string } }).error;
    return { outcome: error ? { code: error.code, message: error.message } : { code: 'ok', message: '' }, response };
  }
  if (transport.protocol === 'grpc') {
    const response = await send(
      baseUrl,
      path,
      { 'content-type': 'application/grpc+proto', te: 'trailers', ...headers },
      envelope(0, message),
    );
    // A trailers-only answer carries its status in the headers.
    const status = response.trailers['grpc-status'] ?? response.headers['grpc-status'];
    const grpcMessage = response.trailers['grpc-message'] ?? response.headers['grpc-message'] ?? '';
    return { outcome: { code: String(status), message: decodeURIComponent(String(grpcMessage)) }, response };
  }
  const response = await send(
    baseUrl,
    path,
    { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', ...headers },
    envelope(0, message),
  );
  const trailer = frames(response.body).find((frame) => (frame.flags & 0x80) === 0x80);
  const fields = new Map(
    trailer!.data
      .toString('utf8')
      .split('\r\n')
      .filter(Boolean)
      .map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as const),
  );
  return { outcome: { code: fields.get('grpc-status') ?? '', message: decodeURIComponent(fields.get('grpc-message') ?? '') }, response };
}

const transports: { name: string; protocol: Protocol; httpVersion: '1.1' | '2'; invalidArgument: string; ok: string }[] = [
  { name: 'Connect proto over HTTP/1.1', protocol: 'connect', httpVersion: '1.1', invalidArgument: 'invalid_argument', ok: 'ok' },
  { name: 'Connect proto over HTTP/2', protocol: 'connect', httpVersion: '2', invalidArgument: 'invalid_argument', ok: 'ok' },
  { name: 'gRPC over h2c', protocol: 'grpc', httpVersion: '2', invalidArgument: '3', ok: '0' },
  { name: 'gRPC-Web over HTTP/1.1', protocol: 'grpc-web', httpVersion: '1.1', invalidArgument: '3', ok: '0' },
];

const methods = [
  { name: 'unary AuthService/GetMe', path: '/yardmaster.v1.AuthService/GetMe', kind: 'unary' as const },
  { name: 'server-streaming JobsService/WatchJob', path: '/yardmaster.v1.JobsService/WatchJob', kind: 'stream' as const },
  { name: 'client-streaming FilesService/Upload', path: '/yardmaster.v1.FilesService/Upload', kind: 'stream' as const },
];

function expectShortMessage(outcome: Outcome): void {
  expect(outcome.message.length).toBeGreaterThan(0);
  expect(outcome.message.length).toBeLessThan(120);
  expect(outcome.message).not.toMatch(/\n|\bat \S+ \(|node_modules|\.js:\d+/);
}

let server: TestServer;
let authorization: Record<string, string>;
beforeAll(async () => {
  server = await startTestServer();
  const login = await server.authClient().login({ username: 'admin', password: adminPassword });
  authorization = { authorization: `Bearer ${login.accessToken}` };
});
afterAll(() => server?.close());

describe.each(transports)('$name', (transport) => {
  test.each(methods)('a truncated binary message to $name is InvalidArgument', async (method) => {
    const { outcome } = await call(server.url, transport, method.path, method.kind, truncated, authorization);
    expect(outcome.code).toBe(transport.invalidArgument);
    expect(outcome.message).toMatch(/premature EOF/);
    expectShortMessage(outcome);
  });

  test('garbage bytes to a unary method are InvalidArgument, and so is garbage to a stream', async () => {
    const unary = await call(server.url, transport, '/yardmaster.v1.AuthService/GetMe', 'unary', garbage, authorization);
    expect(unary.outcome.code).toBe(transport.invalidArgument);
    expectShortMessage(unary.outcome);
    const stream = await call(server.url, transport, '/yardmaster.v1.JobsService/WatchJob', 'stream', garbage, authorization);
    expect(stream.outcome.code).toBe(transport.invalidArgument);
  });

  test('a valid call still works', async () => {
    const { outcome, response } = await call(
      server.url,
      transport,
      '/yardmaster.v1.AuthService/GetMe',
      'unary',
      new Uint8Array(0),
      authorization,
    );
    expect(outcome.code).toBe(transport.ok);
    expect(response.body.toString('latin1')).toContain('admin');
  });
});

test('a gRPC message flagged compressed, with no compression named, is InvalidArgument too', async () => {
  const flagged = envelope(1, new Uint8Array(0));
  for (const path of ['/yardmaster.v1.AuthService/GetMe', '/yardmaster.v1.JobsService/WatchJob']) {
    const response = await h2Request(
      server.url,
      path,
      { 'content-type': 'application/grpc+proto', te: 'trailers', ...authorization },
      flagged,
    );
    expect(response.trailers['grpc-status'] ?? response.headers['grpc-status']).toBe('3');
  }
});

test('Connect JSON with bad JSON stays InvalidArgument', async () => {
  const response = await h1Request(
    server.url,
    '/yardmaster.v1.AuthService/GetMe',
    { 'content-type': 'application/json', ...authorization },
    Buffer.from('{"nope'),
  );
  expect(response.status).toBe(400);
  expect((JSON.parse(response.body.toString('utf8')) as { code: string }).code).toBe('invalid_argument');
});

describe('an answer the server cannot encode', () => {
  // A server bug, not the client's: an enum value outside int32 cannot be written in binary.
  const unencodable = (2 ** 40) as ServingStatus;
  let baseUrl: string;
  let listener: http.Server;
  beforeAll(async () => {
    const rpc = createRpcHandler({
      logger: createLogger('silent'),
      routes: (router) =>
        router.service(Health, {
          check: () => ({ status: unencodable }),
          async *watch() {
            yield { status: unencodable };
          },
        }),
    });
    listener = http.createServer(rpc);
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => listener.close(() => resolve())));

  test.each([
    {
      name: 'Connect unary',
      protocol: 'connect' as const,
      path: '/grpc.health.v1.Health/Check',
      kind: 'unary' as const,
      internal: 'internal',
    },
    {
      name: 'Connect stream',
      protocol: 'connect' as const,
      path: '/grpc.health.v1.Health/Watch',
      kind: 'stream' as const,
      internal: 'internal',
    },
    { name: 'gRPC-Web unary', protocol: 'grpc-web' as const, path: '/grpc.health.v1.Health/Check', kind: 'unary' as const, internal: '13' },
    {
      name: 'gRPC-Web stream',
      protocol: 'grpc-web' as const,
      path: '/grpc.health.v1.Health/Watch',
      kind: 'stream' as const,
      internal: '13',
    },
  ])('stays Internal over $name, while a bad request to the same server is InvalidArgument', async (probe) => {
    const transport = { protocol: probe.protocol, httpVersion: '1.1' as const };
    const { outcome } = await call(baseUrl, transport, probe.path, probe.kind, new Uint8Array(0));
    expect(outcome.code).toBe(probe.internal);
    expect(outcome.message).toMatch(/serialize binary/);
    const bad = await call(baseUrl, transport, probe.path, probe.kind, truncated);
    expect(bad.outcome.code).toBe(probe.internal === 'internal' ? 'invalid_argument' : '3');
  });
});
