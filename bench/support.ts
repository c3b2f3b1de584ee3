/**
 * What the benchmark scripts share: a throw-away embedded PostgreSQL, the server as a
 * child process, percentiles, the machine's description and the summary table.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { startEmbeddedPostgres } from '../src/platform/db/embedded-postgres.ts';
import { createLogger } from '../src/platform/logger.ts';
import { queryDatabase } from '../test/support/query-database.ts';

export const repoRoot = path.resolve(import.meta.dirname, '..');
export const adminPassword = 'admin-password-for-benchmarks';

/** One result line: our figure next to the baseline measured in the same run. */
export interface Figure {
  name: string;
  unit: string;
  ours: number;
  baseline: number;
  baselineName: string;
  /** Extra facts a reader needs to interpret the figure (settings, spread). */
  notes: string[];
}

export interface BenchPostgres {
  adminUrl: string;
  version: string;
  /** A new, empty database on this cluster; returns its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A PostgreSQL cluster in a temporary directory, deleted on stop. It runs with the
 * server defaults (durable commits), as `npm start` does.
 */
export async function startBenchPostgres(): Promise<BenchPostgres> {
  const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-bench-'));
  // As root, Postgres runs as the postgres OS user, which must be able to enter this directory.
  await chmod(scratchDir, 0o755);
  const embedded = await startEmbeddedPostgres({
    clusterDir: path.join(scratchDir, 'cluster'),
    database: 'postgres',
    logger: createLogger('warn'),
  });
  const [row] = await query<{ server_version: string }>(embedded.adminUrl, 'show server_version');
  return {
    adminUrl: embedded.adminUrl,
    version: row!.server_version,
    async createDatabase(name) {
      await query(embedded.adminUrl, `drop database if exists ${pg.escapeIdentifier(name)} with (force)`);
      await query(embedded.adminUrl, `create database ${pg.escapeIdentifier(name)}`);
      const url = new URL(embedded.adminUrl);
      url.pathname = `/${name}`;
      return url.toString();
    },
    async stop() {
      await embedded.stop();
      await rm(scratchDir, { recursive: true, force: true });
    },
  };
}

/** One query on a database over a connection of its own (the tests' helper). */
export const query = queryDatabase;

/** A Node.js server running as a child process of the benchmark. */
export interface ServerProcess {
  url: string;
  pid: number;
  /** Resident set size of the server process now, from /proc. */
  rssBytes(): number;
  /**
   * Resident set size after a full garbage collection: what the process retains, not
   * what it has allocated and not yet collected. Needs `inspect` at start.
   */
  retainedRssBytes(): Promise<number>;
  /** JavaScript heap in use after a full garbage collection (steadier than RSS). Needs `inspect` at start. */
  retainedHeapBytes(): Promise<number>;
  stop(): Promise<void>;
}

export interface NodeProcessOptions {
  env?: Record<string, string>;
  /** Open the inspector on a free local port, so that retainedRssBytes() can collect garbage. */
  inspect?: boolean;
}

/**
 * `node src/main.ts` on `databaseUrl`, on a free port, as a deployment runs it. Resolves
 * once its log says it is serving; its log is read and dropped from then on.
 */
export function startServerProcess(databaseUrl: string, { env = {}, inspect = false }: NodeProcessOptions = {}): Promise<ServerProcess> {
  return startNodeProcess(path.join(repoRoot, 'src/main.ts'), {
    env: { DATABASE_URL: databaseUrl, HOST: '127.0.0.1', PORT: '0', ADMIN_PASSWORD: adminPassword, ...env },
    inspect,
  });
}

/** Runs `script` with Node and resolves once it logs a JSON line with its "url" and the word "serving". */
export async function startNodeProcess(script: string, { env = {}, inspect = false }: NodeProcessOptions = {}): Promise<ServerProcess> {
  const nodeArgs = inspect ? ['--inspect=127.0.0.1:0'] : [];
  // BENCH_CPU_PROFILE_DIR=dir: the processes under test write a CPU profile there when they stop.
  if (process.env.BENCH_CPU_PROFILE_DIR) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE_DIR}`);
  const child = spawn(process.execPath, [...nodeArgs, script], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const recentLines: string[] = [];
  const remember = (line: string) => {
    recentLines.push(line);
    if (recentLines.length > 30) recentLines.shift();
  };
  let inspectorUrl: string | undefined;
  createInterface({ input: child.stderr! }).on('line', (line) => {
    remember(line);
    inspectorUrl ??= /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1];
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start within 60 s:\n${recentLines.join('\n')}`)), 60_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      remember(line);
      if (!line.includes('"url"') || !line.includes('serving')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${script} exited during start-up:\n${recentLines.join('\n')}`));
    });
  });
  return {
    url,
    pid: child.pid!,
    rssBytes: () => rssBytes(child),
    async retainedRssBytes() {
      if (!inspectorUrl) throw new Error(`${script} was not started with the inspector`);
      await collectGarbage(inspectorUrl);
      return rssBytes(child);
    },
    async retainedHeapBytes() {
      if (!inspectorUrl) throw new Error(`${script} was not started with the inspector`);
      return await collectGarbage(inspectorUrl);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * A full garbage collection in another Node process, through its inspector (Chrome
 * DevTools Protocol); resolves with the JavaScript heap in use after it.
 */
async function collectGarbage(inspectorUrl: string): Promise<number> {
  const socket = new WebSocket(inspectorUrl);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve(), { once: true });
      socket.addEventListener('error', () => reject(new Error(`cannot reach the inspector at ${inspectorUrl}`)), { once: true });
    });
    const call = (id: number, method: string) => {
      const answered = new Promise<{ result?: { usedSize?: number } }>((resolve) =>
        socket.addEventListener('message', (message) => resolve(JSON.parse(String(message.data))), { once: true }),
      );
      socket.send(JSON.stringify({ id, method }));
      return answered;
    };
    await call(1, 'HeapProfiler.collectGarbage');
    return (await call(2, 'Runtime.getHeapUsage')).result?.usedSize ?? 0;
  } finally {
    socket.close();
  }
}

/** Clock ticks per second of the CPU times in /proc (USER_HZ, 100 on Linux). */
const ticksPerSecond = 100;

/** CPU time (user and system) a process has used so far, from /proc; 0 once it is gone. */
export function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  } catch {
    return 0;
  }
}

/** CPU time used so far by the PostgreSQL backends now connected to `database` (they show it in their command line). */
export function backendsCpuMs(database: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').startsWith(`postgres: postgres ${database} `))
        total += processCpuMs(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return total;
}

function rssBytes(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const kilobytes = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (!kilobytes) throw new Error(`no VmRSS in /proc/${child.pid}/status`);
  return Number(kilobytes) * 1024;
}

/** The value below which `p` (0-100) percent of `values` fall (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = values.toSorted((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export async function mapConcurrently<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

/** The integer value of `--name`, which must be positive; `fallback` when absent. */
export function positiveFlag(values: Record<string, unknown>, name: string, fallback: number): number {
  const text = values[name];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got "${String(text)}"`);
  return value;
}

export function chunks<T>(items: T[], size: number): T[][] {
  const result: T[][] = [];
  for (let index = 0; index < items.length; index += size) result.push(items.slice(index, index + size));
  return result;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  postgres: string;
}

export function describeMachine(postgresVersion: string): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    postgres: postgresVersion,
  };
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** The summary: one row per figure with its baseline and ratio, then the notes and the machine. */
export function printSummary(figures: Figure[], machine: Machine): void {
  const rows = figures.map((figure) => [
    figure.name,
    `${formatNumber(figure.ours)} ${figure.unit}`,
    `${formatNumber(figure.baseline)} ${figure.unit}`,
    figure.baselineName,
    `${formatNumber(figure.ours / figure.baseline)}x`,
  ]);
  const header = ['figure', 'ours', 'baseline', 'baseline is', 'ours / baseline'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells.map((cell, column) => (column === 0 || column === 3 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  console.log('');
  console.log(line(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(row));
  console.log('');
  for (const figure of figures) {
    for (const note of figure.notes) console.log(`  ${figure.name}: ${note}`);
  }
  console.log('');
  console.log(
    `machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; Node ${machine.node}; PostgreSQL ${machine.postgres} (embedded, default settings)`,
  );
}
