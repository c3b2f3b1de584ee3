/**
 * Figure (a): end-to-end noop throughput. N noop jobs go in through the RPC API of a real
 * server process and are counted SUCCEEDED on a WatchJobs stream; the baseline is raw
 * pg-boss doing the same: the same N jobs inserted in the same batches, worked by
 * `boss.work` with the settings our runner gives the noop queue, on the same PostgreSQL.
 *
 *   npx node bench/job-throughput.ts [--jobs 5000] [--batch 100] [--concurrency 4] [--rounds 3]
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { JobResult, PgBoss } from 'pg-boss';
import { JobStatus } from '../gen/yardmaster/v1/jobs_pb.ts';
import { createYardmasterClient, type YardmasterClient } from '../clients/ts/src/node.ts';
import { noopJobType } from '../src/jobs/builtin-job-types.ts';
import { workOptionsOf } from '../src/jobs/job-runner.ts';
import { createLogger } from '../src/platform/logger.ts';
import { ensureQueues, pgBossSchema, startPgBoss } from '../src/platform/queue/pg-boss.ts';
import {
  adminPassword,
  backendsCpuMs,
  chunks,
  describeMachine,
  mapConcurrently,
  median,
  positiveFlag,
  processCpuMs,
  printSummary,
  query,
  startBenchPostgres,
  startServerProcess,
  type BenchPostgres,
  type Figure,
  type ServerProcess,
} from './support.ts';

export interface ThroughputOptions {
  /** Jobs per measured round. */
  jobs: number;
  /** Jobs per BatchCreateJobs call (and per raw `boss.insert`); 1 uses CreateJob (and `boss.send`). */
  batch: number;
  /** Submission calls in flight at once. */
  concurrency: number;
  /** Measured rounds of each side, alternating; the figure is their median. */
  rounds: number;
}

export const throughputDefaults: ThroughputOptions = { jobs: 5000, batch: 100, concurrency: 4, rounds: 3 };

const roundTimeoutMs = 90_000;

/** One side of the comparison: submits `jobs` jobs and resolves when every one has finished. */
export interface Side {
  round(jobs: number): Promise<{ submitMs: number; totalMs: number }>;
  /** CPU time used so far by the processes that do this side's work, apart from PostgreSQL. */
  cpuMs(): number;
  close(): Promise<void>;
}

/** Resolves when a counter reaches a target; the counter only grows. */
export class Counter {
  value = 0;
  readonly #waiters: { target: number; resolve: () => void }[] = [];

  add(amount: number): void {
    this.value += amount;
    for (const waiter of this.#waiters.filter((candidate) => candidate.target <= this.value)) {
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }

  reach(target: number, describe: () => Promise<string>): Promise<void> {
    if (this.value >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        void describe().then((state) => reject(new Error(`timed out at ${this.value} of ${target}: ${state}`)));
      }, roundTimeoutMs);
      this.#waiters.push({
        target,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }
}

/** Raw pg-boss in this process: insert, work with a do-nothing handler, wait until completed in the table. */
async function startRawSide(databaseUrl: string, options: ThroughputOptions): Promise<Side> {
  const boss: PgBoss = await startPgBoss({ url: databaseUrl, logger: createLogger('warn') });
  await ensureQueues(boss, [noopJobType]);
  const handled = new Counter();
  await boss.work(noopJobType.name, workOptionsOf(noopJobType), async (entries): Promise<JobResult[]> => {
    handled.add(entries.length);
    return entries.map((entry) => ({ id: entry.id, status: 'completed' }));
  });
  const completedCount = async () => {
    const [row] = await query<{ n: number }>(
      databaseUrl,
      `select count(*)::int as n from ${pgBossSchema}.job where name = $1 and state = 'completed'`,
      [noopJobType.name],
    );
    return row!.n;
  };
  // The same queue options per entry as JobsService gives a noop job.
  const entry = () => ({
    id: randomUUID(),
    data: { jobId: randomUUID() },
    priority: 0,
    retryLimit: noopJobType.retry.defaultMaxAttempts - 1,
  });
  let target = 0;
  return {
    async round(jobs) {
      target += jobs;
      const started = performance.now();
      await mapConcurrently(chunks(Array.from({ length: jobs }, entry), options.batch), options.concurrency, async (chunk) => {
        if (chunk.length === 1) {
          const { id, data, ...sendOptions } = chunk[0]!;
          await boss.send(noopJobType.name, data, { id, ...sendOptions });
        } else {
          await boss.insert(noopJobType.name, chunk);
        }
      });
      const submitMs = performance.now() - started;
      await handled.reach(target, async () => `${await completedCount()} completed in the table`);
      // The handler has returned for every job; pg-boss marks each batch completed right after.
      while ((await completedCount()) < target) await new Promise((resolve) => setTimeout(resolve, 5));
      return { submitMs, totalMs: performance.now() - started };
    },
    cpuMs() {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1000;
    },
    async close() {
      await boss.stop({ graceful: true, timeout: 5000 });
    },
  };
}

