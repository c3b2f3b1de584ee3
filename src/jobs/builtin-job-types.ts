import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJobType } from './job-types.ts';

const second = 1000;
const minute = 60 * second;

/** Finishes at once: for benchmarks and health checks of the job path. */
export const noopJobType = defineJobType({
  name: 'noop',
  description: 'Does nothing and succeeds at once; measures the job path itself.',
  paramsSchema: z.object({}).strict(),
  concurrency: 50,
  batchSize: 25,
  timeoutMs: 30 * second,
  cancelGraceMs: second,
  retry: { defaultMaxAttempts: 1, delayMs: second, backoff: false, maxDelayMs: second },
  async run() {
    return {};
  },
});

/** Sleeps, reporting progress every second; honours cancellation; can be told to fail. */
export const sleepJobType = defineJobType({
  name: 'sleep',
  description: 'Sleeps for `seconds` (0 to 3600), reporting progress every second; with `fail`, fails at the end.',
  paramsSchema: z
    .object({
      seconds: z.number().min(0).max(3600),
      fail: z.boolean().default(false),
    })
    .strict(),
  concurrency: 20,
  batchSize: 1,
  timeoutMs: 65 * minute,
  cancelGraceMs: 5 * second,
  retry: { defaultMaxAttempts: 1, delayMs: second, backoff: true, maxDelayMs: minute },
  async run({ params, signal, progress, log }) {
    const totalMs = params.seconds * 1000;
    const started = Date.now();
    log(`sleeping for ${params.seconds} s`);
    while (Date.now() - started < totalMs) {
      const elapsed = Date.now() - started;
      await sleep(Math.min(second, totalMs - elapsed), undefined, { signal });
      const done = Math.min(totalMs, Date.now() - started);
      progress(totalMs === 0 ? 100 : Math.floor((done / totalMs) * 100), `slept ${Math.floor(done / 1000)} of ${params.seconds} s`);
    }
    if (params.fail) throw new Error('failing as asked (fail: true)');
    log('done');
    return { sleptSeconds: params.seconds };
  },
});

export const builtinJobTypes = [noopJobType, sleepJobType];
