/**
 * JobsService reads: GetJob, ListJobs, WatchJob, job logs, GetJobStats, the events written, AdminService.GetMetrics and the same over gRPC.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { JobEventKind, JobLogLevel, JobStatus, type Job } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { eventually, expectConnectError, uniqueName, violatedFields } from '../support/assertions.ts';
import type { TestUser } from '../support/test-server.ts';
import { server, admin, waitForStatus, create, eventsOf, listAll, useJobsServer } from './support.ts';

useJobsServer();

describe('WatchJob', () => {
  test('WatchJob sends the current state, then every change, and ends after the final state', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'waiter' });
    const seen: { status: JobStatus; kind: JobEventKind; cancelRequested: boolean }[] = [];
    let cancelSent = false;
    for await (const message of client.jobs.watchJob({ id: job.id }, { signal: AbortSignal.timeout(10_000) })) {
      if (message.kind === JobEventKind.HEARTBEAT) continue;
      seen.push({ status: message.job!.status, kind: message.kind, cancelRequested: message.job!.cancelRequested });
      if (message.job!.status === JobStatus.RUNNING && !cancelSent) {
        cancelSent = true;
        await client.jobs.cancelJob({ id: job.id });
      }
    }
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.at(-1)!.status).toBe(JobStatus.CANCELLED);
    expect(seen.map((state) => state.status)).toContain(JobStatus.RUNNING);
    // Never back to an earlier status.
    const order: JobStatus[] = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLED];
    const ranks = seen.map((state) => order.indexOf(state.status));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));

    // On a finished job: one message, then the end.
    const replay: JobStatus[] = [];
    for await (const message of client.jobs.watchJob({ id: job.id }, { signal: AbortSignal.timeout(5000) }))
      replay.push(message.job!.status);
    expect(replay).toEqual([JobStatus.CANCELLED]);
  });
});

describe('GetJob and ListJobs', () => {
  let owner: TestUser;
  let other: TestUser;
  /** A: held, B: held, C: held, D: echo (SUCCEEDED), created in this order. */
  let a: Job;
  let b: Job;
  let c: Job;
  let d: Job;
  let othersJob: Job;

  beforeAll(async () => {
    owner = await server.createUser();
    other = await server.createUser();
    a = await create(owner.client, { type: 'held', name: 'Nightly Backup', labels: { project: 'apollo', tier: 'gold' }, priority: 1 });
    await sleep(5);
    b = await create(owner.client, { type: 'held', name: 'nightly report', labels: { project: 'gemini' }, priority: 3 });
    await sleep(5);
    c = await create(owner.client, { type: 'held', name: 'cleanup', params: { note: 'Zebra Crossing' }, priority: 3 });
    await sleep(5);
    d = await create(owner.client, {
      type: 'echo',
      name: 'echo run',
      labels: { project: 'apollo' },
      params: { message: 'Mercury' },
      priority: -2,
    });
    othersJob = await create(other.client, { type: 'held', name: 'Nightly Backup', labels: { project: 'apollo' } });
    await waitForStatus(owner.client, d.id, JobStatus.SUCCEEDED);
  });

  const ids = (...jobs: Job[]) => jobs.map((job) => job.id);
  const list = (request: Parameters<YardmasterClient['jobs']['listJobs']>[0], client = owner.client) =>
    listAll(client, { pageSize: 1000, ...request });

  test('GetJob returns the caller own job; a bad id is InvalidArgument; an unknown one NotFound', async () => {
    const { job } = await owner.client.jobs.getJob({ id: a.id });
    expect(job).toMatchObject({
      id: a.id,
      name: 'Nightly Backup',
      priority: 1,
      labels: { project: 'apollo', tier: 'gold' },
      status: JobStatus.QUEUED,
    });
    const bad = await expectConnectError(owner.client.jobs.getJob({ id: 'not-a-uuid' }), Code.InvalidArgument);
    expect(violatedFields(bad)).toEqual(['id']);
    const empty = await expectConnectError(owner.client.jobs.getJob({ id: '' }), Code.InvalidArgument);
    expect(violatedFields(empty)).toEqual(['id']);
    await expectConnectError(owner.client.jobs.getJob({ id: '01a20540-c425-76c3-9669-8051ead8987d' }), Code.NotFound);
  });

  test('GetJob shows a job field for field as ListJobs does (its own read skips the ORM)', async () => {
    const { jobs } = await owner.client.jobs.listJobs({ pageSize: 1000 });
    expect(jobs.length).toBeGreaterThan(0);
    for (const listed of jobs) expect((await owner.client.jobs.getJob({ id: listed.id })).job).toEqual(listed);
  });

  test('a user never sees another user job: GetJob is NotFound, exactly as for a job that does not exist', async () => {
    const foreign = await expectConnectError(other.client.jobs.getJob({ id: a.id }), Code.NotFound);
    const missing = await expectConnectError(other.client.jobs.getJob({ id: '01a20540-c425-76c3-9669-8051ead8987d' }), Code.NotFound);
    expect(foreign.rawMessage).toBe(missing.rawMessage);
    await expectConnectError(owner.client.jobs.getJob({ id: othersJob.id }), Code.NotFound);
  });

  test('GetJobs sent at once (read together, as one statement) each answer their own caller: own jobs, NotFound for others and unknown ids, any id case', async () => {
    const unknown = '01a20540-c425-76c3-9669-8051ead8987d';
    const calls = [
      ...[a, b, c, d, a, b].map((job) => owner.client.jobs.getJob({ id: job.id })),
      owner.client.jobs.getJob({ id: c.id.toUpperCase() }),
      other.client.jobs.getJob({ id: othersJob.id }),
      other.client.jobs.getJob({ id: a.id }),
      owner.client.jobs.getJob({ id: othersJob.id }),
      owner.client.jobs.getJob({ id: unknown }),
      admin.jobs.getJob({ id: othersJob.id }),
    ];
    const outcomes = await Promise.allSettled(calls);
    const answers = outcomes.map((outcome) => (outcome.status === 'fulfilled' ? outcome.value.job!.id : 'failed'));
    expect(answers).toEqual([a.id, b.id, c.id, d.id, a.id, b.id, c.id, othersJob.id, 'failed', 'failed', 'failed', othersJob.id]);
    for (const index of [8, 9, 10]) await expectConnectError(calls[index]!, Code.NotFound);
    // A read sent right after a change answers with the change: no read shares an answer begun before it was asked.
    for (let round = 0; round < 5; round++) {
      const name = uniqueName('renamed');
      await owner.client.jobs.updateJob({ job: { id: b.id, name }, updateMask: { paths: ['name'] } });
      const [renamed] = await Promise.all([owner.client.jobs.getJob({ id: b.id }), owner.client.jobs.getJob({ id: a.id })]);
      expect(renamed.job!.name).toBe(name);
    }
    await owner.client.jobs.updateJob({ job: { id: b.id, name: 'nightly report' }, updateMask: { paths: ['name'] } });
  });

  test('ListJobs lists only the caller jobs; filter.owner_id of someone else is InvalidArgument', async () => {
    expect(await list({})).toEqual(ids(d, c, b, a));
    expect(await list({}, other.client)).toEqual(ids(othersJob));
    expect(await list({ filter: { ownerId: owner.user.id } })).toEqual(ids(d, c, b, a));
    const foreign = await expectConnectError(owner.client.jobs.listJobs({ filter: { ownerId: other.user.id } }), Code.InvalidArgument);
    expect(violatedFields(foreign)).toEqual(['filter.owner_id']);
    const notUuid = await expectConnectError(owner.client.jobs.listJobs({ filter: { ownerId: 'someone' } }), Code.InvalidArgument);
    expect(violatedFields(notUuid)).toEqual(['filter.owner_id']);
  });

  test('an admin sees every job and can filter by owner_id', async () => {
    expect((await admin.jobs.getJob({ id: a.id })).job!.ownerId).toBe(owner.user.id);
    const all = await list({}, admin);
    expect(all).toEqual(expect.arrayContaining([...ids(a, b, c, d), othersJob.id]));
    expect(await list({ filter: { ownerId: owner.user.id } }, admin)).toEqual(ids(d, c, b, a));
    expect(await list({ filter: { ownerId: other.user.id } }, admin)).toEqual(ids(othersJob));
  });

  test('filters: statuses, types, labels, created range', async () => {
    expect(await list({ filter: { statuses: [JobStatus.SUCCEEDED] } })).toEqual(ids(d));
    expect(await list({ filter: { statuses: [JobStatus.QUEUED] } })).toEqual(ids(c, b, a));
    expect(await list({ filter: { statuses: [JobStatus.QUEUED, JobStatus.SUCCEEDED] } })).toEqual(ids(d, c, b, a));
    expect(await list({ filter: { statuses: [JobStatus.FAILED] } })).toEqual([]);
    expect(await list({ filter: { types: ['echo'] } })).toEqual(ids(d));
    expect(await list({ filter: { types: ['held', 'echo'] } })).toEqual(ids(d, c, b, a));
    expect(await list({ filter: { types: ['noop'] } })).toEqual([]);
    expect(await list({ filter: { labels: { project: 'apollo' } } })).toEqual(ids(d, a));
    expect(await list({ filter: { labels: { project: 'apollo', tier: 'gold' } } })).toEqual(ids(a));
    expect(await list({ filter: { labels: { project: 'gemini', tier: 'gold' } } })).toEqual([]);
    expect(await list({ filter: { createdAfter: b.createTime } })).toEqual(ids(d, c, b));
    expect(await list({ filter: { createdBefore: b.createTime } })).toEqual(ids(a));
    expect(await list({ filter: { createdAfter: b.createTime, createdBefore: d.createTime } })).toEqual(ids(c, b));
    expect(await list({ filter: { statuses: [JobStatus.QUEUED], labels: { project: 'apollo' } } })).toEqual(ids(a));
  });

  test('search matches every word in name, label values and params values, case-insensitively', async () => {
    expect(await list({ filter: { search: 'nightly' } })).toEqual(ids(b, a));
    expect(await list({ filter: { search: 'NIGHTLY' } })).toEqual(ids(b, a));
    expect(await list({ filter: { search: 'nightly APOLLO' } })).toEqual(ids(a));
    expect(await list({ filter: { search: 'gemini' } })).toEqual(ids(b));
    expect(await list({ filter: { search: 'zebra' } })).toEqual(ids(c));
    expect(await list({ filter: { search: '  crossing   ZEBRA ' } })).toEqual(ids(c));
    expect(await list({ filter: { search: 'mercury' } })).toEqual(ids(d));
    expect(await list({ filter: { search: 'gold backup' } })).toEqual(ids(a));
    expect(await list({ filter: { search: 'nightly zebra' } })).toEqual([]);
    expect(await list({ filter: { search: 'back' } })).toEqual(ids(a));
    expect(await list({ filter: { search: '%' } })).toEqual([]);
    // The other user's "Nightly Backup" is never found.
    expect(await list({ filter: { search: 'nightly backup' } })).toEqual(ids(a));
  });

  test('order_by: create_time desc (default), create_time, priority desc; anything else is InvalidArgument', async () => {
    expect(await list({})).toEqual(ids(d, c, b, a));
    expect(await list({ orderBy: 'create_time desc' })).toEqual(ids(d, c, b, a));
    expect(await list({ orderBy: 'create_time' })).toEqual(ids(a, b, c, d));
    expect(await list({ orderBy: 'priority desc' })).toEqual(ids(b, c, a, d));
    for (const orderBy of ['priority', 'name', 'create_time; drop table jobs']) {
      const error = await expectConnectError(owner.client.jobs.listJobs({ orderBy }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['order_by']);
    }
  });

  test('keyset pages of 2 visit every job exactly once, in every order', async () => {
    const user = await server.createUser();
    for (const priority of [0, 4, -1, 4, 2]) await create(user.client, { type: 'held', priority });
    for (const orderBy of ['', 'create_time', 'priority desc']) {
      const whole = (await user.client.jobs.listJobs({ pageSize: 1000, orderBy })).jobs.map((job) => job.id);
      expect(whole).toHaveLength(5);
      const paged: string[] = [];
      const sizes: number[] = [];
      let pageToken = '';
      do {
        const reply = await user.client.jobs.listJobs({ pageSize: 2, orderBy, pageToken });
        paged.push(...reply.jobs.map((job) => job.id));
        sizes.push(reply.jobs.length);
        pageToken = reply.nextPageToken;
      } while (pageToken !== '' && sizes.length < 10);
      expect(sizes, `pages for order "${orderBy}"`).toEqual([2, 2, 1]);
      expect(paged).toEqual(whole);
      expect(new Set(paged).size).toBe(5);
    }
  });

  test('changing the filter or the order between pages is InvalidArgument `page_token`', async () => {
    const first = await owner.client.jobs.listJobs({ pageSize: 2, filter: { types: ['held'] } });
    expect(first.nextPageToken).not.toBe('');
    const otherFilter = await expectConnectError(
      owner.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['echo'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(otherFilter)).toEqual(['page_token']);
    const otherOrder = await expectConnectError(
      owner.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['held'] }, orderBy: 'priority desc' }),
      Code.InvalidArgument,
    );
    expect(violatedFields(otherOrder)).toEqual(['page_token']);
    const garbage = await expectConnectError(owner.client.jobs.listJobs({ pageToken: 'not-a-token' }), Code.InvalidArgument);
    expect(violatedFields(garbage)).toEqual(['page_token']);
    // Another user cannot use the owner's token either.
    const stolen = await expectConnectError(
      other.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['held'] } }),
      Code.InvalidArgument,
    );
    expect(violatedFields(stolen)).toEqual(['page_token']);
    // The same filter continues.
    const second = await owner.client.jobs.listJobs({ pageSize: 2, pageToken: first.nextPageToken, filter: { types: ['held'] } });
    expect(second.jobs.map((job) => job.id)).toEqual(ids(a));
    const negative = await expectConnectError(owner.client.jobs.listJobs({ pageSize: -1 }), Code.InvalidArgument);
    expect(violatedFields(negative)).toEqual(['page_size']);
  });
});

