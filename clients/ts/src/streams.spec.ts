/**
 * watchJob's deduplication against a server that numbers the current state with a
 * position it has not reached yet (as ours once did when the job finished between its two
 * reads): the final state must still end the watch. Served in memory by a router, since
 * the point is what the client does with these exact messages.
 */
import { create } from '@bufbuild/protobuf';
import { createRouterTransport } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import { JobEventKind, JobSchema, JobStatus, JobsService, WatchJobResponseSchema } from '../../../gen/yardmaster/v1/jobs_pb.ts';
import { createClientOnTransport } from './client.ts';
import { watchJob } from './streams.ts';

function state(sequence: bigint, status: JobStatus) {
  return create(WatchJobResponseSchema, { sequence, kind: JobEventKind.UPDATED, job: create(JobSchema, { id: 'job', status }) });
}

function clientServing(connections: ReturnType<typeof state>[][]) {
  let opened = 0;
  const transport = createRouterTransport(({ service }) => {
    service(JobsService, {
      async *watchJob() {
        yield* connections[Math.min(opened++, connections.length - 1)]!;
      },
    });
  });
  return {
    client: createClientOnTransport(
      () => transport,
      {},
      () => undefined,
    ),
    opened: () => opened,
  };
}

describe('watchJob', () => {
  test('a final state at the position already seen still ends the watch, on the first connection', async () => {
    const { client, opened } = clientServing([[state(7n, JobStatus.RUNNING), state(7n, JobStatus.SUCCEEDED)]]);
    const seen: JobStatus[] = [];
    for await (const message of watchJob(client, 'job', { signal: AbortSignal.timeout(5000) })) seen.push(message.job!.status);
    expect(seen).toEqual([JobStatus.RUNNING, JobStatus.SUCCEEDED]);
    expect(opened()).toBe(1);
  });

  test('a non-final state at or below the position is a repeat and is skipped', async () => {
    const { client } = clientServing([
      [state(5n, JobStatus.RUNNING), state(5n, JobStatus.RUNNING), state(4n, JobStatus.RUNNING), state(9n, JobStatus.FAILED)],
    ]);
    const seen: bigint[] = [];
    for await (const message of watchJob(client, 'job', { signal: AbortSignal.timeout(5000) })) seen.push(message.sequence);
    expect(seen).toEqual([5n, 9n]);
  });
});
