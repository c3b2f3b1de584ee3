/**
 * Open streams and their limits: credentials that end, streams per account, slow clients.
 */
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { findTrailerError } from '@connectrpc/connect/protocol-grpc';
import { describe, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import {
  JobEventKind,
  JobsService,
  WatchJobsRequestSchema,
  WatchJobsResponseSchema,
  type WatchJobsResponse,
} from '../../gen/yardmaster/v1/jobs_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { eventually, reasonOf } from '../support/assertions.ts';
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
    // 210 streams and their connections: about 20 s on a loaded machine.
  }, 60_000);
});

describe('slow clients', () => {
  // Live events are written to the response as they come while the stream waits; a client
  // that does not read must be cut off once more than the per-stream bounds wait for it
  // (10,000 queued events; 4 MiB written and not taken), and resume by sequence.

  /** A user with one finished job, the stream that tells when the server has handed out a burst, and the event log position before it. */
  async function slowClientSetup(options: { protocol?: 'grpc' } = {}) {
    const { user, password } = await server.createUser();
    const client = server.client(options);
    await client.login(user.username, password);
    const job = await createNoop(client);
    await waitFinished([job.id]);
    const start = await flushedPosition();
    // A cheap stream that reads, whose heartbeats tell when this instance has handed the
    // whole burst to every subscribed stream (its filter matches none of the burst).
    const witness = watchJobs(client, { filter: { types: ['chatty'] } });
    await witness.waitFor((items) => items.length >= 1, 'the first heartbeat');
    return { user, client, job, start, witness };
  }

  /**
   * A burst of the job's events far larger than the per-stream bounds plus what the
   * transport holds for a client that does not read. Through the API this would take
   * minutes, so the rows are written the way the writing transactions write them
   * (unsequenced) and the sequencer numbers them. Returns the position after it, once
   * every stream of this instance has been handed all of it.
   */
  async function burstOf(jobId: string, burst: number, start: bigint, witness: Recorder<WatchJobsResponse>): Promise<bigint> {
    await server.query(
      `insert into events (created_at, kind, subject_id, owner_id, payload)
       select now(), 'job.updated', subject_id, owner_id, payload from events, generate_series(1, $2)
        where sequence = (select max(sequence) from events where subject_id = $1)`,
      [jobId, burst],
    );
    const position = await flushedPosition();
    expect(position - start).toBe(BigInt(burst));
    await caughtUp(witness, position, 20_000);
    return position;
  }

  /** The client resumes from the last sequence it received and gets the rest, once each. */
  async function expectResumes(
    client: YardmasterClient,
    ownerId: string,
    jobId: string,
    lastSequence: bigint,
    position: bigint,
  ): Promise<void> {
    const resumed = watchJobs(client, { afterSequence: lastSequence });
    await caughtUp(resumed, position, 30_000);
    const rest = eventsOf(resumed.items);
    expect(rest.length).toBe(Number(position - lastSequence));
    expect(rest[0]!.sequence).toBe(lastSequence + 1n);
    expect(rest.at(-1)!.sequence).toBe(position);
    expectOrdered(resumed.items);
    expect(rest.every((message) => message.job?.id === jobId && message.job.ownerId === ownerId)).toBe(true);
  }

  test('Connect JSON over HTTP/1.1: a WatchJobs client that stops reading is cut off with ResourceExhausted STREAM_OVERFLOW, and resumes from its last sequence', async () => {
    const { user, client, job, start, witness } = await slowClientSetup();
    // A stream read by hand: one message, then no reading at all for a while. Over
    // HTTP/1.1 the client's socket stops taking bytes once its buffers are full (about
    // 11,000 of these messages), so the server's backlog grows.
    const abort = new AbortController();
    const iterator = client.jobs.watchJobs({}, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      const first = await iterator.next();
      expect(first.value?.kind).toBe(JobEventKind.HEARTBEAT);
      const burst = 40_000;
      const position = await burstOf(job.id, burst, start, witness);

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
      await expectResumes(client, user.id, job.id, lastSequence, position);
    } finally {
      abort.abort();
      await iterator.return?.().catch(() => undefined);
    }
  }, 60_000);

  test('gRPC over HTTP/2: a WatchJobs client that stops reading is cut off with ResourceExhausted STREAM_OVERFLOW, and resumes from its last sequence', async () => {
    const { user, client, job, start, witness } = await slowClientSetup({ protocol: 'grpc' });
    // The stream is read by hand at the HTTP/2 level: an application that merely stops
    // iterating a typed client's stream still has the client take up to its receive window
    // (4 MiB per stream, about 23,000 of these messages) into memory, which would leave the
    // server nothing to cut off. Here the peer really stops reading: the stream is paused
    // and its window is the protocol's 64 KiB, so what the server writes waits with it.
    const session = http2.connect(server.url, { settings: { initialWindowSize: 65_535 } });
    session.on('error', () => {});
    try {
      const call = session.request({
        ':method': 'POST',
        ':path': `/${JobsService.typeName}/${JobsService.method.watchJobs.name}`,
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization: `Bearer ${client.tokens!.accessToken}`,
      });
      call.on('error', () => {});
      call.end(grpcFrame(toBinary(WatchJobsRequestSchema, create(WatchJobsRequestSchema, {}))));
      const messages = readGrpcMessages(call);
      await eventually(async () => expect(messages.received.length).toBeGreaterThanOrEqual(1), 10_000);
      call.pause();
      const first = messages.received[0]!;
      expect(first.kind).toBe(JobEventKind.HEARTBEAT);

      const burst = 40_000;
      const position = await burstOf(job.id, burst, start, witness);

      // Reading again: what the window and the server held arrives, then the stream ends with the overflow.
      call.resume();
      const trailers = await messages.trailers;
      const failure = findTrailerError(trailers);
      expect(failure, `the slow stream should have been cut off (grpc-status ${trailers.get('grpc-status')})`).toBeDefined();
      expect(Code[failure!.code], failure!.rawMessage).toBe(Code[Code.ResourceExhausted]);
      expect(reasonOf(failure!)).toBe('STREAM_OVERFLOW');
      const received = messages.received.length;
      expect(received, 'messages received before the cut (the rest of the burst was dropped, not queued)').toBeLessThan(burst);
      const events = eventsOf(messages.received);
      const lastSequence = events.at(-1)?.sequence ?? first.sequence;
      expectOrdered(messages.received);
      await expectResumes(client, user.id, job.id, lastSequence, position);
    } finally {
      session.destroy();
    }
  }, 60_000);
});

