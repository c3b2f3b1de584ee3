/**
 * Runs `yard` as a person or a script does: a child process of this Node on the CLI's
 * entry (clients/cli/bin/yard.js, from its TypeScript sources through the
 * `@yardmaster/source` condition), with a configuration directory of its own.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const repoRoot = path.resolve(import.meta.dirname, '../..');
const entry = path.join(repoRoot, 'clients/cli/bin/yard.js');
const peakMemoryReporter = path.join(import.meta.dirname, 'report-peak-memory.ts');

export interface YardResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Peak resident memory of the process, in bytes (with `measureMemory`). */
  peakRss?: number;
}

/** A user of `yard`: one configuration directory (profiles, session files) and one server. */
export interface Terminal {
  configDir: string;
  run(args: string[], options?: { input?: string; measureMemory?: boolean; cwd?: string }): Promise<YardResult>;
  close(): Promise<void>;
}

export async function openTerminal(serverUrl: string): Promise<Terminal> {
  const configDir = await mkdtemp(path.join(tmpdir(), 'yard-config-'));
  return {
    configDir,
    async run(args, options = {}) {
      const peakFile = options.measureMemory ? path.join(configDir, `peak-${process.hrtime.bigint()}`) : undefined;
      // Measured runs keep V8's young generation at 1 MiB per semi-space: by default it grows
      // to 16 MiB ones when much is allocated, tens of MiB of slack that would hide (or fake)
      // a difference between two transfers.
      const measuring = peakFile ? ['--max-semi-space-size=1', '--import', peakMemoryReporter] : [];
      const nodeArgs = ['--conditions=@yardmaster/source', ...measuring, entry, ...args];
      const child = spawn(process.execPath, nodeArgs, {
        cwd: options.cwd ?? configDir,
        env: {
          ...process.env,
          YARD_CONFIG_DIR: configDir,
          YARD_SERVER: serverUrl,
          YARD_PROFILE: '',
          YARD_API_KEY: '',
          NO_COLOR: '1',
          ...(peakFile ? { YARD_TEST_PEAK_FILE: peakFile } : {}),
        },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
      });
      child.stdin.end(options.input ?? '');
      const code = await new Promise<number>((resolve) => child.on('close', (exitCode) => resolve(exitCode ?? -1)));
      const peakRss = peakFile ? Number(await readFile(peakFile, 'utf8')) : undefined;
      return { code, stdout, stderr, peakRss };
    },
    close: () => rm(configDir, { recursive: true, force: true }),
  };
}

/** A terminal signed in as this account (`yard login --password-stdin`). */
export async function signedInTerminal(serverUrl: string, username: string, password: string): Promise<Terminal> {
  const terminal = await openTerminal(serverUrl);
  const login = await terminal.run(['login', '--username', username, '--password-stdin'], { input: `${password}\n` });
  if (login.code !== 0) throw new Error(`yard login failed (${login.code}): ${login.stderr}`);
  return terminal;
}
