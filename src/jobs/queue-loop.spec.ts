import { setTimeout as sleep } from 'node:timers/promises';
import { expect, test } from 'vitest';
import { createLogger } from '../platform/logger.ts';
import { QueueLoop, type QueueLoopOptions } from './queue-loop.ts';

const logger = createLogger('silent');

/** Waits until `condition` holds (the loop runs on timers and promises). */
async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 5000) throw new Error('the condition never held');
    await sleep(5);
  }
}

/** A loop over a queue of numbers, taking `batchSize` at a time; records what it took and worked. */
function loopOver(items: number[], options: Partial<QueueLoopOptions<number>> = {}) {
  const queue = [...items];
  const worked: number[][] = [];
  let takes = 0;
  const loop = new QueueLoop<number>({
    queue: 'test',
    batchSize: 2,
    slots: 1,
    pollingMs: 60_000,
    take: async () => {
      takes++;
      return queue.splice(0, 2);
    },
    work: async (batch) => {
      worked.push(batch);
    },
    isContention: () => false,
    onHealth: () => {},
    logger,
    ...options,
  });
  return { loop, queue, worked, takes: () => takes };
}

test('full batches are taken back to back; a short one waits for the polling interval', async () => {
  const { loop, worked, takes } = loopOver([1, 2, 3, 4, 5]);
  await until(() => worked.length === 3);
  await sleep(20);
  expect(worked).toEqual([[1, 2], [3, 4], [5]]);
  expect(takes()).toBe(3);
  await loop.stop();
});

test('a wake-up ends the wait at once, and one during a take makes the slot take again', async () => {
  const { loop, queue, worked, takes } = loopOver([]);
  await until(() => takes() === 1);
  queue.push(7);
  loop.wake();
  await until(() => worked.length === 1);
  expect(worked).toEqual([[7]]);
  await loop.stop();
});

test('stop waits for the batch being worked, then takes nothing more', async () => {
  let finish: (() => void) | undefined;
  const { loop, worked, takes } = loopOver([1, 2, 3, 4], {
    work: async (batch) => {
      await new Promise<void>((resolve) => (finish = resolve));
      worked.push(batch);
    },
  });
  await until(() => finish !== undefined);
  let stopped = false;
  const stopping = loop.stop().then(() => (stopped = true));
  await sleep(20);
  expect(stopped).toBe(false);
  finish!();
  await stopping;
  expect(worked).toEqual([[1, 2]]);
  expect(takes()).toBe(1);
});

test('a take that met another transaction retries soon; one that failed otherwise reports the queue unhealthy until a take succeeds', async () => {
  const health: boolean[] = [];
  let calls = 0;
  const { loop } = loopOver([], {
    pollingMs: 30,
    take: async () => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('held'), { contention: true });
      if (calls === 2) throw new Error('down');
      return [];
    },
    isContention: (error) => (error as { contention?: boolean }).contention === true,
    onHealth: (healthy) => health.push(healthy),
  });
  await until(() => calls >= 3);
  expect(health).toEqual([false, true]);
  await loop.stop();
});