/** A gRPC length-prefixed message: uncompressed flag, big-endian length, the bytes. */
function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** Decodes the WatchJobs messages of a raw gRPC response as they arrive, and its trailers. */
function readGrpcMessages(call: http2.ClientHttp2Stream): { received: WatchJobsResponse[]; trailers: Promise<Headers> } {
  const received: WatchJobsResponse[] = [];
  let pending: Buffer = Buffer.alloc(0);
  call.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let offset = 0;
    while (pending.length - offset >= 5) {
      const length = pending.readUInt32BE(offset + 1);
      if (pending.length - offset < 5 + length) break;
      received.push(fromBinary(WatchJobsResponseSchema, pending.subarray(offset + 5, offset + 5 + length)));
      offset += 5 + length;
    }
    pending = pending.subarray(offset);
  });
  const trailers = new Promise<Headers>((resolve, reject) => {
    const headersOf = (incoming: http2.IncomingHttpHeaders) => {
      const headers = new Headers();
      for (const [name, value] of Object.entries(incoming)) {
        if (name.startsWith(':') || value === undefined) continue;
        for (const item of Array.isArray(value) ? value : [value]) headers.append(name, String(item));
      }
      return headers;
    };
    let responseHeaders = new Headers();
    let trailing: Headers | undefined;
    call.on('response', (incoming) => {
      responseHeaders = headersOf(incoming);
    });
    call.on('trailers', (incoming) => {
      trailing = headersOf(incoming);
    });
    // Settled once every message before the trailers was read. A trailers-only answer
    // carries its status in the response headers.
    call.on('close', () => {
      const status = trailing ?? (responseHeaders.has('grpc-status') ? responseHeaders : undefined);
      if (status) resolve(status);
      else reject(new Error(`the call closed without a gRPC status (RST_STREAM code ${call.rstCode})`));
    });
  });
  return { received, trailers };
}
