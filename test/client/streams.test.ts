/**
 * The typed client's resuming streams (watchJobs, watchJob, tailLogs) against a real
 * server, with connections cut by a proxy in between, and the resync of a resume point
 * older than the kept history.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  createYardmasterClient,
  JobEventKind,
  JobStatus,
  tailLogs,
  watchJob,
  watchJobs,
  YardmasterError,
  type JobLogLine,
  type WatchJobsResponse,
  type YardmasterClient,
} from '../../clients/ts/src/node.ts';
import { chattyJobType } from '../support/job-types.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { startCuttableProxy, type CuttableProxy } from './support.ts';

let server: TestServer;
let proxy: CuttableProxy;

beforeAll(async () => {
  server = await startTestServer({ jobTypes: [chattyJobType] });
  await server.setSetting('jobs.stream_heartbeat_interval', '200ms');
  proxy = await startCuttableProxy(server.url);
});
afterAll(async () => {
  await proxy?.close();
  await server?.close();
});

const fastBackoff = { initialMs: 100, maxMs: 400 };

/** A user, and a client of theirs that talks to the server through the proxy. */
async function userBehindProxy(): Promise<{ userId: string; direct: YardmasterClient; client: YardmasterClient }> {
  const { user, password, client: direct } = await server.createUser();
  const client = createYardmasterClient({ baseUrl: proxy.url });
  await client.login(user.username, password);
  return { userId: user.id, direct, client };
}

async function flushedPosition(): Promise<bigint> {
  await server.app.sequencer.flush();
  const [row] = await server.query<{ last_sequence: string }>('select last_sequence from event_positions where id = 1');
  return BigInt(row!.last_sequence);
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function createNoops(client: YardmasterClient, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await client.jobs.createJob({ type: 'noop', params: {} })).job!.id);
  return ids;
}

