import path from 'node:path';
import type { Config } from './config.ts';
import { DataDirInUseError } from './data-dir-lock.ts';
import { socketErrorCodes } from './server/outage-errors.ts';

/** File-system errors that mean the directory cannot be used by this user. */
const unwritable = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST', 'ENOSPC', 'EISDIR']);
/** PostgreSQL refusing the URL's credentials or database (SQLSTATE classes 28 and 3D, 57P03). */
const refusedByPostgres = new Set(['28P01', '28000', '3D000', '57P03']);

type StartupFailureError = Error & { code?: string; syscall?: string; path?: string; port?: number; address?: string; hostname?: string };

/**
 * The one line a person needs when start-up fails for a reason outside the server
 * (the environment, another process), or undefined for anything else: those are bugs,
 * logged with their stack.
 */
export function describeStartupFailure(error: unknown, config: Config): string | undefined {
  if (error instanceof DataDirInUseError) return error.message;
  if (!(error instanceof Error)) return undefined;
  const { code, path: filePath } = error as StartupFailureError;
  if (code === 'EADDRINUSE') {
    return `port ${config.port} on ${config.host} is already in use by another process: stop it, or set PORT to a free port`;
  }
  if (code === 'EACCES' && (error as StartupFailureError).syscall === 'listen') {
    return `no permission to listen on port ${config.port} on ${config.host}: set PORT to 1024 or above`;
  }
  if (code !== undefined && unwritable.has(code) && filePath !== undefined && isWithin(filePath, config.dataDir)) {
    return `DATA_DIR ${config.dataDir} cannot be written (${code} on ${filePath}): set DATA_DIR to a directory this user can write`;
  }
  if (
    config.databaseUrl !== undefined &&
    code !== undefined &&
    (refusedByPostgres.has(code) || (socketErrorCodes.has(code) && pointsAt(error, config.databaseUrl)))
  ) {
    return `cannot use the database at DATABASE_URL (${redacted(config.databaseUrl)}): ${error.message}`;
  }
  if (config.s3 !== undefined && code !== undefined && socketErrorCodes.has(code) && pointsAt(error, config.s3.endpoint)) {
    return `cannot reach the storage at S3_ENDPOINT (${config.s3.endpoint}): ${error.message}`;
  }
  return undefined;
}

function isWithin(filePath: string, dir: string): boolean {
  const relative = path.relative(dir, path.resolve(filePath));
  // The directory itself, what is under it, or a parent it needs to create.
  return relative === '' || !relative.startsWith('..') || path.resolve(dir).startsWith(path.resolve(filePath) + path.sep);
}

function pointsAt(error: StartupFailureError, url: string): boolean {
  const target = new URL(url);
  const port = Number(target.port || (target.protocol === 'https:' ? 443 : target.protocol.startsWith('postgres') ? 5432 : 80));
  if (error.hostname !== undefined) return error.hostname === target.hostname;
  return error.port === port;
}

/** The URL without its password, which must not reach a terminal or a log. */
function redacted(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}
