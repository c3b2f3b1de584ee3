import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseByteSize } from './platform/byte-sizes.ts';
import { parseDuration } from './platform/durations.ts';
import type { ConnectionLimits } from './server/listener.ts';

import type { LogFormat, LogLevel } from './platform/logger.ts';

/** Everything the server reads from its environment, validated once at start-up. */
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  /** Unset: start an embedded PostgreSQL under dataDir. */
  databaseUrl: string | undefined;
  adminUsername: string;
  /** Unset: generate one and print it once, at the first start. */
  adminPassword: string | undefined;
  accessTokenTtlMs: number;
  refreshTokenTtlMs: number;
  corsOrigins: string[];
  tls: { cert: Buffer; key: Buffer } | undefined;
  logLevel: LogLevel;
  /** `auto`: readable lines when stdout is a terminal, JSON lines otherwise. */
  logFormat: LogFormat;
  /** Longest graceful shutdown; past it the process says what was still open and exits 1. */
  shutdownTimeoutMs: number;
  /** Number of reverse proxies in front of the server whose X-Forwarded-For entries are trusted. */
  trustProxyHops: number;
  metricsEnabled: boolean;
  /** When set, /metrics answers only requests bearing it (`Authorization: Bearer <token>`). */
  metricsToken: string | undefined;
  /** Timeouts and the per-address cap of client connections. */
  connections: ConnectionLimits;
  /** What this process runs: everything, only the API (no jobs), or only jobs and housekeeping (no API). */
  role: ProcessRole;
  /** Unset: start an embedded S3-compatible server under dataDir. */
  s3: S3Config | undefined;
  /** Bucket (also of the embedded server). */
  s3Bucket: string;
  s3Region: string;
  /** Default of the setting files.max_upload_bytes. */
  maxUploadBytes: number;
}

export interface S3Config {
  endpoint: string;
  /** Endpoint in presigned URLs, when clients reach storage at another address than the server does. */
  publicEndpoint: string;
  accessKey: string;
  secretKey: string;
  /**
   * The credential presigned URLs are signed with, when it is not the server's own: one
   * whose policy allows only what those URLs do (see README, Deploying, MinIO).
   */
  presign?: { accessKey: string; secretKey: string };
}

export type ProcessRole = 'all' | 'api' | 'worker';

const logLevels: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const logFormats: readonly LogFormat[] = ['auto', 'json', 'pretty'];

/** Raised for bad configuration; its message is the one line the operator sees. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/**
 * Reads the configuration from environment variables. Every problem is reported,
 * one line per variable, in a single ConfigError.
 */
