/**
 * Start-up time as a person sees it: from `npm start` to `/readyz` answering 200, with the
 * embedded PostgreSQL and storage, on a fresh DATA_DIR (a new cluster, migrations, the
 * first admin) and on a second start with the same one. Prints the median of the rounds
 * and, for the last round of each, the server's own start-up timeline (LOG_LEVEL=debug).
 *
 *   npx node bench/start-up.ts [--rounds 3]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { median, repoRoot } from './support.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const rounds = Number(values.rounds);

interface StartUp {
  ms: number;
  timeline: string[];
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `npm start` until /readyz says 200, then SIGTERM and wait for the exit. */
async function timeStartUp(dataDir: string): Promise<StartUp> {
  const port = await freePort();
  const began = performance.now();
  const child = spawn('npm', ['start', '--silent'], {
    cwd: repoRoot,
    env: { ...process.env, DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'debug', LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let ms: number | undefined;
  while (ms === undefined) {
    if (child.exitCode !== null) throw new Error(`npm start exited:\n${output}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) ms = performance.now() - began;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  // npm start is a shell and node below it: signal the whole group, as a terminal's Ctrl-C does.
  process.kill(-child.pid!, 'SIGTERM');
  await exited;
  // npm may exit before the server below it has finished stopping: the DATA_DIR lock says when it has.
  while (existsSync(path.join(dataDir, 'yardmaster.pid'))) await new Promise((resolve) => setTimeout(resolve, 20));
  const timeline = output
    .split('\n')
    .filter((line) => line.includes('"msg":"start-up"'))
    .map((line) => {
      const { step, ms: at } = JSON.parse(line) as { step: string; ms: number };
      return `${String(at).padStart(6)} ms  ${step}`;
    });
  return { ms, timeline };
}

const fresh: StartUp[] = [];
const second: StartUp[] = [];
for (let round = 0; round < rounds; round++) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-start-up-'));
  // As root, the postgres OS user must be able to enter it.
  await chmod(dataDir, 0o755);
  try {
    fresh.push(await timeStartUp(dataDir));
    second.push(await timeStartUp(dataDir));
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

for (const [name, runs] of [
  ['fresh DATA_DIR', fresh],
  ['second start', second],
] as const) {
  console.log(`${name}: median ${Math.round(median(runs.map((run) => run.ms)))} ms (${runs.map((run) => Math.round(run.ms)).join(', ')})`);
  console.log('  timeline of the last round (ms since the process started):');
  for (const line of runs.at(-1)!.timeline) console.log(`  ${line}`);
}
console.log(`machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} cores, node ${process.version}`);
