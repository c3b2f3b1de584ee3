/**
 * A database outage is Unavailable with a RetryInfo detail (what standard retry policies
 * retry), on unary calls and open streams, and the server serves again once the
 * database is back; /metrics keeps answering. The server runs on a PostgreSQL of its own that the test stops and
 * starts again on the same port.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Code, ConnectError } from '@connectrpc/connect';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/platform/db/embedded-postgres.ts';
import { createLogger } from '../src/platform/logger.ts';
import { eventually, expectConnectError, retryDelayMs } from './support/assertions.ts';
import { startTestServer, type TestServer, type TestUser } from './support/test-server.ts';

let clusterDir: string;
let postgres: EmbeddedPostgres;
let port: number;
let server: TestServer;
let user: TestUser;
const logger = createLogger('warn');

async function startPostgres(): Promise<EmbeddedPostgres> {
  return startEmbeddedPostgres({ clusterDir, database: 'yardmaster', logger, port, settings: { fsync: 'off', synchronous_commit: 'off' } });
}

beforeAll(async () => {
  clusterDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-outage-'));
  postgres = await startEmbeddedPostgres({
    clusterDir,
    database: 'yardmaster',
    logger,
    settings: { fsync: 'off', synchronous_commit: 'off' },
  });
  port = Number(new URL(postgres.url).port);
  server = await startTestServer({ database: { url: postgres.url, name: 'yardmaster', drop: async () => {} } });
  user = await server.createUser();
}, 60_000);

afterAll(async () => {
  console.error('AFTERALL');
  await server?.close();
  await postgres?.stop();
  await rm(clusterDir, { recursive: true, force: true });
});

test('while the database is down, calls and open WatchJobs streams end Unavailable with RetryInfo; then the server serves again', async () => {
  const { job } = await user.client.jobs.createJob({ type: 'noop', name: 'before the outage' });
  const watch = new AbortController();
  const streamEnded = (async () => {
    try {
      for await (const _event of user.client.jobs.watchJobs({}, { signal: watch.signal })) {
        // Events before the outage do not matter here; only how the stream ends.
      }
      return undefined;
    } catch (error) {
      return error;
    }
  })();

  await postgres.stop();
  try {
    for (const call of [
      () => user.client.jobs.getJob({ id: job!.id }),
      () => user.client.jobs.createJob({ type: 'noop', name: 'during the outage' }),
      () => user.client.jobs.listJobs({}),
    ]) {
      const error = await expectConnectError(call, Code.Unavailable);
      expect(retryDelayMs(error)).toBeGreaterThan(0);
      expect(error.rawMessage).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|terminat/i);
    }
    const ended = await streamEnded;
    expect(ended).toBeInstanceOf(ConnectError);
    expect(Code[(ended as ConnectError).code]).toBe(Code[Code.Unavailable]);
    expect(retryDelayMs(ended as ConnectError)).toBeGreaterThan(0);

    // /metrics still renders what this process knows; the figures read from the database
    // are absent (unknown), not zeros and not a failed scrape.
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('yardmaster_rpc_calls_total{');
    expect(text).not.toMatch(/^yardmaster_(jobs|queue_depth|instances_live)\b/m);
  } finally {
    watch.abort();
    postgres = await startPostgres();
  }

  const { job: after } = await eventually(() => user.client.jobs.createJob({ type: 'noop', name: 'after the outage' }), 20_000, 200);
  expect(after!.name).toBe('after the outage');
  expect((await user.client.jobs.getJob({ id: job!.id })).job!.id).toBe(job!.id);
}, 90_000);
