/**
 * WatchJobs: live (filtered, under concurrent writers), resumed, resynced and in order.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { ErrorInfoSchema } from '../../gen/yardmaster/v1/common_pb.ts';
import { JobEventKind, JobStatus, type Job, type JobFilter, type WatchJobsResponse } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { chattyJobType, steppedJobType } from '../support/job-types.ts';
import { reasonOf, violatedFields } from '../support/assertions.ts';
import { kindName, statusName } from '../support/job-names.ts';
import { startTestServer } from '../support/test-server.ts';
import {
  type Recorder,
  watchJobs,
  streamTransports,
  watchJob,
  isHeartbeat,
  eventsOf,
  expectOrdered,
  type EventRow,
  summary,
  rowSummary,
  database,
  server,
  admin,
  running,
  createStepped,
  createNoop,
  waitFinished,
  flushedPosition,
  caughtUp,
  eventRows,
  useStreamsServer,
  heartbeatMs,
} from './support.ts';

useStreamsServer();

// ---------------------------------------------------------------------------------------

describe('WatchJobs live', () => {
  test('the first message is a heartbeat carrying the current position', async () => {
    const { client } = await server.createUser();
    await waitFinished([(await createNoop(client)).id]);
    const before = await flushedPosition();
    expect(before).toBeGreaterThan(0n);
    const stream = watchJobs(client);
    await stream.waitFor((items) => items.length >= 1, 'the first message');
    const after = await flushedPosition();
    const [first] = stream.items;
    expect(first!.kind).toBe(JobEventKind.HEARTBEAT);
    expect(first!.job).toBeUndefined();
    expect(first!.sequence).toBeGreaterThanOrEqual(before);
    expect(first!.sequence).toBeLessThanOrEqual(after);
    expect(first!.sequence).toBeGreaterThan(0n);
    // And so is every later quiet message.
    await stream.waitFor((items) => items.length >= 3, 'more heartbeats', 3000);
    expect(stream.items.every(isHeartbeat)).toBe(true);
    expectOrdered(stream.items);
  });

  test("a user sees the events of their own jobs only; an admin sees everyone's", async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const aliceStream = watchJobs(alice.client);
    const bobStream = watchJobs(bob.client);
    const adminStream = watchJobs(admin);
    for (const stream of [aliceStream, bobStream, adminStream]) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const starts = [aliceStream, bobStream, adminStream].map((stream) => stream.items[0]!.sequence);

    const aliceJobs = [await createNoop(alice.client), await createNoop(alice.client)];
    const bobJobs = [await createNoop(bob.client), await createNoop(bob.client)];
    await waitFinished([...aliceJobs, ...bobJobs].map((job) => job.id));
    const position = await flushedPosition();
    for (const stream of [aliceStream, bobStream, adminStream]) await caughtUp(stream, position);

    for (const [account, stream, jobs, start] of [
      [alice, aliceStream, aliceJobs, starts[0]!],
      [bob, bobStream, bobJobs, starts[1]!],
    ] as const) {
      const events = eventsOf(stream.items);
      expect(events.every((message) => message.job?.ownerId === account.user.id)).toBe(true);
      expect(new Set(events.map((message) => message.job!.id))).toEqual(new Set(jobs.map((job) => job.id)));
      // Exactly the owner's events after the starting point, as the log has them.
      const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [
        account.user.id,
        String(start),
        String(position),
      ]);
      expect(events.map(summary)).toEqual(rows.map(rowSummary));
      for (const job of jobs) {
        expect(
          events
            .filter((message) => message.job!.id === job.id)
            .map((message) => `${kindName(message.kind)}/${statusName(message.job!.status)}`),
        ).toEqual(['CREATED/QUEUED', 'UPDATED/RUNNING', 'UPDATED/SUCCEEDED']);
      }
      expectOrdered(stream.items);
    }
    const adminEvents = eventsOf(adminStream.items);
    const rows = await eventRows('sequence > $1 and sequence <= $2', [String(starts[2]), String(position)]);
    expect(adminEvents.filter((message) => message.sequence <= position).map(summary)).toEqual(rows.map(rowSummary));
    for (const job of [...aliceJobs, ...bobJobs]) expect(adminEvents.filter((message) => message.job!.id === job.id)).toHaveLength(3);
    expectOrdered(adminStream.items);
  });

  test('filters: types, statuses, labels and owner_id (admins), each on the state after the event', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const filters: Record<string, Partial<JobFilter>> = {
      types: { types: ['stepped'] },
      statuses: { statuses: [JobStatus.SUCCEEDED] },
      labels: { labels: { team: 'blue' } },
      owner: { ownerId: bob.user.id },
      combined: { ownerId: alice.user.id, labels: { team: 'blue' }, statuses: [JobStatus.RUNNING, JobStatus.SUCCEEDED] },
    };
    const streams = Object.fromEntries(Object.entries(filters).map(([name, filter]) => [name, watchJobs(admin, { filter })]));
    const aliceLabelStream = watchJobs(alice.client, { filter: { labels: { team: 'blue' } } });
    const all = [...Object.values(streams), aliceLabelStream];
    for (const stream of all) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    // biome-ignore lint/complexity/useMathMinMax: sequences are bigints, which Math.max does not take.
    const start = all.map((stream) => stream.items[0]!.sequence).reduce((a, b) => (a > b ? a : b));

    const jobs = [
      await createNoop(alice.client, { labels: { team: 'blue' } }),
      await createNoop(alice.client, { labels: { team: 'red' } }),
      await createNoop(bob.client, { labels: { team: 'blue' } }),
    ];
    const scripted = await createStepped(bob.client, { labels: { team: 'green' } });
    await running(scripted.script);
    scripted.script.succeed();
    await waitFinished([...jobs, scripted.job].map((job) => job.id));
    const position = await flushedPosition();
    for (const stream of all) await caughtUp(stream, position);

    const rows = await eventRows('sequence > $1 and sequence <= $2', [String(start), String(position)]);
    const predicates: Record<string, (row: EventRow) => boolean> = {
      types: (row) => row.payload.type === 'stepped',
      statuses: (row) => row.payload.status === 'succeeded',
      labels: (row) => row.payload.labels.team === 'blue',
      owner: (row) => row.owner_id === bob.user.id,
      combined: (row) =>
        row.owner_id === alice.user.id && row.payload.labels.team === 'blue' && ['running', 'succeeded'].includes(row.payload.status),
    };
    for (const [name, stream] of Object.entries(streams)) {
      const events = eventsOf(stream.items).filter((message) => message.sequence > start && message.sequence <= position);
      expect(events.map(summary), `filter ${name}`).toEqual(rows.filter(predicates[name]!).map(rowSummary));
      expectOrdered(stream.items);
    }
    // The concrete expectations, so that an empty log cannot pass the comparison above.
    const idsIn = (stream: Recorder<WatchJobsResponse>) => new Set(eventsOf(stream.items).map((message) => message.job!.id));
    expect(idsIn(streams.types!)).toEqual(new Set([scripted.job.id]));
    expect(eventsOf(streams.types!.items)).toHaveLength(3);
    expect(
      eventsOf(streams.statuses!.items)
        .filter((message) => message.sequence > start)
        .map((message) => message.job!.id)
        .sort(),
    ).toEqual([...jobs, scripted.job].map((job) => job.id).sort());
    expect(idsIn(streams.labels!)).toEqual(new Set([jobs[0]!.id, jobs[2]!.id]));
    expect(idsIn(streams.owner!)).toEqual(new Set([jobs[2]!.id, scripted.job.id]));
    expect(eventsOf(streams.combined!.items).map((message) => `${message.job!.id}/${statusName(message.job!.status)}`)).toEqual([
      `${jobs[0]!.id}/RUNNING`,
      `${jobs[0]!.id}/SUCCEEDED`,
    ]);
    // A user's label filter still covers only their own jobs.
    expect(idsIn(aliceLabelStream)).toEqual(new Set([jobs[0]!.id]));
  });

  test('search matches name and labels word by word, case-insensitively, live and on replay, exactly the jobs ListJobs finds', async () => {
    const { client } = await server.createUser();
    const filter = { search: 'Nightly RENDER' };
    const live = watchJobs(client, { filter });
    await live.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = live.items[0]!.sequence;
    const byName = await createNoop(client, { name: 'nightly render of scene 7' });
    const byLabels = await createNoop(client, { name: 'scene 8', labels: { schedule: 'Nightly', stage: 'render' } });
    const halfMatch = await createNoop(client, { name: 'nightly backup' });
    await waitFinished([byName.id, byLabels.id, halfMatch.id]);
    const expected = [byName.id, byLabels.id].sort();
    await live.waitFor(
      (items) => eventsOf(items).filter((message) => message.job!.status === JobStatus.SUCCEEDED).length >= 2,
      'both SUCCEEDED events',
    );
    const replay = watchJobs(client, { filter, afterSequence: start });
    await replay.waitFor((items) => items.some((item) => item.kind === JobEventKind.HEARTBEAT), 'the end of the replay');
    for (const stream of [live, replay]) {
      const events = eventsOf(stream.items);
      expect([...new Set(events.map((message) => message.job!.id))].sort()).toEqual(expected);
      expect(events).toHaveLength(6); // created, running, succeeded of each
    }
    const { jobs } = await client.jobs.listJobs({ filter });
    expect(jobs.map((job) => job.id).sort()).toEqual(expected);
  });

  test('bad filters: a search over 200 characters is InvalidArgument, as are another account as owner_id (users), a malformed owner_id and an unknown status', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const search = await watchJobs(alice.client, { filter: { search: 'x'.repeat(201) } }).end();
    expect(search && Code[search.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(search!)).toEqual(['filter.search']);

    const foreignOwner = await watchJobs(alice.client, { filter: { ownerId: bob.user.id } }).end();
    expect(foreignOwner && Code[foreignOwner.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(foreignOwner!)).toEqual(['filter.owner_id']);
    const malformedOwner = await watchJobs(admin, { filter: { ownerId: 'bob' } }).end();
    expect(malformedOwner && Code[malformedOwner.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(malformedOwner!)).toEqual(['filter.owner_id']);
    const badStatus = await watchJobs(alice.client, { filter: { statuses: [99 as JobStatus] } }).end();
    expect(badStatus && Code[badStatus.code]).toBe(Code[Code.InvalidArgument]);
    expect(violatedFields(badStatus!)).toContain('filter.statuses');

    // The user's own id as owner_id is allowed.
    const own = watchJobs(alice.client, { filter: { ownerId: alice.user.id } });
    await own.waitFor((items) => items.length >= 1, 'the first heartbeat');
    expect(own.items[0]!.kind).toBe(JobEventKind.HEARTBEAT);
  });

  test('a deleted job is a DELETED event carrying its last state, live and on replay; WatchJob on it is then NotFound', async () => {
    const { client } = await server.createUser();
    const stream = watchJobs(client);
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = stream.items[0]!.sequence;
    const job = await createNoop(client, { name: 'to delete' });
    await waitFinished([job.id]);
    await client.jobs.deleteJob({ id: job.id });
    await stream.waitFor((items) => eventsOf(items).some((message) => message.kind === JobEventKind.DELETED), 'the DELETED event');
    const deleted = eventsOf(stream.items).find((message) => message.kind === JobEventKind.DELETED)!;
    expect(deleted.job?.id).toBe(job.id);
    expect(deleted.job?.status).toBe(JobStatus.SUCCEEDED);
    expect(deleted.job?.name).toBe('to delete');
    expect(eventsOf(stream.items).map((message) => kindName(message.kind))).toEqual(['CREATED', 'UPDATED', 'UPDATED', 'DELETED']);
    expect(await server.countRows('select count(*) as n from jobs where id = $1', [job.id])).toBe(0);

    const replay = watchJobs(client, { afterSequence: start });
    await replay.waitFor((items) => items.some(isHeartbeat), 'the replay');
    expect(eventsOf(replay.items).map(summary)).toEqual(eventsOf(stream.items).map(summary));
    const gone = await watchJob(client, job.id).end();
    expect(gone && Code[gone.code]).toBe(Code[Code.NotFound]);
  });

  test('over gRPC: heartbeat first, then the events of the caller', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const stream = watchJobs(grpc);
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    expect(stream.items[0]!.kind).toBe(JobEventKind.HEARTBEAT);
    const job = await createNoop(grpc);
    await stream.waitFor(
      (items) => eventsOf(items).some((message) => message.job?.id === job.id && message.job.status === JobStatus.SUCCEEDED),
      'the job to succeed',
    );
    expect(eventsOf(stream.items).map((message) => `${kindName(message.kind)}/${statusName(message.job!.status)}`)).toEqual([
      'CREATED/QUEUED',
      'UPDATED/RUNNING',
      'UPDATED/SUCCEEDED',
    ]);
    expectOrdered(stream.items);
    await stream.cancel();
  });

  // Live events are encoded once per format and written to every stream as the same bytes,
  // around Connect's pipeline: each protocol and format must read them exactly as Connect
  // would have written them, between messages Connect writes itself (heartbeats).
  const transports = streamTransports;
  test.each(transports)(
    '$name: every stream gets each event once, in order, the job as GetJob shows it, between heartbeats',
    async ({ options }) => {
      const { user, password } = await server.createUser();
      const client = server.client(options);
      await client.login(user.username, password);
      const streams = [watchJobs(client), watchJobs(client), watchJobs(client, { filter: { statuses: [JobStatus.SUCCEEDED] } })];
      const adminStream = watchJobs(admin, { filter: { ownerId: user.id } });
      for (const stream of [...streams, adminStream]) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
      const jobs = [await createNoop(client, { labels: { round: '1' } }), await createNoop(client, { labels: { round: '2' } })];
      await waitFinished(jobs.map((job) => job.id));
      // Long enough for a heartbeat (every 200 ms here) between the two rounds of events.
      await sleep(3 * heartbeatMs);
      jobs.push(await createNoop(client, { name: 'third' }));
      await waitFinished([jobs[2]!.id]);
      const rows = await eventRows('subject_id = any($1)', [jobs.map((job) => job.id)]);
      const position = await flushedPosition();
      for (const stream of [...streams, adminStream]) await caughtUp(stream, position);
      for (const stream of [streams[0]!, streams[1]!, adminStream]) {
        expect(eventsOf(stream.items).map(summary)).toEqual(rows.map(rowSummary));
        expectOrdered(stream.items);
        expect(stream.items.filter(isHeartbeat).length).toBeGreaterThanOrEqual(2);
      }
      expect(eventsOf(streams[2]!.items).map(summary)).toEqual(rows.filter((row) => row.payload.status === 'succeeded').map(rowSummary));
      // The last event of each job carries the job as it is now, field for field.
      for (const job of jobs) {
        const { job: current } = await client.jobs.getJob({ id: job.id });
        const last = eventsOf(streams[0]!.items).findLast((message) => message.job?.id === job.id)!;
        expect(last.job).toEqual(current);
        expect(last.eventTime).toBeDefined();
        expect(eventsOf(streams[1]!.items).findLast((message) => message.job?.id === job.id)).toEqual(last);
      }
    },
  );
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs resume', () => {
  test('reconnecting with after_sequence = the last sequence received replays exactly the missed events, then live ones', async () => {
    const { user, client } = await server.createUser();
    const first = watchJobs(client);
    await first.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const early = [await createNoop(client), await createNoop(client)];
    await first.waitFor(
      (items) =>
        early.every((job) => eventsOf(items).some((message) => message.job?.id === job.id && message.job.status === JobStatus.SUCCEEDED)),
      'the early jobs to finish',
    );
    await first.cancel();
    expectOrdered(first.items);
    const resumeFrom = eventsOf(first.items).at(-1)!.sequence;

    // While disconnected: jobs created, run, finished, cancelled, and one still queued.
    await admin.queue.pauseQueue({ queue: 'stepped' });
    const missedNoops = [await createNoop(client), await createNoop(client), await createNoop(client)];
    const queued = await createStepped(client);
    const toCancel = await createStepped(client);
    await client.jobs.cancelJob({ id: toCancel.job.id, reason: 'missed' });
    await waitFinished(missedNoops.map((job) => job.id));
    await flushedPosition();
    const missed = await eventRows('owner_id = $1 and sequence > $2', [user.id, String(resumeFrom)]);
    expect(missed.length).toBe(3 * 3 + 1 + 2);

    const second = watchJobs(client, { afterSequence: resumeFrom });
    await second.waitFor((items) => items.some(isHeartbeat), 'the heartbeat after the replay');
    const replayEnd = second.items.findIndex(isHeartbeat);
    const replayed = second.items.slice(0, replayEnd);
    expect(replayed.map(summary)).toEqual(missed.map(rowSummary));
    expect(second.items[replayEnd]!.sequence).toBeGreaterThanOrEqual(BigInt(missed.at(-1)!.sequence));
    // None of the events the first connection already had.
    const seen = new Set(first.items.map((message) => message.sequence));
    expect(replayed.filter((message) => seen.has(message.sequence))).toEqual([]);

    // Then live events.
    await admin.queue.resumeQueue({ queue: 'stepped' });
    await running(queued.script);
    queued.script.succeed();
    await second.waitFor(
      (items) => eventsOf(items).some((message) => message.job?.id === queued.job.id && message.job.status === JobStatus.SUCCEEDED),
      'the live events',
    );
    const position = await flushedPosition();
    await caughtUp(second, position);
    const everything = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [
      user.id,
      String(resumeFrom),
      String(position),
    ]);
    expect(eventsOf(second.items).map(summary)).toEqual(everything.map(rowSummary));
    expect(new Set(eventsOf(second.items).map((message) => message.sequence)).size).toBe(eventsOf(second.items).length);
    expectOrdered(second.items);
  });

  test("resuming from a heartbeat's sequence loses nothing: every event up to a heartbeat was sent before it", async () => {
    const { user, client } = await server.createUser();
    const first = watchJobs(client);
    await first.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = first.items[0]!.sequence;
    // Jobs run while the stream is open, so heartbeats interleave with events.
    const during: Job[] = [];
    const until = Date.now() + 1200;
    while (Date.now() < until) {
      during.push(await createNoop(client));
      await sleep(90);
    }
    await waitFinished(during.map((job) => job.id));
    await first.waitFor((items) => items.filter(isHeartbeat).length >= 4, 'heartbeats', 3000);
    // The last heartbeat must come after the last event: four heartbeats may all have come
    // before the last events (a loaded machine), and resuming from such a heartbeat rightly
    // sends those events again.
    await caughtUp(first, await flushedPosition());
    await first.cancel();
    expectOrdered(first.items);
    const resumeFrom = first.items.filter(isHeartbeat).at(-1)!.sequence;

    // At every heartbeat, the events sent before it are exactly the log's up to its position.
    const logged = await eventRows('owner_id = $1 and sequence > $2', [user.id, String(start)]);
    first.items.forEach((message, index) => {
      if (!isHeartbeat(message)) return;
      const sentBefore = eventsOf(first.items.slice(0, index)).map(summary);
      expect(sentBefore, `events before the heartbeat at ${message.sequence}`).toEqual(
        logged.filter((row) => BigInt(row.sequence) <= message.sequence).map(rowSummary),
      );
    });

    // More jobs while disconnected; resuming from the last heartbeat brings exactly what came after it.
    const jobs = [await createNoop(client), await createNoop(client)];
    await waitFinished(jobs.map((job) => job.id));
    const position = await flushedPosition();
    const missed = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(resumeFrom), String(position)]);
    expect(missed.filter((row) => jobs.some((job) => job.id === row.subject_id))).toHaveLength(6);

    const second = watchJobs(client, { afterSequence: resumeFrom });
    await caughtUp(second, position);
    expect(eventsOf(second.items).map(summary)).toEqual(missed.map(rowSummary));
    expectOrdered(second.items);
    // Together the two connections saw every event once.
    const seen = [...eventsOf(first.items), ...eventsOf(second.items)].map(summary);
    expect(seen).toEqual(
      (await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(start), String(position)])).map(rowSummary),
    );
  });

  test('an admin resuming gets every account’s missed events, filtered as asked', async () => {
    const alice = await server.createUser();
    const bob = await server.createUser();
    const resumeFrom = await flushedPosition();
    const jobs = [
      await createNoop(alice.client, { labels: { resume: 'yes' } }),
      await createNoop(bob.client, { labels: { resume: 'yes' } }),
      await createNoop(bob.client),
    ];
    await waitFinished(jobs.map((job) => job.id));
    const position = await flushedPosition();
    const stream = watchJobs(admin, { afterSequence: resumeFrom, filter: { labels: { resume: 'yes' } } });
    await caughtUp(stream, position);
    const rows = (await eventRows('sequence > $1 and sequence <= $2', [String(resumeFrom), String(position)])).filter(
      (row) => row.payload.labels.resume === 'yes',
    );
    expect(rows).toHaveLength(6);
    expect(eventsOf(stream.items).map(summary)).toEqual(rows.map(rowSummary));
  });

  test('events reach streams on another instance, and a resume there misses nothing', async () => {
    const other = await startTestServer({ database, jobTypes: [steppedJobType, chattyJobType] });
    try {
      const { user, password, client } = await server.createUser();
      const remote = await other.signIn(user.username, password);
      const live = watchJobs(remote);
      await live.waitFor((items) => items.length >= 1, 'the first heartbeat');
      const start = live.items[0]!.sequence;
      const jobs = [await createNoop(client), await createNoop(client)];
      await waitFinished(jobs.map((job) => job.id));
      const position = await flushedPosition();
      await live.waitFor(
        (items) => eventsOf(items).filter((message) => message.job?.status === JobStatus.SUCCEEDED).length >= 2,
        'both jobs to succeed',
        5000,
      );
      await live.cancel();
      const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(start), String(position)]);
      expect(
        eventsOf(live.items)
          .filter((message) => message.sequence <= position)
          .map(summary),
      ).toEqual(rows.map(rowSummary));

      const resumed = watchJobs(remote, { afterSequence: start });
      await resumed.waitFor((items) => items.some(isHeartbeat), 'the heartbeat after the replay');
      expect(
        eventsOf(resumed.items)
          .filter((message) => message.sequence <= position)
          .map(summary),
      ).toEqual(rows.map(rowSummary));
      await resumed.cancel();
    } finally {
      await other.close();
    }
  });
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs resync', () => {
  test('a resume point older than the retained history, or ahead of the newest event, is FailedPrecondition RESYNC_REQUIRED; pruned_through itself is fine', async () => {
    const { user, password, client } = await server.createUser();
    const oldJobs = [await createNoop(client), await createNoop(client)];
    await waitFinished(oldJobs.map((job) => job.id));
    const oldest = await flushedPosition();
    const [{ pruned_through: prunedBefore }] = (await server.query<{ pruned_through: string }>(
      'select pruned_through from event_positions where id = 1',
    )) as [{ pruned_through: string }];
    expect(BigInt(prunedBefore)).toBeLessThan(oldest);

    await server.query(`update events set created_at = now() - interval '30 days' where sequence <= $1`, [String(oldest)]);
    await server.setSetting('jobs.event_retention', '1h');
    try {
      await server.app.runMaintenance();
    } finally {
      await server.setSetting('jobs.event_retention', null);
    }
    const [positions] = await server.query<{ pruned_through: string; last_sequence: string }>(
      'select pruned_through, last_sequence from event_positions where id = 1',
    );
    const prunedThrough = BigInt(positions!.pruned_through);
    expect(prunedThrough).toBe(oldest);
    expect(await server.countRows('select count(*) as n from events where sequence <= $1', [String(oldest)])).toBe(0);

    // Before the retained history: resync.
    for (const afterSequence of [1n, prunedThrough - 1n]) {
      const error = await watchJobs(client, { afterSequence }).end();
      expect(error && Code[error.code], `after_sequence ${afterSequence}`).toBe(Code[Code.FailedPrecondition]);
      expect(reasonOf(error!)).toBe('RESYNC_REQUIRED');
      expect(error!.findDetails(ErrorInfoSchema)[0]?.metadata.oldest_sequence).toBe(String(prunedThrough + 1n));
    }
    // Ahead of the newest event: resync too.
    const ahead = await watchJobs(client, { afterSequence: BigInt(positions!.last_sequence) + 1000n }).end();
    expect(ahead && Code[ahead.code]).toBe(Code[Code.FailedPrecondition]);
    expect(reasonOf(ahead!)).toBe('RESYNC_REQUIRED');
    expect(ahead!.findDetails(ErrorInfoSchema)[0]?.metadata.newest_sequence).toBe(positions!.last_sequence);
    // The same over gRPC.
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const grpcError = await watchJobs(grpc, { afterSequence: 1n }).end();
    expect(grpcError && Code[grpcError.code]).toBe(Code[Code.FailedPrecondition]);
    expect(reasonOf(grpcError!)).toBe('RESYNC_REQUIRED');

    // Exactly pruned_through: every later event is still there.
    const newJob = await createNoop(client);
    await waitFinished([newJob.id]);
    const position = await flushedPosition();
    const stream = watchJobs(client, { afterSequence: prunedThrough });
    await caughtUp(stream, position);
    const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(prunedThrough), String(position)]);
    expect(rows.map((row) => row.subject_id)).toEqual([newJob.id, newJob.id, newJob.id]);
    expect(eventsOf(stream.items).map(summary)).toEqual(rows.map(rowSummary));

    // The expectation as a client sees it: a heartbeat's position is always a valid resume point.
    const again = watchJobs(client, { afterSequence: position });
    await again.waitFor((items) => items.length >= 1, 'the first heartbeat');
    expect(again.items[0]!.kind).toBe(JobEventKind.HEARTBEAT);
  });
});

// ---------------------------------------------------------------------------------------

describe('WatchJobs ordering', () => {
  test('200 jobs created concurrently: every created and final event exactly once, in strictly increasing order', async () => {
    const { user, client } = await server.createUser();
    const stream = watchJobs(client, { filter: { types: ['noop'] } });
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const start = stream.items[0]!.sequence;

    const jobs = await Promise.all(Array.from({ length: 200 }, (_, index) => createNoop(client, { name: `concurrent ${index}` })));
    const ids = jobs.map((job) => job.id);
    expect(new Set(ids).size).toBe(200);
    await stream.waitFor(
      (items) => eventsOf(items).filter((message) => message.job?.status === JobStatus.SUCCEEDED).length >= 200,
      'all 200 jobs to succeed',
      20_000,
    );
    const position = await flushedPosition();
    await caughtUp(stream, position);

    const events = eventsOf(stream.items);
    expectOrdered(stream.items);
    for (const id of ids) {
      const ofJob = events.filter((message) => message.job!.id === id);
      expect(
        ofJob.filter((message) => message.kind === JobEventKind.CREATED),
        `created of ${id}`,
      ).toHaveLength(1);
      expect(
        ofJob.filter((message) => message.job!.status === JobStatus.SUCCEEDED),
        `final of ${id}`,
      ).toHaveLength(1);
      expect(ofJob.at(-1)!.job!.status).toBe(JobStatus.SUCCEEDED);
    }
    expect(new Set(events.map((message) => message.sequence)).size).toBe(events.length);
    const rows = await eventRows('owner_id = $1 and sequence > $2 and sequence <= $3', [user.id, String(start), String(position)]);
    expect(rows).toHaveLength(600);
    expect(events.map(summary)).toEqual(rows.map(rowSummary));
    // The log itself has no hole in its positions.
    const [gaps] = await server.query<{ n: string; lo: string; hi: string }>(
      'select count(*) as n, min(sequence) as lo, max(sequence) as hi from events where sequence > $1 and sequence <= $2',
      [String(start), String(position)],
    );
    expect(Number(gaps!.n)).toBe(Number(gaps!.hi) - Number(gaps!.lo) + 1);
  });
});
