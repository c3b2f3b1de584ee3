import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');

/** `node src/start.js` (what `npm start` runs) in a child process, as an operator runs it. */
export interface ServerProcess {
  child: ChildProcessWithoutNullStreams;
  url: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  exited: Promise<number | null>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts the server with `env` (plus PATH and HOME) and resolves once it serves. With
 * `ownProcessGroup`, it leads a process group, as a command started at a terminal does
 * (a Ctrl-C there signals the whole group).
 */
export function startServerProcess(
  env: Record<string, string>,
  { timeoutMs = 60_000, ownProcessGroup = false } = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['src/start.js'], {
    cwd: repoRoot,
    detached: ownProcessGroup,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', ...env },
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the server did not start:\n${output}`));
    }, timeoutMs);
    const poll = setInterval(() => {
      const match = /serving Connect, gRPC and gRPC-Web at (https?:\/\/\S+?): try/.exec(output);
      if (!match) return;
      clearInterval(poll);
      clearTimeout(timer);
      resolve({
        child,
        url: match[1]!,
        output: () => output,
        exited,
        stop: async () => {
          if (child.exitCode === null) child.kill('SIGTERM');
          return exited;
        },
      });
    }, 50);
    void exited.then((code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`the server exited with ${code}:\n${output}`));
    });
  });
}