describe('job logs', () => {
  test('sleep writes lines; ListJobLogs returns them numbered 1..n in order with attempt numbers, in pages of 1', async () => {
    const { client } = await server.createUser();
    const job = await create(client, { type: 'sleep', params: { seconds: 0 } });
    await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    const { lines, nextPageToken } = await client.jobs.listJobLogs({ id: job.id });
    expect(nextPageToken).toBe('');
    expect(lines.map((line) => [Number(line.sequence), line.message, line.attempt, line.level])).toEqual([
      [1, 'sleeping for 0 s', 1, JobLogLevel.INFO],
      [2, 'done', 1, JobLogLevel.INFO],
    ]);
    for (const line of lines) expect(line.time).toBeDefined();

    const paged: number[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const reply = await client.jobs.listJobLogs({ id: job.id, pageSize: 1, pageToken });
      expect(reply.lines.length).toBeLessThanOrEqual(1);
      paged.push(...reply.lines.map((line) => Number(line.sequence)));
      pageToken = reply.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 10);
    expect(paged).toEqual([1, 2]);

    // StreamJobLogs without follow gives the same lines and ends.
    const streamed: number[] = [];
    for await (const message of client.jobs.streamJobLogs({ id: job.id }, { signal: AbortSignal.timeout(5000) }))
      streamed.push(...message.lines.map((line) => Number(line.sequence)));
    expect(streamed).toEqual([1, 2]);
    const after: number[] = [];
    for await (const message of client.jobs.streamJobLogs({ id: job.id, afterSequence: 1n }, { signal: AbortSignal.timeout(5000) }))
      after.push(...message.lines.map((line) => Number(line.sequence)));
    expect(after).toEqual([2]);

    // Another user's job's log is NotFound; an admin reads any.
    const other = await server.createUser();
    await expectConnectError(other.client.jobs.listJobLogs({ id: job.id }), Code.NotFound);
    await expectConnectError(
      (async () => {
        for await (const _message of other.client.jobs.streamJobLogs({ id: job.id }, { signal: AbortSignal.timeout(5000) }));
      })(),
      Code.NotFound,
    );
    expect((await admin.jobs.listJobLogs({ id: job.id })).lines).toHaveLength(2);
  });
});

