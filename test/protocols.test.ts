/**
 * Every wire protocol on the one port, as real clients speak them: Connect (JSON and
 * binary, HTTP/1.1 and h2c), gRPC over h2c, gRPC-Web, plain fetch, `buf curl` (with
 * local protos and with server reflection), gRPC health, the plain HTTP routes, CORS,
 * TLS with ALPN, and graceful shutdown.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../gen/grpc/health/v1/health_pb.ts';
import { AuthService } from '../gen/yardmaster/v1/auth_pb.ts';
import { BadRequestSchema, Role } from '../gen/yardmaster/v1/common_pb.ts';
import { connectErrorOf, within } from './support/assertions.ts';
import type { ClientOptions } from './support/test-server.ts';
import { adminPassword, startTestServer, type TestServer } from './support/test-server.ts';

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '..');

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

// ---------------------------------------------------------------------------------------
// The same calls over every protocol

interface ProtocolCase {
  name: string;
  options: ClientOptions;
  /** What the response content-type must look like, proving the protocol really used. */
  contentType: RegExp;
}

const protocolCases: ProtocolCase[] = [
  { name: 'Connect JSON over HTTP/1.1', options: { protocol: 'connect', httpVersion: '1.1' }, contentType: /^application\/json/ },
  {
    name: 'Connect binary over HTTP/1.1',
    options: { protocol: 'connect', httpVersion: '1.1', binary: true },
    contentType: /^application\/proto/,
  },
  { name: 'Connect JSON over HTTP/2 (h2c)', options: { protocol: 'connect', httpVersion: '2' }, contentType: /^application\/json/ },
  { name: 'gRPC over h2c', options: { protocol: 'grpc', binary: true }, contentType: /^application\/grpc(\+proto)?$/ },
  {
    name: 'gRPC-Web JSON over HTTP/1.1',
    options: { protocol: 'grpc-web', httpVersion: '1.1', binary: false },
    contentType: /^application\/grpc-web\+json/,
  },
  {
    name: 'gRPC-Web binary over HTTP/1.1',
    options: { protocol: 'grpc-web', httpVersion: '1.1', binary: true },
    contentType: /^application\/grpc-web(\+proto)?$/,
  },
];

describe('every protocol on one port', () => {
  test.each(protocolCases)('$name: Login, GetMe and an InvalidArgument with field details', async ({ options, contentType }) => {
    const client = server.client(options);
    const login = await client.login('admin', adminPassword);
    expect(login.accessToken.split('.')).toHaveLength(3);
    expect(login.refreshToken.startsWith('ymr_')).toBe(true);
    expect(login.user?.username).toBe('admin');
    expect(login.user?.role).toBe(Role.ADMIN);

    let responseType: string | null = null;
    let requestId: string | null = null;
    const me = await client.auth.getMe(
      {},
      {
        onHeader: (headers) => {
          responseType = headers.get('content-type');
          requestId = headers.get('x-request-id');
        },
      },
    );
    expect(me.user?.id).toBe(login.user?.id);
    expect(responseType).toMatch(contentType);
    expect(requestId).toBeTruthy();

    // An InvalidArgument with one violation per bad field, in request order.
    const invalid = await connectErrorOf(() => client.auth.login({ username: '', password: '' }));
    expect(Code[invalid.code]).toBe(Code[Code.InvalidArgument]);
    const [badRequest] = invalid.findDetails(BadRequestSchema);
    expect(badRequest?.fieldViolations.map((violation) => violation.field)).toEqual(['username', 'password']);
    expect(badRequest?.fieldViolations.every((violation) => violation.description.length > 0)).toBe(true);

    // And one on an authenticated call.
    const invalidKey = await connectErrorOf(() => client.auth.createApiKey({ name: '' }));
    expect(invalidKey.code).toBe(Code.InvalidArgument);
    expect(invalidKey.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe('name');

    // Unauthenticated comes through the same way.
    const anonymous = await connectErrorOf(() => server.client(options).auth.getMe({}));
    expect(anonymous.code).toBe(Code.Unauthenticated);
  });

  test('the typed client with protocol "grpc" speaks standard gRPC (protobuf), as its options document', async () => {
    // NodeClientOptions.binary says "gRPC is always binary"; plain gRPC clients (grpc-js,
    // grpcurl) only speak application/grpc(+proto). The server answers in the codec it was sent.
    let responseType: string | null = null;
    await server
      .client({ protocol: 'grpc' })
      .health.check({ service: '' }, { onHeader: (headers) => (responseType = headers.get('content-type')) });
    expect(responseType).toMatch(/^application\/grpc(\+proto)?$/);
  });

  test('a plain fetch (curl-like) POST of JSON works without Connect-Protocol-Version', async () => {
    const res = await fetch(`${server.url}/yardmaster.v1.AuthService/Login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: adminPassword }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { accessToken: string; refreshToken: string; user: { username: string; role: string } };
    expect(body.user).toMatchObject({ username: 'admin', role: 'ROLE_ADMIN' });
    const me = await fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${body.accessToken}` },
      body: '{}',
    });
    expect(me.status).toBe(200);
    expect(((await me.json()) as { user: { username: string } }).user.username).toBe('admin');
  });
});

