/**
 * WatchJobs streams leave Connect's pipeline once set up (src/server/stream-handoff.ts):
 * from then on the fan-out writes their events, heartbeats and closing frames itself, and
 * runs what the interceptors do when a call ends. These tests end such streams every way
 * a stream ends (the client cancels, its credential is revoked, the server shuts down) on
 * every protocol, and check what the client reads and what the server gives back: the
 * account's stream slot, the call's line in the metrics (written with the log line), the
 * open-stream gauge.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { createTestDatabase, type TestDatabase } from '../support/test-database.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { eventually, reasonOf, within } from '../support/assertions.ts';
import { createNoop, heartbeatMs, streamTransports, watchJobs, type Recorder } from './support.ts';
import type { WatchJobsResponse } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { JobEventKind, JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';

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