describe('GetJobStats', () => {
  test('counts by status and type cover only the caller jobs, with durations and finished_last_hour', async () => {
    const { user, client } = await server.createUser();
    const other = await server.createUser();

    const empty = await client.jobs.getJobStats({});
    expect(empty.total).toBe(0n);
    expect(empty.countsByStatus).toEqual({});
    expect(empty.types).toEqual([]);
    expect(empty.durationP50).toBeUndefined();
    expect(empty.durationP95).toBeUndefined();
    expect(empty.finishedLastHour).toBe(0n);

    const noops = [await create(client, { type: 'noop' }), await create(client, { type: 'noop' })];
    const fatalKey = uniqueName('k');
    const fatal = await create(client, { type: 'flaky', params: { key: fatalKey, failures: 0, fatal: true } });
    await create(client, { type: 'held' });
    const others = [await create(other.client, { type: 'noop' }), await create(other.client, { type: 'held' })];
    for (const job of noops) await waitForStatus(client, job.id, JobStatus.SUCCEEDED);
    await waitForStatus(client, fatal.id, JobStatus.FAILED);
    await waitForStatus(other.client, others[0]!.id, JobStatus.SUCCEEDED);

    const stats = await client.jobs.getJobStats({});
    expect(stats.total).toBe(4n);
    expect(stats.countsByStatus).toEqual({ JOB_STATUS_SUCCEEDED: 2n, JOB_STATUS_FAILED: 1n, JOB_STATUS_QUEUED: 1n });
    expect(stats.types.map((type) => [type.type, type.countsByStatus])).toEqual([
      ['flaky', { JOB_STATUS_FAILED: 1n }],
      ['held', { JOB_STATUS_QUEUED: 1n }],
      ['noop', { JOB_STATUS_SUCCEEDED: 2n }],
    ]);
    expect(stats.durationP50).toBeDefined();
    expect(stats.durationP95).toBeDefined();
    const ms = (duration: { seconds: bigint; nanos: number }) => Number(duration.seconds) * 1000 + duration.nanos / 1e6;
    expect(ms(stats.durationP95!)).toBeGreaterThanOrEqual(ms(stats.durationP50!));
    expect(ms(stats.durationP95!)).toBeLessThan(10_000);
    expect(stats.finishedLastHour).toBe(3n);
    expect(stats.throughputPerMinute).toBeCloseTo(3 / 15, 5);

    const noopOnly = await client.jobs.getJobStats({ filter: { types: ['noop'] } });
    expect(noopOnly.total).toBe(2n);
    expect(noopOnly.countsByStatus).toEqual({ JOB_STATUS_SUCCEEDED: 2n });
    const failedOnly = await client.jobs.getJobStats({ filter: { statuses: [JobStatus.FAILED] } });
    expect(failedOnly.total).toBe(1n);
    // The search runs as a sub-query on the search table inside the stats' own sub-query.
    const searched = await client.jobs.getJobStats({ filter: { search: fatalKey.toUpperCase() } });
    expect(searched.countsByStatus).toEqual({ JOB_STATUS_FAILED: 1n });

    const otherStats = await other.client.jobs.getJobStats({});
    expect(otherStats.total).toBe(2n);
    expect(otherStats.countsByStatus).toEqual({ JOB_STATUS_SUCCEEDED: 1n, JOB_STATUS_QUEUED: 1n });

    const foreign = await expectConnectError(client.jobs.getJobStats({ filter: { ownerId: other.user.id } }), Code.InvalidArgument);
    expect(violatedFields(foreign)).toEqual(['filter.owner_id']);
    const byAdmin = await admin.jobs.getJobStats({ filter: { ownerId: user.id } });
    expect(byAdmin.total).toBe(4n);
    const everything = await admin.jobs.getJobStats({});
    expect(everything.total).toBe(BigInt(await server.countRows('select count(*)::int as n from jobs')));
  });
});