async function waitFinished(ids: string[]): Promise<void> {
  await waitFor(() => false, 'never', 0).catch(() => undefined);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const open = await server.countRows(
      `select count(*) as n from jobs where id = any($1::uuid[]) and status not in ('succeeded', 'failed', 'cancelled')`,
      [ids],
    );
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} jobs did not finish`);
    await sleep(25);
  }
}

describe('watchJobs', () => {
  test('resumes after the connection is cut from the last sequence seen: no event lost, none repeated', async () => {
    const { userId, client } = await userBehindProxy();
    const received: WatchJobsResponse[] = [];
    const reconnects: (Code | undefined)[] = [];
    const controller = new AbortController();
    const reading = (async () => {
      for await (const message of watchJobs(client, {
        heartbeats: true,
        signal: controller.signal,
        backoff: fastBackoff,
        onReconnect: ({ error }) => reconnects.push(error?.code),
      }))
        received.push(message);
    })();
    await waitFor(() => received.length >= 1, 'the first heartbeat');
    const start = received[0]!.sequence;

    const first = await createNoops(client, 3);
    await waitFinished(first);
    const middle = await flushedPosition();
    await waitFor(
      () => received.some((message) => message.kind === JobEventKind.HEARTBEAT && message.sequence >= middle),
      'the first jobs',
    );

    // Cut, and write while the client is away.
    expect(proxy.cut()).toBeGreaterThan(0);
    const second = await createNoops(server.client({ tokens: client.tokens }), 3);
    await waitFinished(second);
    const end = await flushedPosition();
    await waitFor(() => received.some((message) => message.kind === JobEventKind.HEARTBEAT && message.sequence >= end), 'the later jobs');
    controller.abort();
    await reading;

    expect(reconnects.length).toBeGreaterThanOrEqual(1);
    const events = received.filter((message) => message.kind !== JobEventKind.HEARTBEAT);
    const rows = await server.query<{ sequence: string }>(
      'select sequence from events where owner_id = $1 and sequence > $2 and sequence <= $3 order by sequence',
      [userId, String(start), String(end)],
    );
    expect(events.map((event) => String(event.sequence))).toEqual(rows.map((row) => row.sequence));
    expect(new Set(events.map((event) => event.job!.id))).toEqual(new Set([...first, ...second]));
  });

  test('a resume point older than the kept history calls onResync once and goes on live; without onResync it throws a typed RESYNC_REQUIRED', async () => {
    const { client } = await userBehindProxy();
    await waitFinished(await createNoops(client, 2));
    const oldest = await flushedPosition();
    await server.query(`update events set created_at = now() - interval '30 days' where sequence <= $1`, [String(oldest)]);
    await server.setSetting('jobs.event_retention', '1h');
    try {
      await server.app.runMaintenance();
    } finally {
      await server.setSetting('jobs.event_retention', null);
    }

    // Without onResync: the error, typed, once (no loop).
    let attempts = 0;
    const error = await (async () => {
      try {
        for await (const _ of watchJobs(client, { afterSequence: 1n, backoff: fastBackoff, onReconnect: () => attempts++ })) break;
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(error).toBeInstanceOf(YardmasterError);
    const typed = error as YardmasterError;
    expect(typed.code).toBe(Code.FailedPrecondition);
    expect(typed.reason).toBe('RESYNC_REQUIRED');
    expect(typed.info.oldest_sequence).toBe(String(oldest + 1n));
    expect(attempts).toBe(0);

    // With onResync: called once, then the watch carries on from the current position.
    const resyncs: YardmasterError[] = [];
    const received: WatchJobsResponse[] = [];
    const controller = new AbortController();
    const reading = (async () => {
      for await (const message of watchJobs(client, {
        afterSequence: 1n,
        heartbeats: true,
        signal: controller.signal,
        backoff: fastBackoff,
        onResync: (resync) => {
          resyncs.push(resync);
        },
      }))
        received.push(message);
    })();
    await waitFor(() => received.length >= 3, 'heartbeats after the resync');
    const [job] = await createNoops(client, 1);
    await waitFor(() => received.some((message) => message.job?.id === job && message.job.status === JobStatus.SUCCEEDED), 'the new job');
    controller.abort();
    await reading;
    expect(resyncs.map((resync) => resync.reason)).toEqual(['RESYNC_REQUIRED']);
    expect(received[0]!.kind).toBe(JobEventKind.HEARTBEAT);
    expect(received[0]!.sequence).toBeGreaterThanOrEqual(oldest);
  });
});

describe('watchJob and tailLogs', () => {
  test('watchJob survives a cut, repeats no state and ends after the terminal one', async () => {
    const { client } = await userBehindProxy();
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: 20, intervalMs: 50 } });
    const states: JobStatus[] = [];
    const sequences: bigint[] = [];
    let reconnects = 0;
    const reading = (async () => {
      for await (const message of watchJob(client, job!.id, { backoff: fastBackoff, onReconnect: () => reconnects++ })) {
        states.push(message.job!.status);
        sequences.push(message.sequence);
      }
    })();
    await waitFor(() => states.length >= 1, 'the first state');
    proxy.cut();
    await reading;
    expect(reconnects).toBeGreaterThanOrEqual(1);
    expect(states.at(-1)).toBe(JobStatus.SUCCEEDED);
    expect([...sequences].sort((a, b) => (a < b ? -1 : 1))).toEqual(sequences);
    expect(new Set(sequences).size).toBe(sequences.length);
  });

  test('tailLogs follows a job through a cut: every line once, in order, then it ends with the job', async () => {
    const { client } = await userBehindProxy();
    const { job } = await client.jobs.createJob({ type: 'chatty', params: { lines: 40, intervalMs: 25 } });
    const lines: JobLogLine[] = [];
    let reconnects = 0;
    const reading = (async () => {
      for await (const line of tailLogs(client, job!.id, { backoff: fastBackoff, onReconnect: () => reconnects++ })) lines.push(line);
    })();
    await waitFor(() => lines.length >= 5, 'the first lines');
    proxy.cut();
    await reading;
    expect(reconnects).toBeGreaterThanOrEqual(1);
    expect(lines.map((line) => line.message)).toEqual(Array.from({ length: 40 }, (_, index) => `line ${index + 1}`));
  });
});
