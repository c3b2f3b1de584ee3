/**
 * WatchJobs streams leave Connect's pipeline once set up (src/server/stream-handoff.ts):
 * from then on the fan-out writes their events, heartbeats and closing frames itself, and
 * runs what the interceptors do when a call ends. These tests end such streams every way
 * a stream ends (the client cancels, its credential is revoked, the server shuts down) on
 * every protocol, and check what the client reads and what the server gives back: the
 * account's stream slot, the call's line in the metrics (written with the log line), the
 * open-stream gauge.
 */
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, toBinary } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { eventually, reasonOf, within } from '../support/assertions.ts';
import { createNoop, heartbeatMs, streamTransports, watchJobs, type Recorder } from './support.ts';
import type { WatchJobsResponse } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { JobEventKind, JobStatus, JobsService, WatchJobsRequestSchema } from '../../gen/yardmaster/v1/jobs_pb.ts';

const watchJobsProcedure = 'yardmaster.v1.JobsService.WatchJobs';
/** /metrics renders at most once a second. */
const renderedForMs = 1000;
/** The stream limit per account on these servers. */
const perAccount = 6;

const transports = streamTransports;

async function startServer(database: TestDatabase): Promise<TestServer> {
  const server = await startTestServer({ database, appOptions: { streamLimits: { perAccount } } });
  await server.setSetting('jobs.stream_heartbeat_interval', `${heartbeatMs}ms`);
  return server;
}

async function metric(server: TestServer, sample: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

const openStreamsSample = `yardmaster_rpc_open_streams{procedure="${watchJobsProcedure}"}`;
const callsSample = (code: string) => `yardmaster_rpc_calls_total{procedure="${watchJobsProcedure}",code="${code}"}`;

/** One WatchJobs stream per transport, each signed in as `username` (a session each), past its first heartbeat (so taken over). */
async function openOnEveryTransport(server: TestServer, username: string, password: string) {
  const opened: { name: string; client: YardmasterClient; stream: Recorder<WatchJobsResponse> }[] = [];
  for (const { name, options } of transports) {
    const client = await server.signIn(username, password, options);
    const stream = watchJobs(client);
    await stream.waitFor((items) => items.length >= 2, `${name}: a heartbeat after the first`);
    opened.push({ name, client, stream });
  }
  return opened;
}

/**
 * A WatchJobs stream over HTTP/2 read at the frame level (gRPC), so that the test decides
 * how it ends: a reset (RST_STREAM), the connection dropped, or the server's trailers.
 */
function rawWatchJobs(session: http2.ClientHttp2Session, accessToken: string, extraHeaders: Record<string, string> = {}) {
  const call = session.request({
    ':method': 'POST',
    ':path': `/${JobsService.typeName}/${JobsService.method.watchJobs.name}`,
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${accessToken}`,
    ...extraHeaders,
  });
  call.on('error', () => {});
  const message = toBinary(WatchJobsRequestSchema, create(WatchJobsRequestSchema, {}));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  call.end(frame);
  let bytes = 0;
  call.on('data', (chunk: Buffer) => (bytes += chunk.length));
  const trailers = new Promise<http2.IncomingHttpHeaders | undefined>((resolve) => {
    let received: http2.IncomingHttpHeaders | undefined;
    call.on('trailers', (headers) => (received = headers));
    call.on('close', () => resolve(received));
  });
  return {
    call,
    trailers,
    /** Past the first heartbeat and a second one: the stream has been taken over. */
    async taken(): Promise<void> {
      await eventually(async () => expect(bytes).toBeGreaterThan(10), 10_000, 20);
    },
  };
}

async function endingOf(stream: Recorder<WatchJobsResponse>): Promise<string> {
  const error = await within(stream.ended, 15_000);
  if (error === 'timeout') return 'still open';
  return error ? `${Code[error.code]} ${reasonOf(error)}` : 'ended well';
}

describe('taken WatchJobs streams', () => {
  let database: TestDatabase;
  let server: TestServer;
  let admin: YardmasterClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    server = await startServer(database);
    admin = await server.adminClient();
  });
  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });

  test('live events and heartbeats reach a stream on every transport after it is taken over', async () => {
    const { user, password } = await server.createUser();
    const opened = await openOnEveryTransport(server, user.username, password);
    const job = await createNoop(opened[0]!.client);
    for (const { name, stream } of opened) {
      await stream.waitFor(
        (items) => items.some((item) => item.job?.id === job.id && item.job.status === JobStatus.SUCCEEDED),
        `${name}: the job's SUCCEEDED event`,
      );
      const beats = stream.items.filter((item) => item.kind === JobEventKind.HEARTBEAT).length;
      await stream.waitFor(
        (items) => items.filter((item) => item.kind === JobEventKind.HEARTBEAT).length > beats,
        `${name}: a heartbeat after the event`,
      );
    }
    for (const { stream } of opened) await stream.cancel();
  });

  test('revoked credentials end a taken stream Unauthenticated in every protocol’s framing; its slot, line and gauge are given back', async () => {
    const { user, password } = await server.createUser();
    const openBefore = await metric(server, openStreamsSample);
    const failedBefore = await metric(server, callsSample('unauthenticated'));
    const opened = await openOnEveryTransport(server, user.username, password);
    // The account holds its limit: one more is refused.
    const extra = watchJobs(opened[0]!.client);
    expect(await endingOf(extra)).toBe('ResourceExhausted TOO_MANY_STREAMS');

    await admin.admin.updateUser({ user: { id: user.id, active: false }, updateMask: { paths: ['active'] } });
    for (const { name, stream } of opened) expect(`${name}: ${await endingOf(stream)}`).toBe(`${name}: Unauthenticated SESSION_REVOKED`);

    await eventually(
      async () => {
        expect(await metric(server, callsSample('unauthenticated'))).toBeGreaterThanOrEqual(failedBefore + transports.length);
        expect(await metric(server, openStreamsSample)).toBe(openBefore);
      },
      renderedForMs * 3,
      100,
    );
    // The slots are free again: the account, active again, opens as many streams as before.
    await admin.admin.updateUser({ user: { id: user.id, active: true }, updateMask: { paths: ['active'] } });
    const reopened = await openOnEveryTransport(server, user.username, password);
    for (const { stream } of reopened) await stream.cancel();
  }, 60_000);

  test('a client that cancels a taken stream gives its slot back, and its call is counted ended', async () => {
    const { user, password } = await server.createUser();
    const openBefore = await metric(server, openStreamsSample);
    const opened = await openOnEveryTransport(server, user.username, password);
    await eventually(
      async () => expect(await metric(server, openStreamsSample)).toBe(openBefore + transports.length),
      renderedForMs * 3,
      100,
    );
    for (const { stream } of opened) await stream.cancel();
    await eventually(async () => expect(await metric(server, openStreamsSample)).toBe(openBefore), renderedForMs * 3, 100);
    // Every slot is free again.
    const reopened = await openOnEveryTransport(server, user.username, password);
    for (const { stream } of reopened) await stream.cancel();
  }, 60_000);
});