describe('events', () => {
  test('every transition of a job writes an event with its owner and a strictly increasing version; the sequencer numbers them all', async () => {
    const { user, client } = await server.createUser();
    const job = await create(client, { type: 'sleep', params: { seconds: 1 } });
    const done = await waitForStatus(client, job.id, JobStatus.SUCCEEDED, 8000);
    expect(done.progress?.percent).toBe(100);

    const events = await eventsOf(job.id);
    expect(events[0]!.kind).toBe('job.created');
    expect(events.slice(1).every((event) => event.kind === 'job.updated')).toBe(true);
    for (const event of events) {
      expect(event.owner_id).toBe(user.id);
      expect(event.payload.id).toBe(job.id);
      expect(event.payload.ownerId).toBe(user.id);
    }
    const versions = events.map((event) => Number(event.payload.version));
    expect(versions[0]).toBe(1);
    for (let i = 1; i < versions.length; i++) expect(versions[i], `version of event ${i}`).toBeGreaterThan(versions[i - 1]!);
    const statuses = events.map((event) => event.payload.status);
    expect(statuses[0]).toBe('queued');
    expect(statuses).toContain('running');
    expect(statuses.at(-1)).toBe('succeeded');
    // The progress report of the running attempt.
    expect(events.some((event) => event.payload.status === 'running' && Number(event.payload.progressPercent) > 0)).toBe(true);
    expect(events.length).toBeGreaterThanOrEqual(4);

    await server.app.sequencer.flush();
    const sequenced = await eventsOf(job.id);
    const sequences = sequenced.map((event) => Number(event.sequence));
    for (const [i, sequence] of sequences.entries()) {
      expect(sequence, `sequence of event ${sequenced[i]!.id}`).toBeGreaterThan(0);
      if (i > 0) expect(sequence).toBeGreaterThan(sequences[i - 1]!);
    }
    expect(await server.countRows('select count(*)::int as n from events where sequence is null')).toBe(0);
    expect(
      await server.countRows('select count(*)::int as n from (select sequence from events group by sequence having count(*) > 1) dupes'),
    ).toBe(0);
    const [positions] = await server.query<{ last_sequence: string }>('select last_sequence from event_positions where id = 1');
    expect(Number(positions!.last_sequence)).toBe(await server.countRows('select max(sequence)::int as n from events'));
  });
});

