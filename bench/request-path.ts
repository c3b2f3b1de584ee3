/**
 * The request-path figures: what an authenticated call costs next to a bare connect-node
 * handler on the same Node and the same transport, at a fixed concurrency.
 *
 * - GetJob over gRPC (HTTP/2, h2c): `--rpc-connections` sessions x `--rpc-streams` calls in
 *   flight each, from bench/grpc-load.ts (worker threads, pre-encoded frames).
 * - GetJob over Connect JSON (HTTP/1.1): autocannon 9 in a process of its own, with
 *   `--rpc-connections` keep-alive connections.
 * - CreateJob over gRPC, as GetJob (the jobs run a day later, so only the call is measured).
 *
 * Ours: `node src/main.ts`, signed in as the admin with an access token (each call checks
 * it, authorises the method from the contract, reads or writes the job). Baseline:
 * bench/bare-rpc-server.ts, the same methods answering a fixed Job without auth or
 * database. Both are child processes; the two sides alternate, round by round, and the
 * medians are reported with p50/p99 latency, the server's CPU time per call and RSS.
 *
 *   npx node bench/request-path.ts [--rpc-seconds 5] [--rpc-rounds 3] [--rpc-connections 16] [--rpc-streams 8]
 *                                  [--rpc-only 'GetJob over gRPC'] [--rpc-jobs 256]
 *
 * `--rpc-jobs N`: GetJob over gRPC reads N different jobs in turn (256 unless told: ours
 * gathers the reads of one event-loop turn into one statement, and with one job that
 * statement would always carry one id, which flatters it).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { CreateJobRequestSchema, GetJobRequestSchema } from '../gen/yardmaster/v1/jobs_pb.ts';
import { createYardmasterClient } from '../clients/ts/src/node.ts';
import { runGrpcLoad } from './grpc-load.ts';
import {
  adminPassword,
  describeMachine,
  median,
  percentile,
  positiveFlag,
  printSummary,
  processCpuMs,
  repoRoot,
  startBenchPostgres,
  startNodeProcess,
  startServerProcess,
  type BenchPostgres,
  type Figure,
  type ServerProcess,
} from './support.ts';

/** Different jobs GetJob over gRPC reads in turn unless `--rpc-jobs` says otherwise. */
const defaultGetJobIds = 256;

export interface RequestPathOptions {
  /** Length of one measured run of one side. */
  seconds: number;
  /** Runs of each side per scenario (alternating); medians are reported. */
  rounds: number;
  /** HTTP/2 sessions (gRPC) or HTTP/1.1 connections (Connect JSON). */
  connections: number;
  /** Calls in flight per HTTP/2 session. */
  streams: number;
  /** Only the scenarios whose name contains this (to profile one alone). */
  only: string | undefined;
  /** Different jobs GetJob over gRPC reads in turn (256 unless told). */
  jobs?: number;
}

export const requestPathDefaults: RequestPathOptions = { seconds: 5, rounds: 3, connections: 16, streams: 8, only: undefined };

/** One run of one side: OK calls per second, latency percentiles and the server's CPU time per call. */
interface Run {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerCall: number;
  failed: number;
  firstFailure: string | undefined;
}

interface Scenario {
  name: string;
  run(server: ServerProcess, seconds: number): Promise<Omit<Run, 'cpuMsPerCall'> & { calls: number }>;
}

const getJobPath = '/yardmaster.v1.JobsService/GetJob';
const createJobPath = '/yardmaster.v1.JobsService/CreateJob';

function grpcScenario(
  name: string,
  procedurePath: string,
  message: Uint8Array,
  headers: Record<string, string>,
  options: RequestPathOptions,
  messages?: Uint8Array[],
): Scenario {
  return {
    name,
    async run(server, seconds) {
      const result = await runGrpcLoad({
        url: server.url,
        path: procedurePath,
        headers,
        message,
        messages,
        connections: options.connections,
        streamsPerConnection: options.streams,
        durationMs: seconds * 1000,
        threads: 1,
      });
      const latencies = [...result.latenciesMs];
      return {
        calls: result.ok,
        perSecond: (result.ok / result.elapsedMs) * 1000,
        p50Ms: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        failed: result.failed,
        firstFailure: result.firstFailure,
      };
    },
  };
}

