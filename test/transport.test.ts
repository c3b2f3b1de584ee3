/**
 * What anonymous clients can cost the server: dependency checks shared by every reader,
 * caps on public streams and on connections per address, connection timeouts, and the
 * /metrics token.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../gen/grpc/health/v1/health_pb.ts';
import { ServerReflection } from '../gen/grpc/reflection/v1/reflection_pb.ts';
import { eventually, expectConnectError } from './support/assertions.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

/** A gRPC client of `service` on a connection of its own, sending `headers` with each call. */
function grpcClient<S extends typeof Health | typeof ServerReflection>(
  server: TestServer,
  service: S,
  headers: Record<string, string> = {},
): Client<S> {
  const transport = createGrpcTransport({
    baseUrl: server.url,
    interceptors: [
      (next) => (req) => {
        for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
        return next(req);
      },
    ],
  });
  return createClient(service, transport);
}

/** An open Health.Watch stream: its messages so far, and how to end it. */
interface OpenWatch {
  statuses: ServingStatus[];
  ended: Promise<unknown>;
  close(): void;
}

/** Opens Health.Watch and resolves once its first message arrived (or rejects with the call's error). */
async function openWatch(client: Client<typeof Health>): Promise<OpenWatch> {
  const abort = new AbortController();
  const statuses: ServingStatus[] = [];
  const { promise: firstMessage, resolve: first } = Promise.withResolvers<void>();
  const ended = (async () => {
    for await (const message of client.watch({ service: '' }, { signal: abort.signal })) {
      statuses.push(message.status);
      first();
    }
  })();
  ended.catch(() => {});
  await Promise.race([firstMessage, ended.then(() => Promise.reject(new Error('Watch ended before its first message')))]);
  return { statuses, ended, close: () => abort.abort() };
}

/** Waits until `condition` holds, failing the test after `timeoutMs`. */
async function holdsWithin(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  await eventually(async () => expect(await condition()).toBe(true), timeoutMs);
}

describe('dependency checks run on one shared schedule', () => {
  const intervalMs = 1000;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ appOptions: { readinessIntervalMs: intervalMs, streamLimits: { anonymousPerAddress: 100 } } });
  });
  afterAll(() => server?.close());

  test('hundreds of /readyz, Health.Check and Health.Watch readers cause at most one check per interval', async () => {
    const readiness = server.app.readiness;
    const before = readiness.checksRun;
    const started = performance.now();
    const health = grpcClient(server, Health);
    const watches = await Promise.all(Array.from({ length: 30 }, () => openWatch(health)));
    for (let round = 0; round < 5; round++) {
      const replies = await Promise.all([
        ...Array.from({ length: 40 }, () => fetch(`${server.url}/readyz`).then((res) => res.status)),
        ...Array.from({ length: 40 }, () => health.check({ service: '' }).then((res) => res.status)),
      ]);
      expect(replies.slice(0, 40).every((status) => status === 200)).toBe(true);
      expect(replies.slice(40).every((status) => status === ServingStatus.SERVING)).toBe(true);
      await sleep(200);
    }
    const elapsedMs = performance.now() - started;
    const ran = readiness.checksRun - before;
    expect(ran).toBeLessThanOrEqual(Math.ceil(elapsedMs / intervalMs) + 1);
    // Nothing changed, so the streams got their first message and nothing else.
    expect(watches.map((watch) => watch.statuses)).toEqual(watches.map(() => [ServingStatus.SERVING]));
    for (const watch of watches) watch.close();
  });

  test('a dependency going down reaches /readyz, Health.Check and every Watch stream from the one check', async () => {
    const readiness = server.app.readiness;
    let failing = false;
    readiness.add('test dependency', async () => {
      if (failing) throw new Error('down for the test');
    });
    const health = grpcClient(server, Health);
    const watches = await Promise.all(Array.from({ length: 10 }, () => openWatch(health)));
    failing = true;
    await holdsWithin(() => watches.every((watch) => watch.statuses.at(-1) === ServingStatus.NOT_SERVING), 3 * intervalMs);
    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(503);
    const body = (await readyz.json()) as { dependencies: { name: string; ok: boolean; detail: string }[] };
    expect(body.dependencies.find((dependency) => dependency.name === 'test dependency')).toMatchObject({
      ok: false,
      detail: 'unreachable',
    });
    expect((await health.check({ service: '' })).status).toBe(ServingStatus.NOT_SERVING);
    failing = false;
    await holdsWithin(() => watches.every((watch) => watch.statuses.at(-1) === ServingStatus.SERVING), 3 * intervalMs);
    expect(watches.map((watch) => watch.statuses)).toEqual(
      watches.map(() => [ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]),
    );
    for (const watch of watches) watch.close();
  });
});