describe('AdminService.GetMetrics', () => {
  test('jobs_by_status counts every job by JOB_STATUS_ name', async () => {
    const { client } = await server.createUser();
    const held = await create(client, { type: 'held' });
    const cancelled = await create(client, { type: 'held' });
    await client.jobs.cancelJob({ id: cancelled.id });
    expect(held.status).toBe(JobStatus.QUEUED);
    await eventually(
      async () => {
        const { jobsByStatus } = await admin.admin.getMetrics({});
        const rows = await server.query<{ status: string; n: number }>('select status, count(*)::int as n from jobs group by status');
        expect(jobsByStatus).toEqual(Object.fromEntries(rows.map((row) => [`JOB_STATUS_${row.status.toUpperCase()}`, BigInt(row.n)])));
        expect(jobsByStatus.JOB_STATUS_QUEUED).toBeGreaterThanOrEqual(1n);
        expect(jobsByStatus.JOB_STATUS_CANCELLED).toBeGreaterThanOrEqual(1n);
      },
      5000,
      100,
    );
    await expectConnectError(client.admin.getMetrics({}), Code.PermissionDenied);
  });
});

describe('over gRPC', () => {
  test('CreateJob and GetJob work over gRPC, errors included', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const { job } = await grpc.jobs.createJob({ type: 'noop', name: 'over grpc', labels: { via: 'grpc' } });
    expect(job).toMatchObject({ name: 'over grpc', labels: { via: 'grpc' }, ownerId: user.id });
    const done = await waitForStatus(grpc, job!.id, JobStatus.SUCCEEDED);
    expect(done.attempt).toBe(1);
    const bad = await expectConnectError(grpc.jobs.createJob({ type: 'sleep', params: { seconds: 'x' } }), Code.InvalidArgument);
    expect(violatedFields(bad)).toEqual(['params.seconds']);
    await expectConnectError(grpc.jobs.getJob({ id: '01a20540-c425-76c3-9669-8051ead8987d' }), Code.NotFound);
  });
});