interface AutocannonResult {
  '2xx': number;
  non2xx: number;
  errors: number;
  duration: number;
  latency: { p50: number; p99: number };
}

/** autocannon 9 as a process of its own (its CLI, JSON out), so it shares no event loop with anything measured. */
function connectJsonScenario(
  name: string,
  procedurePath: string,
  body: string,
  headers: Record<string, string>,
  options: RequestPathOptions,
): Scenario {
  return {
    name,
    async run(server, seconds) {
      const args = [
        path.join(repoRoot, 'node_modules/autocannon/autocannon.js'),
        '--json',
        '-c',
        String(options.connections),
        '-d',
        String(seconds),
        '-m',
        'POST',
        '-H',
        'content-type=application/json',
        ...Object.entries(headers).flatMap(([key, value]) => ['-H', `${key}=${value}`]),
        '-b',
        body,
        server.url + procedurePath,
      ];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'] });
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      if (code !== 0) throw new Error(`autocannon exited with ${code}`);
      const result = JSON.parse(output) as AutocannonResult;
      return {
        calls: result['2xx'],
        perSecond: result['2xx'] / result.duration,
        p50Ms: result.latency.p50,
        p99Ms: result.latency.p99,
        failed: result.non2xx + result.errors,
        firstFailure: result.non2xx > 0 ? `${result.non2xx} non-2xx answers` : result.errors > 0 ? `${result.errors} errors` : undefined,
      };
    },
  };
}