describe('taken WatchJobs streams over HTTP/2 at the frame level', () => {
  let database: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase();
    server = await startServer(database);
  });
  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });

  test('streams the client resets (RST_STREAM) or whose connection drops give back their slots, lines and gauge', async () => {
    const { user, password } = await server.createUser();
    const client = await server.signIn(user.username, password);
    const token = client.tokens!.accessToken;
    const openBefore = await metric(server, openStreamsSample);
    const ended = async () => (await metric(server, callsSample('ok'))) + (await metric(server, callsSample('canceled')));
    const endedBefore = await ended();
    const resetting = http2.connect(server.url);
    const dropping = http2.connect(server.url);
    for (const session of [resetting, dropping]) session.on('error', () => {});
    try {
      const half = perAccount / 2;
      const reset = Array.from({ length: half }, () => rawWatchJobs(resetting, token));
      const dropped = Array.from({ length: half }, () => rawWatchJobs(dropping, token));
      for (const stream of [...reset, ...dropped]) await stream.taken();
      // The account holds its limit: one more is refused.
      expect(await endingOf(watchJobs(client))).toBe('ResourceExhausted TOO_MANY_STREAMS');
      await eventually(async () => expect(await metric(server, openStreamsSample)).toBe(openBefore + perAccount), renderedForMs * 3, 100);

      for (const stream of reset) stream.call.close(http2.constants.NGHTTP2_CANCEL);
      dropping.destroy();
      await eventually(
        async () => {
          expect(await metric(server, openStreamsSample)).toBe(openBefore);
          expect(await ended()).toBeGreaterThanOrEqual(endedBefore + perAccount);
        },
        renderedForMs * 3,
        100,
      );
      // Every slot is free again.
      const reopened = Array.from({ length: perAccount }, () => rawWatchJobs(resetting, token));
      for (const stream of reopened) await stream.taken();
      for (const stream of reopened) stream.call.close(http2.constants.NGHTTP2_CANCEL);
    } finally {
      resetting.destroy();
      dropping.destroy();
    }
  }, 60_000);

  test('a taken stream whose call has a deadline (grpc-timeout) ends DeadlineExceeded when it passes', async () => {
    const { user, password } = await server.createUser();
    const client = await server.signIn(user.username, password);
    const session = http2.connect(server.url);
    session.on('error', () => {});
    try {
      const started = Date.now();
      const stream = rawWatchJobs(session, client.tokens!.accessToken, { 'grpc-timeout': '1500m' });
      await stream.taken();
      const trailers = await within(stream.trailers, 10_000);
      expect(trailers === 'timeout' ? 'still open' : trailers?.['grpc-status']).toBe(String(Code.DeadlineExceeded));
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    } finally {
      session.destroy();
    }
  }, 30_000);
});

describe('shutdown', () => {
  test('ends every taken stream well, in every protocol’s framing, and counts them closed', async () => {
    const database = await createTestDatabase();
    const server = await startServer(database);
    try {
      const { user, password } = await server.createUser();
      const opened = await openOnEveryTransport(server, user.username, password);
      await eventually(async () => expect(await metric(server, openStreamsSample)).toBe(transports.length), renderedForMs * 3, 100);
      server.app.shutdownController.abort();
      for (const { name, stream } of opened) expect(`${name}: ${await endingOf(stream)}`).toBe(`${name}: ended well`);
      await sleep(renderedForMs + 100);
      expect(await metric(server, openStreamsSample)).toBe(0);
      expect(await metric(server, callsSample('ok'))).toBeGreaterThanOrEqual(transports.length);
    } finally {
      await server.close();
      await database.drop();
    }
  }, 60_000);
});
