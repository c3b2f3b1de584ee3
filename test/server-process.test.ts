/**
 * `npm start` as an operator runs it: the real entry point in a child process, with the
 * embedded PostgreSQL under a fresh DATA_DIR, a generated admin password printed once,
 * and a clean stop on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, onTestFinished, test } from 'vitest';
import { createYardmasterClient } from '../clients/ts/src/node.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

const repoRoot = path.resolve(import.meta.dirname, '..');
const scratch: string[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  // A failed test may leave its server (and so its PostgreSQL, perhaps frozen) running.
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of scratch) {
    const [postmaster, ...backends] = postgresProcessesOf(dir);
    for (const pid of [postmaster, ...backends]) if (pid !== undefined && isAlive(pid)) process.kill(pid, 'SIGCONT');
    if (postmaster !== undefined && isAlive(postmaster)) process.kill(postmaster, 'SIGINT');
  }
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

async function startServer(env: Record<string, string>, options: { ownProcessGroup?: boolean } = {}): Promise<ServerProcess> {
  const server = await startServerProcess(env, options);
  children.push(server.child);
  return server;
}

test('first start creates the admin with a printed password; later starts keep the data and print nothing', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-start-'));
  scratch.push(dataDir);
  // mkdtemp makes a private (700) directory; as root, the postgres OS user must be able to enter it.
  await chmod(dataDir, 0o755);

  const first = await startServer({ DATA_DIR: dataDir });
  const password = /with the password:\s+(\S+)/.exec(first.output())?.[1];
  expect(password, first.output()).toBeDefined();
  // What a person reads last: the password block, then one line with the URL and how to call it.
  const lines = first.output().split('\n');
  const at = lines.indexOf(`    ${password}`);
  expect(lines.slice(at + 1, at + 4)).toEqual(['', 'It is shown this once. Change it with AuthService.ChangePassword.', '']);
  expect(lines[at + 4]).toContain(`serving Connect, gRPC and gRPC-Web at ${first.url}: try \`npx buf curl --list-methods ${first.url}\``);
  const client = createYardmasterClient({ baseUrl: first.url });
  await client.login('admin', password!);
  expect((await client.auth.getMe({})).user?.username).toBe('admin');
  const grpc = createYardmasterClient({ baseUrl: first.url, protocol: 'grpc', tokens: client.tokens });
  expect((await grpc.auth.getMe({})).user?.role).toBeGreaterThan(0);
  grpc.close();

  const postmasterPid = Number((await readFile(path.join(dataDir, 'postgres', 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  expect(first.output()).toContain('"msg":"stopped"');
  expect(isAlive(postmasterPid), 'the embedded PostgreSQL stops with the server').toBe(false);
  expect(existsSync(path.join(dataDir, 'postgres', 'data', 'postmaster.pid'))).toBe(false);

  // LOG_FORMAT=pretty gives the lines a person reads at a terminal (auto picks them on a TTY).
  const second = await startServer({ DATA_DIR: dataDir, LOG_FORMAT: 'pretty' });
  expect(second.output()).not.toContain('with the password');
  expect(second.output()).not.toContain('{"level"');
  expect(second.output()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: Yardmaster is serving/m);
  const again = createYardmasterClient({ baseUrl: second.url });
  await again.login('admin', password!);
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);
}, 120_000);

test('bad configuration stops start-up with one line per variable', async () => {
  const child = spawn(process.execPath, ['src/start.js'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', PORT: 'eighty', ACCESS_TOKEN_TTL: 'soon', LOG_LEVEL: 'loud' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code).toBe(2);
  const lines = stderr.trim().split('\n');
  expect(lines[0]).toBe('yardmaster: bad configuration');
  expect(
    lines
      .slice(1)
      .map((line) => line.split(':')[0])
      .sort(),
  ).toEqual(['ACCESS_TOKEN_TTL', 'LOG_LEVEL', 'PORT']);
});

async function freshDataDir(): Promise<string> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-start-'));
  scratch.push(dataDir);
  await chmod(dataDir, 0o755);
  return dataDir;
}

/** Runs the entry point until it exits: its code and everything it printed. */
async function runToExit(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['src/start.js'], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', ...env },
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, stdout, stderr };
}

/** The embedded PostgreSQL of a cluster under dataDir, if running: its postmaster, then its children. */
function postgresProcessesOf(dataDir: string): number[] {
  const parents = new Map<number, number>();
  const postmasters: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The backends rename themselves ("postgres: ... idle"); only the postmaster's command line names the directory.
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dataDir)) postmasters.push(Number(entry));
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const children = [...parents].filter(([, parent]) => postmasters.includes(parent)).map(([pid]) => pid);
  return [...postmasters, ...children];
}

/** A start-up that fails for a reason outside the server: one line on stderr, exit 1, nothing left running. */
function expectOneLineFailure(run: { code: number | null; stdout: string; stderr: string }, line: string | RegExp, dataDir: string): void {
  const output = run.stdout + run.stderr;
  expect(run.code, output).toBe(1);
  expect(run.stderr.trimEnd().split('\n'), output).toHaveLength(1);
  if (typeof line === 'string') expect(run.stderr).toBe(`yardmaster: ${line}\n`);
  else expect(run.stderr).toMatch(line);
  expect(output, 'no stack trace').not.toMatch(/\n\s+at /);
  expect(output).not.toContain('"level":"fatal"');
  expect(postgresProcessesOf(dataDir), 'no embedded PostgreSQL left running').toEqual([]);
  expect(existsSync(path.join(dataDir, 'yardmaster.pid')), 'the DATA_DIR lock is released').toBe(false);
}