/**
 * Our server as its own process: BatchCreateJobs (or CreateJob) of `type` (noop unless
 * told) over gRPC, SUCCEEDED counted on WatchJobs.
 */
export async function startOurSide(server: ServerProcess, options: ThroughputOptions, type = noopJobType.name): Promise<Side> {
  const client: YardmasterClient = createYardmasterClient({ baseUrl: server.url, protocol: 'grpc' });
  await client.login('admin', adminPassword);
  const succeeded = new Counter();
  const watching = new AbortController();
  let live: () => void = () => {};
  const isLive = new Promise<void>((resolve) => (live = resolve));
  const stream = (async () => {
    const messages = client.jobs.watchJobs(
      { filter: { types: [type], statuses: [JobStatus.SUCCEEDED] } },
      { signal: watching.signal },
    );
    for await (const message of messages) {
      // The first message is a heartbeat: from then on, every matching event reaches this stream.
      live();
      if (message.job?.status === JobStatus.SUCCEEDED) succeeded.add(1);
    }
  })().catch((error: unknown) => {
    if (!watching.signal.aborted) throw error;
  });
  await isLive;
  const describe = async () => {
    const stats = await client.jobs.getJobStats({ filter: { types: [type] } });
    return JSON.stringify(Object.fromEntries(Object.entries(stats.countsByStatus).map(([status, count]) => [status, Number(count)])));
  };
  let target = 0;
  return {
    async round(jobs) {
      target += jobs;
      const started = performance.now();
      const requests = Array.from({ length: jobs }, () => ({ type }));
      await mapConcurrently(chunks(requests, options.batch), options.concurrency, async (chunk) => {
        if (chunk.length === 1) await client.jobs.createJob(chunk[0]!);
        else await client.jobs.batchCreateJobs({ requests: chunk });
      });
      const submitMs = performance.now() - started;
      await succeeded.reach(target, describe);
      return { submitMs, totalMs: performance.now() - started };
    },
    cpuMs: () => processCpuMs(server.pid),
    async close() {
      watching.abort();
      await stream;
      client.close();
    },
  };
}

