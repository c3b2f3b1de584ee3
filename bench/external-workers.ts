/**
 * Figure: external-worker throughput. N do-nothing jobs of a declared type go in through
 * BatchCreateJobs and are run by W workers in this process, each a loop of ClaimJobs
 * (long poll, up to `claim` jobs) and one CompleteJob per job over gRPC; the baseline is
 * the in-process noop path of the same server process in the same run (the same N jobs,
 * the same submission), both counted SUCCEEDED on WatchJobs.
 *
 *   npx node bench/external-workers.ts [--jobs 2000] [--batch 100] [--workers 4] [--claim 50] [--rounds 3]
 */
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { parseArgs } from 'node:util';
import { createYardmasterClient, type YardmasterClient } from '../clients/ts/src/node.ts';
import { Role } from '../gen/yardmaster/v1/common_pb.ts';
import { startOurSide, type Side } from './job-throughput.ts';
import {
  adminPassword,
  describeMachine,
  median,
  positiveFlag,
  printSummary,
  startBenchPostgres,
  startServerProcess,
  type BenchPostgres,
  type Figure,
} from './support.ts';

export interface ExternalWorkerOptions {
  jobs: number;
  batch: number;
  workers: number;
  /** max_jobs of each ClaimJobs. */
  claim: number;
  rounds: number;
}

export const externalWorkerDefaults: ExternalWorkerOptions = { jobs: 2000, batch: 100, workers: 4, claim: 50, rounds: 3 };

const benchType = 'bench-external';

/** W worker loops: claim a batch, complete each job, until stopped. */
function runWorkers(clients: YardmasterClient[], claim: number, signal: AbortSignal): Promise<void[]> {
  return Promise.all(
    clients.map(async (client, index) => {
      const workerId = `bench-worker-${index}`;
      while (!signal.aborted) {
        let jobs;
        try {
          ({ jobs } = await client.worker.claimJobs({ workerId, queues: [benchType], maxJobs: claim, wait: durationFromMs(2000) }, { signal }));
        } catch (error) {
          if (signal.aborted) return;
          throw error;
        }
        await Promise.all(jobs.map((claimed) => client.worker.completeJob({ jobId: claimed.job!.id, workerId, result: {} })));
      }
    }),
  );
}

export async function measureExternalWorkers(postgres: BenchPostgres, options: ExternalWorkerOptions): Promise<Figure[]> {
  console.log(
    `external workers: ${options.jobs} jobs per round, ${options.rounds} rounds per side; BatchCreateJobs of ${options.batch}; ` +
      `${options.workers} workers claiming up to ${options.claim} at a time, one CompleteJob per job, over gRPC`,
  );
  const server = await startServerProcess(await postgres.createDatabase('bench_external_workers'));
  const admin = createYardmasterClient({ baseUrl: server.url, protocol: 'grpc' });
  const workers: YardmasterClient[] = [];
  const stopWorkers = new AbortController();
  let running: Promise<void[]> | undefined;
  const sides: { name: 'in-process' | 'external'; side: Side }[] = [];
  try {
    await admin.login('admin', adminPassword);
    await admin.admin.createJobType({ jobType: { name: benchType, description: 'does nothing, elsewhere', lease: durationFromMs(60_000) } });
    await admin.admin.createUser({ username: 'bench-worker', email: 'bench-worker@example.com', password: 'bench-worker-password', role: Role.WORKER });
    for (let index = 0; index < options.workers; index++) {
      const client = createYardmasterClient({ baseUrl: server.url, protocol: 'grpc' });
      await client.login('bench-worker', 'bench-worker-password');
      workers.push(client);
    }
    running = runWorkers(workers, options.claim, stopWorkers.signal);
    const throughput = { jobs: options.jobs, batch: options.batch, concurrency: 4, rounds: options.rounds };
    sides.push({ name: 'in-process', side: await startOurSide(server, throughput) });
    sides.push({ name: 'external', side: await startOurSide(server, throughput, benchType) });
    for (const { side } of sides) await side.round(Math.min(options.jobs, 200));
    const rates = { 'in-process': [] as number[], external: [] as number[] };
    for (let round = 1; round <= options.rounds; round++) {
      for (const { name, side } of sides) {
        const { totalMs } = await side.round(options.jobs);
        rates[name].push(options.jobs / (totalMs / 1000));
        console.log(`  round ${round} ${name.padEnd(10)}: ${Math.round(rates[name].at(-1)!)} jobs/s`);
      }
    }
    const spread = (values: number[]) => `${Math.round(Math.min(...values))}-${Math.round(Math.max(...values))}`;
    return [
      {
        name: 'external-worker throughput',
        unit: 'jobs/s',
        ours: median(rates.external),
        baseline: median(rates['in-process']),
        baselineName: 'in-process noop, same server',
        notes: [
          `${options.jobs} jobs, median of ${options.rounds} rounds (external ${spread(rates.external)}, in-process ${spread(rates['in-process'])} jobs/s)`,
          `external: ${options.workers} workers in the bench process, ClaimJobs of up to ${options.claim} (long poll) then one CompleteJob per job, over gRPC`,
          `both: BatchCreateJobs of ${options.batch} over gRPC, until all SUCCEEDED on WatchJobs`,
        ],
      },
    ];
  } finally {
    for (const { side } of sides) await side.close();
    stopWorkers.abort();
    await running?.catch(() => undefined);
    for (const client of [admin, ...workers]) client.close();
    await server.stop();
  }
}

/** Command-line flags of this figure (bench/run.ts accepts them too). */
export const externalWorkerFlags = {
  'worker-jobs': { type: 'string' },
  workers: { type: 'string' },
  claim: { type: 'string' },
} as const;

export function externalWorkerOptionsFrom(values: Record<string, unknown>): ExternalWorkerOptions {
  return {
    jobs: positiveFlag(values, 'worker-jobs', externalWorkerDefaults.jobs),
    batch: positiveFlag(values, 'batch', externalWorkerDefaults.batch),
    workers: positiveFlag(values, 'workers', externalWorkerDefaults.workers),
    claim: positiveFlag(values, 'claim', externalWorkerDefaults.claim),
    rounds: positiveFlag(values, 'rounds', externalWorkerDefaults.rounds),
  };
}

if (import.meta.main) {
  const flags = { ...externalWorkerFlags, batch: { type: 'string' }, rounds: { type: 'string' } } as const;
  const options = externalWorkerOptionsFrom(parseArgs({ options: flags }).values);
  const postgres = await startBenchPostgres();
  try {
    printSummary(await measureExternalWorkers(postgres, options), describeMachine(postgres.version));
  } finally {
    await postgres.stop();
  }
}