// ---------------------------------------------------------------------------------------
// buf curl

async function bufCurl(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('npx', ['buf', 'curl', ...args], { cwd: repoRoot, timeout: 20_000 });
    return stdout;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`buf curl ${args.join(' ')} failed: ${failed.message}\n${failed.stdout ?? ''}\n${failed.stderr ?? ''}`);
  }
}

describe('buf curl', () => {
  const loginData = JSON.stringify({ username: 'admin', password: adminPassword });

  test('logs in over Connect and over gRPC with the local schema', async () => {
    const [connect, grpc] = await Promise.all([
      bufCurl(['--schema', 'proto', '--data', loginData, `${server.url}/yardmaster.v1.AuthService/Login`]),
      bufCurl([
        '--schema',
        'proto',
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '--data',
        loginData,
        `${server.url}/yardmaster.v1.AuthService/Login`,
      ]),
    ]);
    for (const output of [connect, grpc]) {
      const reply = JSON.parse(output) as { accessToken: string; user: { username: string } };
      expect(reply.accessToken.split('.')).toHaveLength(3);
      expect(reply.user.username).toBe('admin');
    }
  });

  test('calls GetMe through server reflection (no --schema) and lists methods', async () => {
    const login = await server.client().auth.login({ username: 'admin', password: adminPassword });
    const [me, meOverGrpc, methods] = await Promise.all([
      bufCurl(['-H', `Authorization: Bearer ${login.accessToken}`, `${server.url}/yardmaster.v1.AuthService/GetMe`]),
      bufCurl([
        '--protocol',
        'grpc',
        '--http2-prior-knowledge',
        '-H',
        `Authorization: Bearer ${login.accessToken}`,
        `${server.url}/yardmaster.v1.AuthService/GetMe`,
      ]),
      bufCurl(['--list-methods', server.url]),
    ]);
    expect((JSON.parse(me) as { user: { username: string; role: string } }).user).toMatchObject({ username: 'admin', role: 'ROLE_ADMIN' });
    expect((JSON.parse(meOverGrpc) as { user: { username: string } }).user.username).toBe('admin');
    const listed = methods.trim().split('\n');
    expect(listed).toEqual(
      expect.arrayContaining([
        'yardmaster.v1.AuthService/Login',
        'yardmaster.v1.AuthService/GetMe',
        'yardmaster.v1.AdminService/ListUsers',
        'grpc.health.v1.Health/Check',
        'grpc.health.v1.Health/Watch',
      ]),
    );
  });

  test('an error through buf curl carries the Connect code', async () => {
    const error = await bufCurl(['--schema', 'proto', '--data', '{}', `${server.url}/yardmaster.v1.AuthService/GetMe`]).catch(
      (failed: Error) => failed.message,
    );
    expect(error).toMatch(/unauthenticated/);
  });
});

// ---------------------------------------------------------------------------------------
// gRPC health