export async function measureJobThroughput(postgres: BenchPostgres, options: ThroughputOptions): Promise<Figure[]> {
  const work = workOptionsOf(noopJobType);
  console.log(
    `job throughput: ${options.jobs} noop jobs per round, ${options.rounds} rounds per side; ` +
      `${options.batch === 1 ? 'CreateJob / boss.send' : `batches of ${options.batch} (BatchCreateJobs / boss.insert)`}, ${options.concurrency} calls in flight; ` +
      `queue worked with batchSize ${work.batchSize}, localConcurrency ${work.localConcurrency}, LISTEN/NOTIFY on a notify queue`,
  );
  const databases = { ours: 'bench_throughput_ours', raw: 'bench_throughput_raw' };
  const server = await startServerProcess(await postgres.createDatabase(databases.ours));
  const raw = await startRawSide(await postgres.createDatabase(databases.raw), options);
  let ours: Side | undefined;
  try {
    ours = await startOurSide(server, options);
    const warmUp = Math.min(options.jobs, 500);
    await raw.round(warmUp);
    await ours.round(warmUp);
    const rates = { raw: [] as number[], ours: [] as number[] };
    // CPU per job is steadier than the rate when other work shares the machine.
    const processCpu = { raw: [] as number[], ours: [] as number[] };
    const postgresCpu = { raw: [] as number[], ours: [] as number[] };
    for (let round = 1; round <= options.rounds; round++) {
      for (const [name, side] of [
        ['raw', raw],
        ['ours', ours],
      ] as const) {
        const cpuBefore = side.cpuMs();
        const backendsBefore = backendsCpuMs(databases[name]);
        const { submitMs, totalMs } = await side.round(options.jobs);
        processCpu[name].push((side.cpuMs() - cpuBefore) / options.jobs);
        postgresCpu[name].push((backendsCpuMs(databases[name]) - backendsBefore) / options.jobs);
        const rate = options.jobs / (totalMs / 1000);
        rates[name].push(rate);
        console.log(
          `  round ${round} ${name.padEnd(4)}: ${Math.round(rate)} jobs/s (all submitted after ${Math.round(submitMs)} ms, all finished after ${Math.round(totalMs)} ms); ` +
            `CPU per job: ${name === 'ours' ? 'server' : 'pg-boss process'} ${processCpu[name].at(-1)!.toFixed(2)} ms, PostgreSQL ${postgresCpu[name].at(-1)!.toFixed(2)} ms`,
        );
      }
    }
    const spread = (values: number[]) => `${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))}`;
    const cpu = (name: 'raw' | 'ours') => `${median(processCpu[name]).toFixed(2)} + ${median(postgresCpu[name]).toFixed(2)} ms`;
    return [
      {
        name: 'noop throughput',
        unit: 'jobs/s',
        ours: median(rates.ours),
        baseline: median(rates.raw),
        baselineName: 'raw pg-boss, same queue settings',
        notes: [
          `${options.jobs} jobs, median of ${options.rounds} rounds (ours ${spread(rates.ours)}, raw ${spread(rates.raw)} jobs/s)`,
          `ours: server process, ${options.batch === 1 ? 'CreateJob' : `BatchCreateJobs of ${options.batch}`} over gRPC (HTTP/2), ${options.concurrency} in flight, until all SUCCEEDED on WatchJobs`,
          `raw: ${options.batch === 1 ? 'boss.send' : `boss.insert of ${options.batch}`}, ${options.concurrency} in flight, boss.work batchSize ${work.batchSize} x localConcurrency ${work.localConcurrency}, until all completed`,
          `CPU per job (process + its PostgreSQL backends): ours ${cpu('ours')} (server + backends), raw ${cpu('raw')} (pg-boss process + backends)`,
        ],
      },
    ];
  } finally {
    await ours?.close();
    await raw.close();
    await server.stop();
  }
}

/** Command-line flags of this figure (bench/run.ts accepts them too). */
export const throughputFlags = {
  jobs: { type: 'string' },
  batch: { type: 'string' },
  concurrency: { type: 'string' },
  rounds: { type: 'string' },
} as const;

export function throughputOptionsFrom(values: Record<string, unknown>): ThroughputOptions {
  const options = {
    jobs: positiveFlag(values, 'jobs', throughputDefaults.jobs),
    batch: positiveFlag(values, 'batch', throughputDefaults.batch),
    concurrency: positiveFlag(values, 'concurrency', throughputDefaults.concurrency),
    rounds: positiveFlag(values, 'rounds', throughputDefaults.rounds),
  };
  if (options.batch > 1000) throw new Error('--batch must be at most 1000 (the BatchCreateJobs limit)');
  return options;
}

if (import.meta.main) {
  const options = throughputOptionsFrom(parseArgs({ options: throughputFlags }).values);
  const postgres = await startBenchPostgres();
  try {
    const figures = await measureJobThroughput(postgres, options);
    printSummary(figures, describeMachine(postgres.version));
  } finally {
    await postgres.stop();
  }
}