describe('anonymous streams are capped per client address and in total', () => {
  let server: TestServer;
  beforeAll(async () => {
    // One trusted proxy: the test speaks for several client addresses through X-Forwarded-For.
    server = await startTestServer({
      env: { TRUST_PROXY: '1' },
      appOptions: { streamLimits: { anonymousPerAddress: 3, anonymousTotal: 5 } },
    });
  });
  afterAll(() => server?.close());

  const from = (address: string) => ({ 'x-forwarded-for': address });

  test('the 4th public stream of one address and the 6th of all are ResourceExhausted; closing streams frees the slots', async () => {
    const clientA = grpcClient(server, Health, from('203.0.113.1'));
    const streamsOfA = await Promise.all([openWatch(clientA), openWatch(clientA), openWatch(clientA)]);
    const perAddress = await expectConnectError(openWatch(clientA), Code.ResourceExhausted, 'TOO_MANY_STREAMS');
    expect(perAddress.rawMessage).toMatch(/at most 3 open streams from one address/);

    // Reflection's bidi stream is a public stream too.
    const reflectionA = grpcClient(server, ServerReflection, from('203.0.113.1'));
    async function* oneRequestThenWait(signal: AbortSignal) {
      yield { host: '', messageRequest: { case: 'listServices' as const, value: '' } };
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
    }
    const reflectionAbort = new AbortController();
    const reflect = async (client: Client<typeof ServerReflection>) => {
      for await (const reply of client.serverReflectionInfo(oneRequestThenWait(reflectionAbort.signal), { signal: reflectionAbort.signal }))
        return reply;
      return undefined;
    };
    await expectConnectError(reflect(reflectionA), Code.ResourceExhausted, 'TOO_MANY_STREAMS');

    const clientB = grpcClient(server, Health, from('203.0.113.2'));
    const streamsOfB = await Promise.all([openWatch(clientB), openWatch(clientB)]);
    const total = await expectConnectError(openWatch(clientB), Code.ResourceExhausted, 'ANONYMOUS_STREAMS_EXHAUSTED');
    expect(total.rawMessage).toMatch(/5 open streams without signing in/);

    // Signed-in callers are not counted against the anonymous total.
    const user = await server.createUser();
    const signedIn = user.client;
    const abort = new AbortController();
    const iterator = signedIn.jobs.watchJobs({}, { signal: abort.signal })[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    abort.abort();

    streamsOfA[0]!.close();
    await holdsWithin(async () => {
      try {
        streamsOfB.push(await openWatch(clientB));
        return true;
      } catch {
        return false;
      }
    }, 3000);
    for (const watch of [...streamsOfA, ...streamsOfB]) watch.close();
    // Every slot is free again: A may open three.
    await holdsWithin(async () => {
      const reopened = await Promise.allSettled([openWatch(clientA), openWatch(clientA), openWatch(clientA)]);
      for (const result of reopened) if (result.status === 'fulfilled') result.value.close();
      return reopened.every((result) => result.status === 'fulfilled');
    }, 3000);
    reflectionAbort.abort();
  });
});

/** A raw TCP connection: what it received and when it closed. */
interface RawConnection {
  socket: net.Socket;
  received: () => string;
  closed: Promise<number>;
}

async function rawConnection(url: string, localAddress?: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port), localAddress });
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.on('error', () => {});
  const opened = performance.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - opened)));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
  return { socket, received: () => received, closed };
}