describe('grpc.health.v1', () => {
  test('Check: SERVING overall and per service, NotFound for an unknown service', async () => {
    for (const protocol of ['grpc', 'connect'] as const) {
      const client = server.client({ protocol });
      expect((await client.health.check({ service: '' })).status).toBe(ServingStatus.SERVING);
      expect((await client.health.check({ service: 'yardmaster.v1.AuthService' })).status).toBe(ServingStatus.SERVING);
      expect((await client.health.check({ service: 'grpc.health.v1.Health' })).status).toBe(ServingStatus.SERVING);
      const unknown = await connectErrorOf(() => client.health.check({ service: 'no.such.Service' }));
      expect(Code[unknown.code]).toBe(Code[Code.NotFound]);
    }
  });

  test('Watch streams the current status first, and can be cancelled', async () => {
    const client = server.client({ protocol: 'grpc' });
    const abort = new AbortController();
    const received: number[] = [];
    const watching = (async () => {
      for await (const message of client.health.watch({ service: '' }, { signal: abort.signal })) {
        received.push(message.status);
        if (received.length === 1) abort.abort();
      }
    })();
    const outcome = await within(
      watching.then(
        () => 'ended',
        (error: unknown) => error,
      ),
      5000,
    );
    expect(received).toEqual([ServingStatus.SERVING]);
    expect(outcome).not.toBe('timeout');
    if (outcome !== 'ended') expect(ConnectError.from(outcome).code).toBe(Code.Canceled);

    // An unknown service is SERVICE_UNKNOWN on Watch (not an error), per the protocol.
    const abortUnknown = new AbortController();
    const first = await within(
      (async () => {
        for await (const message of client.health.watch({ service: 'no.such.Service' }, { signal: abortUnknown.signal }))
          return message.status;
        return undefined;
      })(),
      5000,
    );
    abortUnknown.abort();
    expect(first).toBe(ServingStatus.SERVICE_UNKNOWN);
  });
});

// ---------------------------------------------------------------------------------------
// Plain HTTP routes