test('a port already in use: one line, exit 1, and the embedded PostgreSQL it started is stopped', async () => {
  const dataDir = await freshDataDir();
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const { port } = holder.address() as net.AddressInfo;
  try {
    const run = await runToExit({ DATA_DIR: dataDir, PORT: String(port) });
    expectOneLineFailure(
      run,
      `port ${port} on 127.0.0.1 is already in use by another process: stop it, or set PORT to a free port`,
      dataDir,
    );
    expect(existsSync(path.join(dataDir, 'postgres', 'data', 'PG_VERSION')), 'the database was started before the port was tried').toBe(
      true,
    );
  } finally {
    holder.close();
  }
}, 120_000);

test('a DATA_DIR that cannot be written: one line, exit 1', async () => {
  const parent = await freshDataDir();
  // A file where a directory must be: unwritable even for root, which ignores permissions.
  await writeFile(path.join(parent, 'file'), 'not a directory');
  const dataDir = path.join(parent, 'file', 'data');
  const run = await runToExit({ DATA_DIR: dataDir });
  expectOneLineFailure(
    run,
    /^yardmaster: DATA_DIR \S+\/file\/data cannot be written \(ENOTDIR on \S+\): set DATA_DIR to a directory this user can write\n$/,
    dataDir,
  );
});

test('a DATABASE_URL nobody answers at: one line without the password, exit 1', async () => {
  const dataDir = await freshDataDir();
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const { port } = closed.address() as net.AddressInfo;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const run = await runToExit({ DATA_DIR: dataDir, DATABASE_URL: `postgres://ym:hunter2-secret@127.0.0.1:${port}/ym` });
  expectOneLineFailure(
    run,
    `cannot use the database at DATABASE_URL (postgres://ym:***@127.0.0.1:${port}/ym): connect ECONNREFUSED 127.0.0.1:${port}`,
    dataDir,
  );
  expect(run.stdout + run.stderr).not.toContain('hunter2');
});

test('a second server on the same DATA_DIR is refused with one line, and the first keeps its database', async () => {
  const dataDir = await freshDataDir();
  const first = await startServer({ DATA_DIR: dataDir });
  try {
    const postmasterPid = Number((await readFile(path.join(dataDir, 'postgres', 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const run = await runToExit({ DATA_DIR: dataDir });
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stderr).toBe(
      `yardmaster: DATA_DIR ${dataDir} is in use by another Yardmaster server (pid ${first.child.pid}): stop it first, or set DATA_DIR to another directory\n`,
    );
    expect(isAlive(postmasterPid), 'the first server keeps its PostgreSQL').toBe(true);
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
  } finally {
    expect(await first.stop()).toBe(0);
  }
  // The lock went with the first server: the next start takes the directory.
  const third = await startServer({ DATA_DIR: dataDir });
  expect(await third.stop()).toBe(0);
}, 120_000);

test('Ctrl-C at a terminal (SIGINT to the whole process group) stops the server in order, PostgreSQL last, exit 0', async () => {
  const dataDir = await freshDataDir();
  const server = await startServer({ DATA_DIR: dataDir }, { ownProcessGroup: true });
  const [postmaster] = postgresProcessesOf(dataDir);
  expect(postmaster).toBeDefined();
  process.kill(-server.child.pid!, 'SIGINT');
  expect(await server.exited, server.output()).toBe(0);
  expect(server.output()).toContain('"msg":"stopped"');
  expect(server.output()).not.toContain('terminating connection due to administrator command');
  expect(isAlive(postmaster!), 'the embedded PostgreSQL stopped with the server').toBe(false);
  expect(existsSync(path.join(dataDir, 'yardmaster.pid'))).toBe(false);
}, 120_000);

test('a closed terminal (SIGHUP) stops the server and its PostgreSQL, exit 0', async () => {
  const dataDir = await freshDataDir();
  const server = await startServer({ DATA_DIR: dataDir });
  const [postmaster] = postgresProcessesOf(dataDir);
  server.child.kill('SIGHUP');
  expect(await server.exited, server.output()).toBe(0);
  expect(server.output()).toContain('"msg":"stopped"');
  expect(isAlive(postmaster!), 'no orphaned PostgreSQL').toBe(false);
}, 120_000);

test('a shutdown stuck on a database that stopped answering ends at SHUTDOWN_TIMEOUT, says what was open, and exits 1', async () => {
  const dataDir = await freshDataDir();
  const server = await startServer({ DATA_DIR: dataDir, SHUTDOWN_TIMEOUT: '3s' });
  const stopped = postgresProcessesOf(dataDir);
  expect(stopped.length).toBeGreaterThan(0);
  // SIGSTOP freezes every PostgreSQL process: connections stay open and nothing answers,
  // as in an outage that leaves sockets half alive.
  for (const pid of stopped) process.kill(pid, 'SIGSTOP');
  const resume = () => {
    for (const pid of stopped) if (isAlive(pid)) process.kill(pid, 'SIGCONT');
  };
  onTestFinished(resume);
  const began = Date.now();
  server.child.kill('SIGTERM');
  expect(await server.exited).toBe(1);
  expect(Date.now() - began).toBeLessThan(15_000);
  expect(server.output()).toMatch(
    /"step":"the app \(jobs, queue, event fan-out, database pools\)","activeResources":\{[^}]*"TCPSocketWrap":\d+/,
  );
  expect(server.output()).toContain('shutdown did not finish within 3s: still waiting on the app');
  resume();
  // The stop it asked for on the way out lands once PostgreSQL runs again: no orphan.
  const deadline = Date.now() + 20_000;
  while (postgresProcessesOf(dataDir).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(postgresProcessesOf(dataDir)).toEqual([]);
}, 120_000);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