describe('connection timeouts', () => {
  const headersTimeoutMs = 1000;
  const keepAliveTimeoutMs = 1500;
  const idleTimeoutMs = 1200;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ connections: { headersTimeoutMs, keepAliveTimeoutMs, idleTimeoutMs } });
  });
  afterAll(() => server?.close());

  test('an HTTP/1.1 request head sent a byte at a time is closed after the header timeout, unanswered', async () => {
    const connection = await rawConnection(server.url);
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
    const trickle = setInterval(() => connection.socket.write('X'), 200);
    try {
      const closedAfter = await connection.closed;
      expect(closedAfter).toBeGreaterThanOrEqual(headersTimeoutMs - 100);
      expect(closedAfter).toBeLessThan(headersTimeoutMs + 1500);
      expect(connection.received()).not.toMatch(/^HTTP\/1\.1 200/);
    } finally {
      clearInterval(trickle);
    }
  });

  test('a connection that sends nothing, or only part of the HTTP/2 preface, is closed after the header timeout', async () => {
    const silent = await rawConnection(server.url);
    const partialPreface = await rawConnection(server.url);
    partialPreface.socket.write('PRI * HTTP/2.0\r\n');
    for (const connection of [silent, partialPreface]) {
      const closedAfter = await connection.closed;
      expect(closedAfter).toBeGreaterThanOrEqual(headersTimeoutMs - 100);
      expect(closedAfter).toBeLessThan(headersTimeoutMs + 1500);
    }
  });

  test('an HTTP/1.1 connection is closed the keep-alive timeout after its last reply', async () => {
    const connection = await rawConnection(server.url);
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await holdsWithin(() => /\r\n0\r\n\r\n$/.test(connection.received()), 3000);
    const repliedAt = performance.now();
    await connection.closed;
    const closedAfter = performance.now() - repliedAt;
    expect(connection.received()).toMatch(/^HTTP\/1\.1 200/);
    expect(closedAfter).toBeGreaterThanOrEqual(keepAliveTimeoutMs - 200);
    expect(closedAfter).toBeLessThan(keepAliveTimeoutMs + 1500);
  });

  test('an HTTP/2 session without streams gets GOAWAY after the keep-alive timeout; one with a stream sending heartbeats stays', async () => {
    await server.setSetting('jobs.stream_heartbeat_interval', '300ms');
    const idle = http2.connect(server.url);
    idle.on('error', () => {});
    const opened = performance.now();
    const goaway = new Promise<number>((resolve) => idle.once('goaway', () => resolve(performance.now() - opened)));
    const idleClosed = new Promise<void>((resolve) => idle.once('close', resolve));
    const settings = await new Promise<http2.Settings>((resolve) => idle.once('remoteSettings', resolve));
    // One connection cannot start calls without end.
    expect(settings.maxConcurrentStreams).toBe(256);

    // A Health.Watch stream keeps quiet unless its status changes, but sends a keep-alive
    // every heartbeat interval: longer than the idle timeout in all, it must not be cut.
    const watching = await openWatch(grpcClient(server, Health));
    const goawayAfter = await goaway;
    expect(goawayAfter).toBeGreaterThanOrEqual(keepAliveTimeoutMs - 200);
    expect(goawayAfter).toBeLessThan(keepAliveTimeoutMs + 1500);
    await idleClosed;

    await sleep(idleTimeoutMs + keepAliveTimeoutMs);
    expect(watching.statuses.length).toBeGreaterThan(2);
    expect(watching.statuses.every((status) => status === ServingStatus.SERVING)).toBe(true);
    const stillOpen = await Promise.race([
      watching.ended.then(
        () => 'ended',
        () => 'failed',
      ),
      sleep(50).then(() => 'open'),
    ]);
    expect(stillOpen).toBe('open');
    watching.close();
  });

  test('an HTTP/2 stream that moves no byte is cut after the idle timeout', async () => {
    const session = http2.connect(server.url);
    session.on('error', () => {});
    try {
      // A reflection stream (public, bidi) whose first request message starts and then stalls.
      const stream = session.request({
        ':method': 'POST',
        ':path': '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
        'content-type': 'application/grpc',
      });
      stream.on('error', () => {});
      stream.write(Buffer.from([0, 0, 0, 0, 5]));
      const opened = performance.now();
      const closedAfter = await new Promise<number>((resolve) => stream.once('close', () => resolve(performance.now() - opened)));
      expect(closedAfter).toBeGreaterThanOrEqual(idleTimeoutMs - 200);
      expect(closedAfter).toBeLessThan(idleTimeoutMs + 1500);
    } finally {
      session.destroy();
    }
  });
});

describe('connections per client address', () => {
  const cap = 5;
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { MAX_CONNECTIONS_PER_ADDRESS: String(cap) } });
  });
  afterAll(() => server?.close());

  const answers = async (connection: RawConnection) => {
    const before = connection.received().length;
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const outcome = await Promise.race([
      holdsWithin(() => /HTTP\/1\.1 200/.test(connection.received().slice(before)), 3000).then(() => 'answered'),
      connection.closed.then(() => 'closed'),
    ]);
    return outcome;
  };

  test(`the ${cap + 1}th connection from one address is refused while other addresses still connect; closing one frees its slot`, async () => {
    const held = [];
    for (let index = 0; index < cap; index++) {
      const connection = await rawConnection(server.url);
      expect(await answers(connection)).toBe('answered');
      held.push(connection);
    }
    const refused = await rawConnection(server.url).catch(() => undefined);
    if (refused) {
      expect(await answers(refused)).toBe('closed');
      expect(refused.received()).toBe('');
    }

    const other = await rawConnection(server.url, '127.0.0.2');
    expect(await answers(other)).toBe('answered');
    other.socket.destroy();

    held[0]!.socket.destroy();
    await held[0]!.closed;
    await holdsWithin(async () => {
      const again = await rawConnection(server.url).catch(() => undefined);
      if (!again) return false;
      const outcome = await answers(again);
      again.socket.destroy();
      return outcome === 'answered';
    }, 3000);
    for (const connection of held) connection.socket.destroy();
  });
});

describe('/metrics with METRICS_TOKEN', () => {
  const token = 'metrics-token-for-the-tests';
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { METRICS_TOKEN: token } });
  });
  afterAll(() => server?.close());

  test('answers 401 without the token or with a wrong one, and Prometheus text with it', async () => {
    for (const authorization of [undefined, 'Bearer wrong-token', `Bearer ${token}x`, token, `Basic ${token}`]) {
      const res = await fetch(`${server.url}/metrics`, { headers: authorization ? { authorization } : {} });
      expect(res.status, `with ${authorization}`).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(await res.text()).not.toContain('yardmaster_');
    }
    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('# TYPE yardmaster_rpc_calls_total counter');
    // The other public routes stay open.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});