describe('plain HTTP routes', () => {
  test('/healthz and /readyz', async () => {
    const healthz = await fetch(`${server.url}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toMatchObject({ status: 'ok' });

    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(200);
    const ready = (await readyz.json()) as {
      status: string;
      dependencies: { name: string; ok: boolean; latencyMs: number; detail: string }[];
    };
    const database = ready.dependencies.find((dependency) => dependency.name === 'database');
    expect(database).toMatchObject({ ok: true, detail: '' });
    expect(database!.latencyMs).toBeGreaterThanOrEqual(0);
  });

  test('/metrics is Prometheus text with RPC counts by procedure and code', async () => {
    const client = server.client();
    await client.login('admin', adminPassword);
    await client.auth.getMe({});
    await connectErrorOf(() => server.client().auth.getMe({}));
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('# TYPE yardmaster_rpc_calls_total counter');
    expect(text).toMatch(/^yardmaster_rpc_calls_total\{procedure="yardmaster\.v1\.AuthService\.Login",code="ok"\} [1-9]\d*$/m);
    expect(text).toMatch(/^yardmaster_rpc_calls_total\{procedure="yardmaster\.v1\.AuthService\.GetMe",code="unauthenticated"\} [1-9]\d*$/m);
    expect(text).toMatch(/^yardmaster_rpc_duration_seconds_bucket\{/m);
  });

  test('with METRICS_ENABLED=false, /metrics is 404', async () => {
    const quiet = await startTestServer({ env: { METRICS_ENABLED: 'false' } });
    try {
      const res = await fetch(`${quiet.url}/metrics`);
      expect(res.status).toBe(404);
      expect(await res.text()).not.toContain('yardmaster_rpc_calls_total');
      expect((await fetch(`${quiet.url}/healthz`)).status).toBe(200);
    } finally {
      await quiet.close();
    }
  });
});

// ---------------------------------------------------------------------------------------
// CORS

describe('CORS', () => {
  const origin = 'https://console.example.com';
  let corsServer: TestServer;
  beforeAll(async () => {
    corsServer = await startTestServer({ env: { CORS_ORIGINS: origin } });
  });
  afterAll(() => corsServer?.close());

  const headerList = (value: string | null) =>
    (value ?? '')
      .split(',')
      .map((entry) => entry.trim().toLowerCase())
      .filter(Boolean);

  test('a preflight from an allowed origin gets 204 with the allowed headers', async () => {
    const res = await fetch(`${corsServer.url}/yardmaster.v1.AuthService/Login`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,authorization,connect-protocol-version',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    expect(headerList(res.headers.get('access-control-allow-headers'))).toEqual(
      expect.arrayContaining(['content-type', 'authorization', 'connect-protocol-version']),
    );
    expect(headerList(res.headers.get('access-control-allow-methods'))).toContain('post');
    expect(headerList(res.headers.get('vary'))).toContain('origin');
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  test('a POST from an allowed origin exposes grpc-status, grpc-message and x-request-id', async () => {
    const res = await fetch(`${corsServer.url}/yardmaster.v1.AuthService/Login`, {
      method: 'POST',
      headers: { origin, 'content-type': 'application/json', 'connect-protocol-version': '1' },
      body: JSON.stringify({ username: 'admin', password: adminPassword }),
    });
    expect(res.status).toBe(200);
    await res.body?.cancel();
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    expect(headerList(res.headers.get('access-control-expose-headers'))).toEqual(
      expect.arrayContaining(['grpc-status', 'grpc-message', 'x-request-id']),
    );
  });

  test('an origin not in the list gets no Access-Control-Allow-Origin', async () => {
    const preflight = await fetch(`${corsServer.url}/yardmaster.v1.AuthService/Login`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://evil.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,authorization',
      },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(preflight.headers.get('access-control-allow-headers')).toBeNull();
    await preflight.body?.cancel();
    const post = await fetch(`${corsServer.url}/yardmaster.v1.AuthService/Login`, {
      method: 'POST',
      headers: { origin: 'https://evil.example.com', 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: adminPassword }),
    });
    expect(post.headers.get('access-control-allow-origin')).toBeNull();
    expect(post.headers.get('access-control-expose-headers')).toBeNull();
    await post.body?.cancel();
    // A look-alike of the allowed origin is not allowed either.
    const lookAlike = await fetch(`${corsServer.url}/healthz`, { headers: { origin: 'https://console.example.com.evil.com' } });
    expect(lookAlike.headers.get('access-control-allow-origin')).toBeNull();
    await lookAlike.body?.cancel();
  });
});

// ---------------------------------------------------------------------------------------
// TLS

/** An Http2SessionManager that records the ALPN protocol its connections negotiated. */
class AlpnRecordingSessionManager extends Http2SessionManager {
  negotiated: (string | false | undefined)[] = [];
  override async request(
    method: string,
    requestPath: string,
    headers: http2.OutgoingHttpHeaders,
    options: Parameters<Http2SessionManager['request']>[3],
  ): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(method, requestPath, headers, options);
    this.negotiated.push(stream.session?.alpnProtocol);
    return stream;
  }
}

function negotiateAlpn(port: number, ca: Buffer, protocols: string[]): Promise<string | false | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: protocols }, () => {
      resolve(socket.alpnProtocol);
      socket.end();
    });
    socket.once('error', reject);
  });
}

const haveOpenssl = ['/usr/bin/openssl', '/usr/local/bin/openssl', '/bin/openssl'].some((candidate) => existsSync(candidate));

describe('TLS', () => {
  test.skipIf(!haveOpenssl)('HTTP/1.1 (Connect) and HTTP/2 (gRPC, ALPN h2) on the same TLS port (skipped without openssl)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-tls-'));
    let tlsServer: TestServer | undefined;
    const sessionManagers: Http2SessionManager[] = [];
    try {
      await execFileAsync('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
      ]);
      const cert = await readFile(path.join(dir, 'cert.pem'));
      tlsServer = await startTestServer({ env: { TLS_CERT: path.join(dir, 'cert.pem'), TLS_KEY: path.join(dir, 'key.pem') } });
      expect(tlsServer.url.startsWith('https://')).toBe(true);
      const port = Number(new URL(tlsServer.url).port);

      // Connect over HTTP/1.1.
      const overH1 = createClient(
        AuthService,
        createConnectTransport({ baseUrl: tlsServer.url, httpVersion: '1.1', nodeOptions: { ca: cert } }),
      );
      const login = await overH1.login({ username: 'admin', password: adminPassword });
      expect(login.user?.username).toBe('admin');

      // gRPC over HTTP/2, negotiated by ALPN.
      const sessionManager = new AlpnRecordingSessionManager(tlsServer.url, {}, { ca: cert });
      sessionManagers.push(sessionManager);
      const grpcTransport = createGrpcTransport({ baseUrl: tlsServer.url, sessionManager });
      const overH2 = createClient(AuthService, grpcTransport);
      const me = await overH2.getMe({}, { headers: { authorization: `Bearer ${login.accessToken}` } });
      expect(me.user?.username).toBe('admin');
      const health = await createClient(Health, grpcTransport).check({ service: '' });
      expect(health.status).toBe(ServingStatus.SERVING);
      expect(sessionManager.negotiated.length).toBeGreaterThan(0);
      expect(new Set(sessionManager.negotiated)).toEqual(new Set(['h2']));

      // Connect over HTTP/2 on TLS too.
      const connectH2Manager = new Http2SessionManager(tlsServer.url, {}, { ca: cert });
      sessionManagers.push(connectH2Manager);
      const connectOverH2 = createClient(
        AuthService,
        createConnectTransport({ baseUrl: tlsServer.url, httpVersion: '2', sessionManager: connectH2Manager }),
      );
      expect((await connectOverH2.getMe({}, { headers: { authorization: `Bearer ${login.accessToken}` } })).user?.username).toBe('admin');

      // ALPN offers both, h2 preferred.
      expect(await negotiateAlpn(port, cert, ['h2', 'http/1.1'])).toBe('h2');
      expect(await negotiateAlpn(port, cert, ['http/1.1'])).toBe('http/1.1');

      // A client that does not trust the certificate is refused by its own TLS check.
      const untrusting = createClient(AuthService, createConnectTransport({ baseUrl: tlsServer.url, httpVersion: '1.1' }));
      const refused = await connectErrorOf(() => untrusting.login({ username: 'admin', password: adminPassword }));
      expect(refused.rawMessage).toMatch(/certificate/i);

      // Plaintext on the TLS port is not served.
      const plain = await within(
        fetch(`${tlsServer.url.replace('https://', 'http://')}/healthz`).then(
          (res) => res.status,
          () => 'refused',
        ),
        5000,
      );
      expect(plain).not.toBe(200);
    } finally {
      for (const manager of sessionManagers) manager.abort();
      await tlsServer?.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------
// Graceful shutdown

describe('graceful shutdown', () => {
  test('close() ends open server streams and then refuses new connections', async () => {
    const second = await startTestServer();
    let closed = false;
    // A client of our own (not server.client()), so closing the server cannot close it.
    const sessionManager = new Http2SessionManager(second.url);
    try {
      const health = createClient(Health, createGrpcTransport({ baseUrl: second.url, sessionManager }));
      const received: number[] = [];
      let firstMessage: () => void = () => {};
      const gotFirst = new Promise<void>((resolve) => (firstMessage = resolve));
      const watching = (async () => {
        for await (const message of health.watch({ service: '' })) {
          received.push(message.status);
          firstMessage();
        }
      })().then(
        () => 'ended' as const,
        (error: unknown) => ConnectError.from(error),
      );
      expect(await within(gotFirst, 5000)).not.toBe('timeout');
      expect(received).toEqual([ServingStatus.SERVING]);

      const started = performance.now();
      const closing = second.close().then(() => (closed = true));
      const streamEnd = await within(watching, 5000);
      const streamEndMs = performance.now() - started;
      expect(streamEnd, 'the Watch stream did not end after close()').not.toBe('timeout');
      if (streamEnd instanceof ConnectError) {
        // Ending with an error is acceptable only as a clean "server going away" code.
        expect([Code.Unavailable, Code.Canceled, Code.Aborted], `${Code[streamEnd.code]}: ${streamEnd.rawMessage}`).toContain(
          streamEnd.code,
        );
      }
      // The stream ended because of the shutdown signal, not because the 1 s grace of
      // TestServer.close() ran out and the connection was destroyed.
      expect(streamEndMs).toBeLessThan(900);
      expect(await within(closing, 10_000), 'close() did not resolve').not.toBe('timeout');

      // New connections are refused, over every protocol.
      const refused = await fetch(`${second.url}/healthz`).then(
        (res) => `status ${res.status}`,
        (error: Error & { cause?: { code?: string } }) => error.cause?.code ?? error.message,
      );
      expect(refused).toBe('ECONNREFUSED');
      const grpcAfter = await connectErrorOf(() =>
        createClient(Health, createGrpcTransport({ baseUrl: second.url })).check({ service: '' }, { timeoutMs: 3000 }),
      );
      expect(grpcAfter.code).toBe(Code.Unavailable);
    } finally {
      sessionManager.abort();
      if (!closed) await second.close().catch(() => {});
    }
  });
});
