/**
 * `npm run bench`: every figure, each next to its baseline measured in the same run, on
 * one embedded PostgreSQL, then one summary table with the machine it ran on. To run
 * one figure alone: `npx node bench/job-throughput.ts`, `npx node bench/external-workers.ts`,
 * `npx node bench/event-latency.ts`, `npx node bench/file-transfer.ts` or `npx node bench/request-path.ts`.
 *
 *   npm run bench -- [--jobs 5000] [--batch 100] [--concurrency 4] [--rounds 3]
 *                    [--streams 1000] [--connections 10] [--latency-jobs 60] [--interval-ms 500]
 *                    [--file-mib 1024] [--worker-jobs 2000] [--workers 4] [--claim 50]
 *                    [--rpc-seconds 5] [--rpc-rounds 3] [--rpc-connections 16] [--rpc-streams 8]
 */
import { parseArgs } from 'node:util';
import { externalWorkerFlags, externalWorkerOptionsFrom, measureExternalWorkers } from './external-workers.ts';
import { latencyFlags, latencyOptionsFrom, measureEventLatency } from './event-latency.ts';
import { measureFileTransfer, transferFlags, transferOptionsFrom } from './file-transfer.ts';
import { measureJobThroughput, throughputFlags, throughputOptionsFrom } from './job-throughput.ts';
import { measureRequestPath, requestPathFlags, requestPathOptionsFrom } from './request-path.ts';
import { describeMachine, printSummary, startBenchPostgres } from './support.ts';

const { values } = parseArgs({
  options: { ...throughputFlags, ...externalWorkerFlags, ...latencyFlags, ...transferFlags, ...requestPathFlags },
});
const throughput = throughputOptionsFrom(values);
const latency = latencyOptionsFrom(values);
const transfer = transferOptionsFrom(values);
const externalWorkers = externalWorkerOptionsFrom(values);
const requestPath = requestPathOptionsFrom(values);

const postgres = await startBenchPostgres();
try {
  const figures = [
    ...(await measureJobThroughput(postgres, throughput)),
    ...(await measureExternalWorkers(postgres, externalWorkers)),
    ...(await measureEventLatency(postgres, latency)),
    ...(await measureFileTransfer(postgres, transfer)),
    ...(await measureRequestPath(postgres, requestPath)),
  ];
  printSummary(figures, describeMachine(postgres.version));
} finally {
  await postgres.stop();
}
