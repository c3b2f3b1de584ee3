/**
 * `npm start` as an operator runs it: the real entry point in a child process, with the
 * embedded PostgreSQL under a fresh DATA_DIR, a generated admin password printed once,
 * and a clean stop on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { createYardmasterClient } from '../clients/ts/src/node.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

const repoRoot = path.resolve(import.meta.dirname, '..');
const scratch: string[] = [];
afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

function startServer(env: Record<string, string>): Promise<ServerProcess> {
  return startServerProcess(env);
}

test('first start creates the admin with a printed password; later starts keep the data and print nothing', async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-start-'));
  scratch.push(dataDir);
  // mkdtemp makes a private (700) directory; as root, the postgres OS user must be able to enter it.
  await chmod(dataDir, 0o755);

  const first = await startServer({ DATA_DIR: dataDir });
  const password = /with the password:\s+(\S+)/.exec(first.output())?.[1];
  expect(password, first.output()).toBeDefined();
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

  const second = await startServer({ DATA_DIR: dataDir });
  expect(second.output()).not.toContain('with the password');
  const again = createYardmasterClient({ baseUrl: second.url });
  await again.login('admin', password!);
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);
}, 120_000);

test('bad configuration stops start-up with one line per variable', async () => {
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: repoRoot,
    env: { PATH: process.env['PATH'] ?? '', PORT: 'eighty', ACCESS_TOKEN_TTL: 'soon', LOG_LEVEL: 'loud' },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  expect(code).toBe(2);
  const lines = stderr.trim().split('\n');
  expect(lines[0]).toBe('yardmaster: bad configuration');
  expect(lines.slice(1).map((line) => line.split(':')[0]).sort()).toEqual(['ACCESS_TOKEN_TTL', 'LOG_LEVEL', 'PORT']);
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