export function loadConfig(env: Env, cwd: string = process.cwd()): Config {
  const problems: string[] = [];
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === '' ? undefined : value;
  };
  const fail = (name: string, message: string) => problems.push(`${name}: ${message}`);

  const port = parseInteger(read('PORT') ?? '8080', 0, 65535);
  if (port === undefined) fail('PORT', `must be a port number from 0 to 65535, got "${read('PORT')}"`);

  const duration = (name: string, fallback: string, minMs: number): number => {
    const text = read(name) ?? fallback;
    const ms = parseDuration(text);
    if (ms === undefined || ms < minMs) {
      fail(name, `must be a duration such as "15m", "12h" or "30d" (at least ${minMs / 1000}s), got "${text}"`);
      return 0;
    }
    return ms;
  };
  const accessTokenTtlMs = duration('ACCESS_TOKEN_TTL', '15m', 10_000);
  const refreshTokenTtlMs = duration('REFRESH_TOKEN_TTL', '30d', 60_000);
  if (problems.length === 0 && refreshTokenTtlMs <= accessTokenTtlMs) {
    fail('REFRESH_TOKEN_TTL', 'must be longer than ACCESS_TOKEN_TTL');
  }

  const databaseUrl = read('DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    fail('DATABASE_URL', 'must be a postgres:// or postgresql:// URL');
  }

  const corsOrigins = (read('CORS_ORIGINS') ?? '')
    .split(',')
    .map((origin) => origin.trim())
    .filter((origin) => origin !== '');
  for (const origin of corsOrigins) {
    if (origin !== '*' && !isOrigin(origin)) {
      fail('CORS_ORIGINS', `"${origin}" is not an origin such as https://console.example.com`);
    }
  }

  let tls: Config['tls'];
  const certPath = read('TLS_CERT');
  const keyPath = read('TLS_KEY');
  if ((certPath === undefined) !== (keyPath === undefined)) {
    fail(certPath === undefined ? 'TLS_CERT' : 'TLS_KEY', 'TLS_CERT and TLS_KEY must be set together');
  } else if (certPath !== undefined && keyPath !== undefined) {
    const cert = readFileOrFail(path.resolve(cwd, certPath), 'TLS_CERT', fail);
    const key = readFileOrFail(path.resolve(cwd, keyPath), 'TLS_KEY', fail);
    if (cert && key) tls = { cert, key };
  }

  const logLevel = (read('LOG_LEVEL') ?? 'info').toLowerCase() as LogLevel;
  if (!logLevels.includes(logLevel)) fail('LOG_LEVEL', `must be one of ${logLevels.join(', ')}`);
  const logFormat = (read('LOG_FORMAT') ?? 'auto').toLowerCase() as LogFormat;
  if (!logFormats.includes(logFormat)) fail('LOG_FORMAT', `must be one of ${logFormats.join(', ')}`);
  const shutdownTimeoutMs = duration('SHUTDOWN_TIMEOUT', '30s', 1_000);

  const trustProxyHops = parseInteger(read('TRUST_PROXY') ?? '0', 0, 10);
  if (trustProxyHops === undefined) fail('TRUST_PROXY', 'must be the number of trusted proxies, 0 to 10');

  const metricsEnabled = parseBoolean(read('METRICS_ENABLED') ?? 'true');
  if (metricsEnabled === undefined) fail('METRICS_ENABLED', 'must be true or false');
  const metricsToken = read('METRICS_TOKEN');
  if (metricsToken !== undefined && !/^[\x21-\x7e]{16,}$/.test(metricsToken))
    fail('METRICS_TOKEN', 'must be at least 16 printable characters without spaces');

  const headersTimeoutMs = duration('HEADERS_TIMEOUT', '20s', 1000);
  const keepAliveTimeoutMs = duration('KEEP_ALIVE_TIMEOUT', '65s', 1000);
  // Server streams stay quiet for up to 15 s between heartbeats (jobs.stream_heartbeat_interval):
  // a shorter idle timeout would cut every quiet stream.
  const idleTimeoutMs = duration('IDLE_TIMEOUT', '5m', 20_000);
  // Behind a proxy every connection comes from the proxy, so a default cap would throttle
  // all clients together: there it is off unless set.
  const maxConnectionsPerAddress = parseInteger(read('MAX_CONNECTIONS_PER_ADDRESS') ?? (trustProxyHops ? '0' : '256'), 0, 1_000_000);
  if (maxConnectionsPerAddress === undefined) fail('MAX_CONNECTIONS_PER_ADDRESS', 'must be a whole number (0 = no cap)');

  const apiOnly = parseBoolean(read('API_ONLY') ?? 'false');
  if (apiOnly === undefined) fail('API_ONLY', 'must be true or false');
  const workerOnly = parseBoolean(read('WORKER_ONLY') ?? 'false');
  if (workerOnly === undefined) fail('WORKER_ONLY', 'must be true or false');
  if (apiOnly && workerOnly) fail('WORKER_ONLY', 'cannot be combined with API_ONLY');
  const role: ProcessRole = apiOnly ? 'api' : workerOnly ? 'worker' : 'all';

  let s3: S3Config | undefined;
  const s3Endpoint = read('S3_ENDPOINT');
  if (s3Endpoint !== undefined) {
    if (!isHttpUrl(s3Endpoint)) fail('S3_ENDPOINT', 'must be an http(s):// URL such as http://minio:9000');
    const publicEndpoint = read('S3_PUBLIC_ENDPOINT') ?? s3Endpoint;
    if (!isHttpUrl(publicEndpoint)) fail('S3_PUBLIC_ENDPOINT', 'must be an http(s):// URL');
    const accessKey = read('S3_ACCESS_KEY');
    const secretKey = read('S3_SECRET_KEY');
    if (accessKey === undefined) fail('S3_ACCESS_KEY', 'is required with S3_ENDPOINT');
    if (secretKey === undefined) fail('S3_SECRET_KEY', 'is required with S3_ENDPOINT');
    s3 = {
      endpoint: s3Endpoint.replace(/\/+$/, ''),
      publicEndpoint: publicEndpoint.replace(/\/+$/, ''),
      accessKey: accessKey ?? '',
      secretKey: secretKey ?? '',
    };
    const presignAccessKey = read('S3_PRESIGN_ACCESS_KEY');
    const presignSecretKey = read('S3_PRESIGN_SECRET_KEY');
    if ((presignAccessKey === undefined) !== (presignSecretKey === undefined)) {
      fail(
        presignAccessKey === undefined ? 'S3_PRESIGN_ACCESS_KEY' : 'S3_PRESIGN_SECRET_KEY',
        'S3_PRESIGN_ACCESS_KEY and S3_PRESIGN_SECRET_KEY must be set together',
      );
    } else if (presignAccessKey !== undefined && presignSecretKey !== undefined) {
      // MinIO skips every policy for its root user, so presigning with S3_ACCESS_KEY again would restrict nothing.
      if (presignAccessKey === accessKey) fail('S3_PRESIGN_ACCESS_KEY', 'must be another credential than S3_ACCESS_KEY');
      s3.presign = { accessKey: presignAccessKey, secretKey: presignSecretKey };
    }
  } else {
    for (const name of ['S3_PUBLIC_ENDPOINT', 'S3_PRESIGN_ACCESS_KEY', 'S3_PRESIGN_SECRET_KEY']) {
      if (read(name) !== undefined) fail(name, 'needs S3_ENDPOINT');
    }
  }
  const s3Bucket = read('S3_BUCKET') ?? 'yardmaster';
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(s3Bucket))
    fail('S3_BUCKET', 'must be a DNS-compatible bucket name (3 to 63 of a-z, 0-9, ".", "-")');
  const s3Region = read('S3_REGION') ?? 'us-east-1';
  const maxUploadBytes = parseByteSize(read('MAX_UPLOAD_BYTES') ?? '5GiB');
  if (maxUploadBytes === undefined || maxUploadBytes < 1) fail('MAX_UPLOAD_BYTES', 'must be a size such as 5368709120, 500MiB or 5GiB');

  const adminUsername = (read('ADMIN_USERNAME') ?? 'admin').toLowerCase();
  if (!/^[a-z0-9._-]{3,64}$/.test(adminUsername)) {
    fail('ADMIN_USERNAME', "must be 3 to 64 characters of a-z, 0-9, '.', '_' and '-'");
  }
  const adminPassword = env.ADMIN_PASSWORD === '' ? undefined : env.ADMIN_PASSWORD;
  if (adminPassword !== undefined && adminPassword.length < 12) {
    fail('ADMIN_PASSWORD', 'must be at least 12 characters');
  }

  if (problems.length > 0) throw new ConfigError(problems.join('\n'));

  return {
    host: read('HOST') ?? '127.0.0.1',
    port: port!,
    dataDir: path.resolve(cwd, read('DATA_DIR') ?? '.yardmaster'),
    databaseUrl,
    adminUsername,
    adminPassword,
    accessTokenTtlMs,
    refreshTokenTtlMs,
    corsOrigins,
    tls,
    logLevel,
    logFormat,
    shutdownTimeoutMs,
    trustProxyHops: trustProxyHops!,
    metricsEnabled: metricsEnabled!,
    metricsToken,
    connections: { headersTimeoutMs, keepAliveTimeoutMs, idleTimeoutMs, maxConnectionsPerAddress: maxConnectionsPerAddress! },
    role,
    s3,
    s3Bucket,
    s3Region,
    maxUploadBytes: maxUploadBytes!,
  };
}

function parseInteger(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return value >= min && value <= max ? value : undefined;
}

function parseBoolean(text: string): boolean | undefined {
  const lower = text.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(lower)) return true;
  if (['false', '0', 'no', 'off'].includes(lower)) return false;
  return undefined;
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function isOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === text;
  } catch {
    return false;
  }
}

function readFileOrFail(file: string, name: string, fail: (name: string, message: string) => void): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    fail(name, `cannot read ${file}`);
    return undefined;
  }
}
