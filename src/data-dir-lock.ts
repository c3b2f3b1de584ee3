import { mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * One server per embedded PostgreSQL cluster, so per DATA_DIR. A second one would find the embedded PostgreSQL's
 * postmaster.pid and stop the first one's database as a stale leftover, so it must be
 * refused before anything else touches the directory.
 *
 * The lock is a pid file created exclusively. A pid file left by a process that died
 * (kill -9, power loss) is taken over at once when that pid is no longer a Node.js
 * process; a lock based on a refreshed timestamp would instead refuse a restart for its
 * whole staleness period after a crash.
 */
export interface DataDirLock {
  release(): void;
}

export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
  constructor(dataDir: string, pid: number) {
    super(`DATA_DIR ${dataDir} is in use by another Yardmaster server (pid ${pid}): stop it first, or set DATA_DIR to another directory`);
  }
}

export function lockDataDir(dataDir: string): DataDirLock {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'yardmaster.pid');
  for (;;) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      return {
        release: () => {
          if (holder(file) === process.pid) rmSync(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const pid = holder(file);
    if (pid !== undefined && pid !== process.pid && isNodeProcess(pid)) throw new DataDirInUseError(dataDir, pid);
    rmSync(file, { force: true });
  }
}

function holder(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isNodeProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to another user, which still holds the directory.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // Where /proc exists, a recycled pid that now runs another program is not a holder.
    return path.basename(readlinkSync(`/proc/${pid}/exe`)).startsWith('node');
  } catch {
    return true;
  }
}