async function measure(scenario: Scenario, server: ServerProcess, seconds: number): Promise<Run> {
  const cpuBefore = processCpuMs(server.pid);
  const result = await scenario.run(server, seconds);
  const cpuMs = processCpuMs(server.pid) - cpuBefore;
  return { ...result, cpuMsPerCall: result.calls > 0 ? cpuMs / result.calls : Number.NaN };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

function describeRuns(runs: Run[]): string {
  const failed = runs.reduce((sum, run) => sum + run.failed, 0);
  return (
    `${runs.map((run) => Math.round(run.perSecond)).join(' / ')} calls/s, p50 ${median(runs.map((run) => run.p50Ms)).toFixed(1)} ms, ` +
    `p99 ${median(runs.map((run) => run.p99Ms)).toFixed(1)} ms, ${(median(runs.map((run) => run.cpuMsPerCall)) * 1000).toFixed(0)} µs server CPU per call` +
    (failed > 0 ? `, ${failed} failed (${runs.find((run) => run.firstFailure)?.firstFailure})` : '')
  );
}

export async function measureRequestPath(postgres: BenchPostgres, options: RequestPathOptions = requestPathDefaults): Promise<Figure[]> {
  const databaseUrl = await postgres.createDatabase('yardmaster_bench_request_path');
  const ours = await startServerProcess(databaseUrl, { inspect: true });
  const bare = await startNodeProcess(path.join(repoRoot, 'bench/bare-rpc-server.ts'), { inspect: true });
  try {
    const client = createYardmasterClient({ baseUrl: ours.url });
    await client.login('admin', adminPassword);
    const accessToken = client.tokens!.accessToken;
    const runAfter = timestampFromMs(Date.now() + 24 * 3600_000);
    const { job } = await client.jobs.createJob({ type: 'noop', runAfter });
    const jobIds = [job!.id];
    while (jobIds.length < (options.jobs ?? defaultGetJobIds))
      jobIds.push((await client.jobs.createJob({ type: 'noop', runAfter })).job!.id);
    client.close();
    const headers = { authorization: `Bearer ${accessToken}` };
    const allScenarios = [
      grpcScenario(
        'GetJob over gRPC',
        getJobPath,
        toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { id: job!.id })),
        headers,
        options,
        jobIds.map((id) => toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { id }))),
      ),
      connectJsonScenario('GetJob over Connect JSON (HTTP/1.1)', getJobPath, JSON.stringify({ id: job!.id }), headers, options),
      grpcScenario(
        'CreateJob over gRPC',
        createJobPath,
        toBinary(CreateJobRequestSchema, create(CreateJobRequestSchema, { type: 'noop', runAfter })),
        headers,
        options,
      ),
    ];
    const scenarios = allScenarios.filter((scenario) => options.only === undefined || scenario.name.includes(options.only));
    const rssBefore = { ours: await ours.retainedRssBytes(), bare: await bare.retainedRssBytes() };
    const figures: Figure[] = [];
    for (const scenario of scenarios) {
      // A short warm-up of each side (JIT, connection pools), not counted.
      await measure(scenario, ours, 1);
      await measure(scenario, bare, 1);
      const runs: { ours: Run[]; bare: Run[] } = { ours: [], bare: [] };
      for (let round = 0; round < options.rounds; round++) {
        const order = round % 2 === 0 ? (['ours', 'bare'] as const) : (['bare', 'ours'] as const);
        for (const side of order) runs[side].push(await measure(scenario, side === 'ours' ? ours : bare, options.seconds));
      }
      console.log(`${scenario.name}: ours ${describeRuns(runs.ours)}`);
      console.log(`${scenario.name}: bare ${describeRuns(runs.bare)}`);
      const concurrency = scenario.name.includes('gRPC')
        ? `${options.connections} connections x ${options.streams} streams`
        : `${options.connections} connections`;
      figures.push({
        name: scenario.name,
        unit: 'calls/s',
        ours: median(runs.ours.map((run) => run.perSecond)),
        baseline: median(runs.bare.map((run) => run.perSecond)),
        baselineName: 'bare connect-node handler',
        notes: [
          `${concurrency}, ${options.rounds} rounds of ${options.seconds} s per side, alternating; medians`,
          `ours: ${describeRuns(runs.ours)}`,
          `bare: ${describeRuns(runs.bare)}`,
        ],
      });
    }
    const rssAfter = { ours: await ours.retainedRssBytes(), bare: await bare.retainedRssBytes() };
    figures[0]?.notes.push(
      `server RSS after a full GC, before / after all request-path runs: ours ${mib(rssBefore.ours)} / ${mib(rssAfter.ours)}, bare ${mib(rssBefore.bare)} / ${mib(rssAfter.bare)}`,
    );
    return figures;
  } finally {
    await ours.stop();
    await bare.stop();
  }
}

export const requestPathFlags = {
  'rpc-seconds': { type: 'string' },
  'rpc-rounds': { type: 'string' },
  'rpc-connections': { type: 'string' },
  'rpc-streams': { type: 'string' },
  'rpc-only': { type: 'string' },
  'rpc-jobs': { type: 'string' },
} as const;

export function requestPathOptionsFrom(values: Record<string, unknown>): RequestPathOptions {
  return {
    seconds: positiveFlag(values, 'rpc-seconds', requestPathDefaults.seconds),
    rounds: positiveFlag(values, 'rpc-rounds', requestPathDefaults.rounds),
    connections: positiveFlag(values, 'rpc-connections', requestPathDefaults.connections),
    streams: positiveFlag(values, 'rpc-streams', requestPathDefaults.streams),
    only: values['rpc-only'] as string | undefined,
    jobs: positiveFlag(values, 'rpc-jobs', defaultGetJobIds),
  };
}

if (import.meta.main) {
  const options = requestPathOptionsFrom(parseArgs({ options: requestPathFlags }).values);
  const postgres = await startBenchPostgres();
  try {
    const figures = await measureRequestPath(postgres, options);
    printSummary(figures, describeMachine(postgres.version));
  } finally {
    await postgres.stop();
  }
}
