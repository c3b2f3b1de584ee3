/**
 * /metrics over real servers on one database: the system-wide figures (jobs by queue and
 * status, queue depth, live instances and external workers) read from the jobs,
 * server_instances and external_workers tables.
 */
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../clients/ts/src/node.ts';
import { eventually, randomHex } from './support/assertions.ts';
import { release, releases, runsUntilReleasedJobType } from './support/job-types.ts';
import { createTestDatabase, type TestDatabase } from './support/test-database.ts';
import { startTestServer, type TestServer } from './support/test-server.ts';

const heartbeatMs = 200;
/** /metrics renders at most once a second: a figure may take that long to change. */
const renderedForMs = 1000;

/** The samples of a Prometheus text, keyed by name and labels as written (`name{a="x",b="y"}`). */
async function scrape(server: TestServer): Promise<{ text: string; samples: Map<string, number> }> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(yardmaster_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) samples.set(match[1]!, Number(match[2]));
  }
  return { text, samples };
}

describe('/metrics reports the jobs, queues and instances of the whole system', () => {
  let database: TestDatabase;
  let a: TestServer;
  let b: TestServer;
  let admin: YardmasterClient;
  const key = `metrics-${randomHex(6)}`;
  let bClosed = false;

  beforeAll(async () => {
    database = await createTestDatabase();
    const options = { database, jobTypes: [runsUntilReleasedJobType], appOptions: { instanceHeartbeatMs: heartbeatMs } };
    a = await startTestServer(options);
    b = await startTestServer(options);
    admin = await a.adminClient();
  });
  afterAll(async () => {
    if (releases.get(key)?.release) release(key);
    if (!bClosed) await b?.close();
    await a?.close();
    await database?.drop();
  });

  test('jobs by queue and status, queue depth (due jobs only) and live instances (lost ones not), with HELP', async () => {
    await admin.queue.pauseQueue({ queue: 'noop' });
    for (let i = 0; i < 3; i++) await admin.jobs.createJob({ type: 'noop', params: {} });
    await admin.jobs.createJob({ type: 'noop', params: {}, runAfter: timestampFromDate(new Date(Date.now() + 3_600_000)) });
    const { job: running } = await admin.jobs.createJob({ type: 'runs-until-released', params: { key } });
    await eventually(async () => expect(releases.get(key)?.started).toBe(true), 10_000);
    // An instance that stopped heartbeating a minute ago is lost: not counted as live.
    await a.query(
      `insert into server_instances (id, role, host, pid, version, commit, started_at, heartbeat_at, pools)
       values ($1, 'worker', 'gone', 1, '0.0.1', '', now() - interval '2 minutes', now() - interval '1 minute', '[]')`,
      ['01900000-0000-7000-8000-00000000feed'],
    );

    const { text, samples } = await scrape(a);
    expect(text).toContain('# HELP yardmaster_jobs Unfinished jobs by queue and status');
    expect(text).toContain('# TYPE yardmaster_jobs gauge');
    expect(text).toContain('# HELP yardmaster_queue_depth Queued jobs due now');
    expect(text).toContain('# TYPE yardmaster_queue_depth gauge');
    expect(text).toContain('# HELP yardmaster_instances_live Server instances');
    expect(text).toContain('# TYPE yardmaster_instances_live gauge');
    expect(samples.get('yardmaster_jobs{queue="noop",status="queued"}')).toBe(4);
    expect(samples.get('yardmaster_jobs{queue="noop",status="running"}')).toBe(0);
    expect(samples.get('yardmaster_queue_depth{queue="noop"}')).toBe(3);
    expect(samples.get('yardmaster_jobs{queue="runs-until-released",status="running"}')).toBe(1);
    expect(samples.get('yardmaster_jobs{queue="runs-until-released",status="queued"}')).toBe(0);
    expect(samples.get('yardmaster_queue_depth{queue="runs-until-released"}')).toBe(0);
    // A queue without jobs reports zeros rather than no series at all.
    expect(samples.get('yardmaster_jobs{queue="sleep",status="queued"}')).toBe(0);
    expect(samples.get('yardmaster_queue_depth{queue="sleep"}')).toBe(0);
    expect(samples.get('yardmaster_instances_live')).toBe(2);
    // Only unfinished statuses: finished jobs are history, not a gauge.
    expect([...samples.keys()].filter((sample) => /^yardmaster_jobs\{.*status="(succeeded|failed|cancelled)"/.test(sample))).toEqual([]);
    // Every instance reads the same figures from the database.
    expect((await scrape(b)).samples.get('yardmaster_queue_depth{queue="noop"}')).toBe(3);

    // The figures follow the tables: the job finishes, the queue resumes, an instance stops.
    release(key);
    await eventually(async () => expect((await admin.jobs.getJob({ id: running!.id })).job?.finishTime).toBeDefined(), 10_000);
    await admin.queue.resumeQueue({ queue: 'noop' });
    await b.close();
    bClosed = true;
    await eventually(
      async () => {
        const { samples: later } = await scrape(a);
        expect(later.get('yardmaster_jobs{queue="runs-until-released",status="running"}')).toBe(0);
        expect(later.get('yardmaster_jobs{queue="noop",status="queued"}')).toBe(1);
        expect(later.get('yardmaster_queue_depth{queue="noop"}')).toBe(0);
        expect(later.get('yardmaster_instances_live')).toBe(1);
      },
      10_000 + renderedForMs,
      100,
    );
  });

  test('live external workers (a quiet one not counted) and expired leases, with HELP; the lease counter starts at 0', async () => {
    const [{ id: adminId }] = await a.query<{ id: string }>(`select id from users where username = 'admin'`);
    await a.query(
      `insert into external_workers (id, account_id, queues, registered_at, last_seen_at)
       values ('metrics-live', $1, '["noop"]', now(), now()), ('metrics-quiet', $1, '["noop"]', now(), now() - interval '5 minutes')`,
      [adminId],
    );
    await eventually(
      async () => {
        const { text, samples } = await scrape(a);
        expect(text).toContain('# HELP yardmaster_external_workers_live External workers');
        expect(text).toContain('# TYPE yardmaster_external_workers_live gauge');
        expect(text).toContain('# TYPE yardmaster_job_leases_expired_total counter');
        expect(samples.get('yardmaster_external_workers_live')).toBe(1);
        expect(samples.get('yardmaster_job_leases_expired_total')).toBe(0);
      },
      2 * renderedForMs,
      100,
    );
  });
});
