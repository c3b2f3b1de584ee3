/**
 * QueueService WatchQueues.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { describe, expect, test } from 'vitest';
import type { Queue } from '../../gen/yardmaster/v1/queue_pb.ts';
import { expectConnectError } from '../support/assertions.ts';
import {
  heartbeatMs,
  queueNames,
  server,
  admin,
  queueOf,
  createSleep,
  createRunsUntilReleased,
  countsOf,
  QueueWatch,
  useQueueServer,
} from './support.ts';

useQueueServer();

describe('WatchQueues', () => {
  test('the first message holds the current counts; new jobs and pauses send new counts within a second', async () => {
    const { client } = await server.createUser();
    const stream = new QueueWatch(client);
    const { message: first } = await stream.waitFor(() => true, 'the first message');
    const listed = await client.queue.listQueues({});
    const comparable = (queues: Queue[]) =>
      queues.map((queue) => ({ ...countsOf(queue), name: queue.name, paused: queue.paused, concurrency: queue.concurrency }));
    expect(comparable(first.queues)).toEqual(comparable(listed.queues));
    expect(first.pausedGlobally).toBe(false);
    expect(first.totals?.queued).toBe(0n);
    expect(first.time).toBeDefined();
    expect(Math.abs(timestampDate(first.time!).getTime() - Date.now())).toBeLessThan(5000);

    // A pause.
    let from = stream.items.length;
    let sent = performance.now();
    await admin.queue.pauseQueue({ queue: 'sleep' });
    const pausedMessage = await stream.waitFor((message) => queueOf(message.queues, 'sleep').paused, 'sleep paused', from, 3000);
    expect(pausedMessage.at - sent).toBeLessThan(1000);
    expect(pausedMessage.message.pausedGlobally).toBe(false);

    // New jobs.
    from = stream.items.length;
    sent = performance.now();
    await createSleep(client, 0);
    await createSleep(client, 0);
    const countedMessage = await stream.waitFor(
      (message) => queueOf(message.queues, 'sleep').queued === 2n,
      'two queued sleep jobs',
      from,
      3000,
    );
    expect(countedMessage.at - sent).toBeLessThan(1000);
    expect(countedMessage.message.totals?.queued).toBe(2n);
    expect(countedMessage.message.totals?.oldestQueuedAge).toBeDefined();
    expect(queueOf(countedMessage.message.queues, 'sleep').oldestQueuedAge).toBeDefined();

    // A global pause, then the resume: the jobs run and the counts follow.
    from = stream.items.length;
    await admin.queue.pauseQueue({ queue: '' });
    await stream.waitFor(
      (message) => message.pausedGlobally && message.queues.every((queue) => queue.paused),
      'the global pause',
      from,
      3000,
    );
    from = stream.items.length;
    await admin.queue.resumeQueue({ queue: '' });
    const done = await stream.waitFor(
      (message) =>
        !message.pausedGlobally &&
        queueOf(message.queues, 'sleep').queued === 0n &&
        queueOf(message.queues, 'sleep').running === 0n &&
        !queueOf(message.queues, 'sleep').paused,
      'the jobs to run',
      from,
      8000,
    );
    expect(queueOf(done.message.queues, 'sleep').succeededLastHour).toBeGreaterThanOrEqual(2n);
    expect(queueOf(done.message.queues, 'sleep').oldestQueuedAge).toBeUndefined();
  });

  test('when quiet, heartbeats repeat the same counts about every interval', async () => {
    const { client } = await server.createUser();
    const stream = new QueueWatch(client);
    await stream.waitFor(() => true, 'the first message');
    await sleep(2000);
    const messages = stream.items;
    expect(messages.length).toBeGreaterThanOrEqual(4);
    const counts = messages.map((message) => JSON.stringify(message.queues.map((queue) => [queue.name, countsOf(queue), queue.paused])));
    expect(new Set(counts).size).toBe(1);
    for (let index = 1; index < messages.length; index++) {
      expect(timestampDate(messages[index]!.time!).getTime()).toBeGreaterThan(timestampDate(messages[index - 1]!.time!).getTime());
    }
    // The heartbeat interval is the longest silence allowed: gaps close to it, never far above.
    const gaps = stream.arrivals.slice(1).map((at, index) => at - stream.arrivals[index]!);
    const sorted = [...gaps].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    expect(
      median,
      `gaps between quiet messages (interval ${heartbeatMs} ms): ${gaps.map((gap) => gap.toFixed(0)).join(', ')} ms`,
    ).toBeLessThan(heartbeatMs + 150);
  });

  test('over gRPC: the counts first, then changes', async () => {
    const { user, password } = await server.createUser();
    const grpc = server.client({ protocol: 'grpc' });
    await grpc.login(user.username, password);
    const stream = new QueueWatch(grpc);
    const { message: first } = await stream.waitFor(() => true, 'the first message');
    expect(first.queues.map((queue) => queue.name)).toEqual(queueNames);
    const from = stream.items.length;
    await admin.queue.pauseQueue({ queue: 'runs-until-released' });
    await createRunsUntilReleased(grpc);
    await stream.waitFor(
      (message) => queueOf(message.queues, 'runs-until-released').paused && queueOf(message.queues, 'runs-until-released').queued === 1n,
      'the paused queue with one job',
      from,
      3000,
    );
    await stream.cancel();
    await expectConnectError(
      (async () => {
        for await (const message of server.client({ protocol: 'grpc' }).queue.watchQueues({})) return message;
        return undefined;
      })(),
      Code.Unauthenticated,
    );
  });
});
