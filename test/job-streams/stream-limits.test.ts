/**
 * Open streams and their limits: credentials that end, streams per account, slow clients.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { JobEventKind, type WatchJobsResponse } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { reasonOf } from '../support/assertions.ts';
import {
  type Recorder,
  watchJobs,
  eventsOf,
  expectOrdered,
  server,
  admin,
  createNoop,
  waitFinished,
  flushedPosition,
  caughtUp,
  useStreamsServer,
} from './support.ts';

useStreamsServer();

// ---------------------------------------------------------------------------------------

describe('credentials of open streams', () => {
  /** Opens WatchJobs as a fresh account and waits for its first heartbeat. */
  async function openStreamOf() {
    const user = await server.createUser();
    const stream = watchJobs(user.client);
    await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    return { user, stream };
  }

  async function expectEndedWith(stream: Recorder<WatchJobsResponse>, reason: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!stream.done && Date.now() < deadline) await sleep(50);
    const error = await stream.ended;
    expect(error && `${Code[error.code]} ${reasonOf(error)}`).toBe(`${Code[Code.Unauthenticated]} ${reason}`);
  }

  test('a stream ends Unauthenticated soon after its account is deactivated, its session ended, or its role changed; other streams go on', async () => {
    const deactivated = await openStreamOf();
    const loggedOut = await openStreamOf();
    const promoted = await openStreamOf();
    const untouched = await openStreamOf();
    await admin.admin.updateUser({ user: { id: deactivated.user.user.id, active: false }, updateMask: { paths: ['active'] } });
    await loggedOut.user.client.auth.logout({ allSessions: true });
    await admin.admin.updateUser({ user: { id: promoted.user.user.id, role: Role.ADMIN }, updateMask: { paths: ['role'] } });
    const endedAt = Date.now();
    // Deactivation ends the account's sessions.
    await expectEndedWith(deactivated.stream, 'SESSION_REVOKED');
    await expectEndedWith(loggedOut.stream, 'SESSION_REVOKED');
    await expectEndedWith(promoted.stream, 'CREDENTIALS_CHANGED');
    expect(Date.now() - endedAt).toBeLessThan(10_000);
    // The others' streams go on.
    const before = untouched.stream.items.length;
    await untouched.stream.waitFor((items) => items.length > before, 'another heartbeat');
    expect(untouched.stream.done).toBe(false);
  });
});

describe('streams per account', () => {
  test('an account holds at most 100 open streams on one server: the next is ResourceExhausted TOO_MANY_STREAMS until one closes; admins are not limited', async () => {
    const { client } = await server.createUser();
    const streams = Array.from({ length: 100 }, () => watchJobs(client));
    for (const stream of streams) await stream.waitFor((items) => items.length >= 1, 'the first heartbeat');
    const refused = await watchJobs(client).end();
    expect(refused && `${Code[refused.code]} ${reasonOf(refused)}`).toBe(`${Code[Code.ResourceExhausted]} TOO_MANY_STREAMS`);
    await streams[0]!.cancel();
    // The server learns of the cancel a moment later.
    let reopened = false;
    for (let attempt = 0; attempt < 50 && !reopened; attempt++) {
      const again = watchJobs(client);
      const first = await Promise.race([
        again
          .waitFor((items) => items.length >= 1, 'a heartbeat')
          .then(
            () => true,
            () => false,
          ),
        again.ended.then(() => false),
      ]);
      reopened = first;
      if (!first) await sleep(50);
    }
    expect(reopened).toBe(true);
    const adminStreams = Array.from({ length: 110 }, () => watchJobs(admin));
    for (const stream of adminStreams) await stream.waitFor((items) => items.length >= 1, 'an admin stream heartbeat');
  });
});

describe('slow clients', () => {
  // Live events are written to the response as they come while the stream waits (over
  // HTTP/1.1 into the socket, over HTTP/2 into the stream's flow-controlled queue): both
  // must bound what a client that does not read leaves behind.
  test.each([
    { name: 'Connect JSON over HTTP/1.1', options: {} },
    { name: 'gRPC over HTTP/2', options: { protocol: 'grpc' } },
  ] as const)(
    '$name: a WatchJobs client that stops reading is cut off with ResourceExhausted STREAM_OVERFLOW, and resumes from its last sequence',
    async ({ options }) => {
      const { user, password } = await server.createUser();
      const client = server.client(options);
      await client.login(user.username, password);
      const job = await createNoop(client);
      await waitFinished([job.id]);
      const start = await flushedPosition();

      // A stream read by hand: one message, then no reading at all for a while.
      const abort = new AbortController();
      const iterator = client.jobs.watchJobs({}, { signal: abort.signal })[Symbol.asyncIterator]();
      try {
        const first = await iterator.next();
        expect(first.value?.kind).toBe(JobEventKind.HEARTBEAT);
        // A cheap stream that reads, whose heartbeats tell when this instance has handed the
        // whole burst to every subscribed stream (its filter matches none of the burst).
        const witness = watchJobs(client, { filter: { types: ['chatty'] } });
        await witness.waitFor((items) => items.length >= 1, 'the first heartbeat');

        // A burst of the user's events far larger than the per-stream bounds (10,000 queued
        // events; 4 MiB written and not taken) plus what the sockets hold (about 11,000 such
        // messages here). Through the API this would take minutes, so the rows are written the
        // way the writing transactions write them (unsequenced) and the sequencer numbers them.
        const burst = 40_000;
        await server.query(
          `insert into events (created_at, kind, subject_id, owner_id, payload)
         select now(), 'job.updated', subject_id, owner_id, payload from events, generate_series(1, $2)
          where sequence = (select max(sequence) from events where subject_id = $1)`,
          [job.id, burst],
        );
        const position = await flushedPosition();
        expect(position - start).toBe(BigInt(burst));
        await caughtUp(witness, position, 20_000);

        // Reading again: what the sockets held arrives, then the stream ends with the overflow.
        let received = 1;
        let lastSequence = first.value!.sequence;
        let failure: ConnectError | undefined;
        try {
          for (;;) {
            const next = await iterator.next();
            if (next.done) break;
            received++;
            if (next.value.kind !== JobEventKind.HEARTBEAT) lastSequence = next.value.sequence;
          }
        } catch (error) {
          failure = ConnectError.from(error);
        }
        expect(failure, 'the slow stream should have been cut off').toBeDefined();
        expect(Code[failure!.code], failure!.rawMessage).toBe(Code[Code.ResourceExhausted]);
        expect(reasonOf(failure!)).toBe('STREAM_OVERFLOW');
        expect(received, 'messages received before the cut (the rest of the burst was dropped, not queued)').toBeLessThan(burst);

        // The client resumes from the last sequence it received and gets the rest, once each.
        const resumed = watchJobs(client, { afterSequence: lastSequence });
        await caughtUp(resumed, position, 30_000);
        const rest = eventsOf(resumed.items);
        expect(rest.length).toBe(Number(position - lastSequence));
        expect(rest[0]!.sequence).toBe(lastSequence + 1n);
        expect(rest.at(-1)!.sequence).toBe(position);
        expectOrdered(resumed.items);
        expect(rest.every((message) => message.job?.id === job.id && message.job.ownerId === user.id)).toBe(true);
      } finally {
        abort.abort();
        await iterator.return?.().catch(() => undefined);
      }
    },
    60_000,
  );
});
