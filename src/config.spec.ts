import { expect, test } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

test('defaults describe a local embedded server', () => {
  const config = loadConfig({}, '/srv/app');
  expect(config).toMatchObject({
    host: '127.0.0.1',
    port: 8080,
    dataDir: '/srv/app/.yardmaster',
    databaseUrl: undefined,
    adminUsername: 'admin',
    adminPassword: undefined,
    accessTokenTtlMs: 900_000,
    refreshTokenTtlMs: 30 * 86_400_000,
    corsOrigins: [],
    tls: undefined,
    logLevel: 'info',
    logFormat: 'auto',
    shutdownTimeoutMs: 30_000,
    trustProxyHops: 0,
    metricsEnabled: true,
    role: 'all',
  });
});

test('reads every variable', () => {
  const config = loadConfig(
    {
      HOST: '0.0.0.0',
      PORT: '9000',
      DATA_DIR: 'data',
      DATABASE_URL: 'postgres://u:p@db:5432/ym',
      ADMIN_USERNAME: 'Root',
      ADMIN_PASSWORD: 'a-long-admin-password',
      ACCESS_TOKEN_TTL: '5m',
      REFRESH_TOKEN_TTL: '7d',
      CORS_ORIGINS: 'https://a.example.com, http://localhost:5173',
      LOG_LEVEL: 'DEBUG',
      LOG_FORMAT: 'Pretty',
      SHUTDOWN_TIMEOUT: '2m',
      TRUST_PROXY: '1',
      METRICS_ENABLED: 'false',
      WORKER_ONLY: 'true',
    },
    '/srv',
  );
  expect(config).toMatchObject({
    host: '0.0.0.0',
    port: 9000,
    dataDir: '/srv/data',
    databaseUrl: 'postgres://u:p@db:5432/ym',
    adminUsername: 'root',
    adminPassword: 'a-long-admin-password',
    accessTokenTtlMs: 300_000,
    refreshTokenTtlMs: 7 * 86_400_000,
    corsOrigins: ['https://a.example.com', 'http://localhost:5173'],
    logLevel: 'debug',
    logFormat: 'pretty',
    shutdownTimeoutMs: 120_000,
    trustProxyHops: 1,
    metricsEnabled: false,
    role: 'worker',
  });
});

test('reports every bad variable on its own line', () => {
  let error: unknown;
  try {
    loadConfig({
      PORT: '70000',
      DATABASE_URL: 'mysql://x',
      ACCESS_TOKEN_TTL: 'forever',
      CORS_ORIGINS: 'example.com',
      TLS_CERT: 'cert.pem',
      ADMIN_PASSWORD: 'short',
      API_ONLY: 'true',
      WORKER_ONLY: 'true',
      LOG_FORMAT: 'colour',
      SHUTDOWN_TIMEOUT: 'never',
    });
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(ConfigError);
  const names = (error as Error).message.split('\n').map((line) => line.split(':')[0]);
  expect(names.sort()).toEqual([
    'ACCESS_TOKEN_TTL',
    'ADMIN_PASSWORD',
    'CORS_ORIGINS',
    'DATABASE_URL',
    'LOG_FORMAT',
    'PORT',
    'SHUTDOWN_TIMEOUT',
    'TLS_KEY',
    'WORKER_ONLY',
  ]);
});

test('refresh tokens must outlive access tokens', () => {
  expect(() => loadConfig({ ACCESS_TOKEN_TTL: '1h', REFRESH_TOKEN_TTL: '30m' })).toThrow(/REFRESH_TOKEN_TTL: must be longer/);
});

test('connection limits: production defaults, no per-address cap behind a proxy unless set, and bounds', () => {
  expect(loadConfig({}).connections).toEqual({
    headersTimeoutMs: 20_000,
    keepAliveTimeoutMs: 65_000,
    idleTimeoutMs: 300_000,
    maxConnectionsPerAddress: 256,
  });
  expect(loadConfig({ TRUST_PROXY: '1' }).connections.maxConnectionsPerAddress).toBe(0);
  expect(loadConfig({ TRUST_PROXY: '1', MAX_CONNECTIONS_PER_ADDRESS: '5000' }).connections.maxConnectionsPerAddress).toBe(5000);
  expect(loadConfig({ HEADERS_TIMEOUT: '5s', KEEP_ALIVE_TIMEOUT: '2m', IDLE_TIMEOUT: '30s' }).connections).toMatchObject({
    headersTimeoutMs: 5000,
    keepAliveTimeoutMs: 120_000,
    idleTimeoutMs: 30_000,
  });
  expect(() => loadConfig({ IDLE_TIMEOUT: '10s' })).toThrow(/IDLE_TIMEOUT: .*at least 20s/);
  expect(() => loadConfig({ MAX_CONNECTIONS_PER_ADDRESS: 'many' })).toThrow(/MAX_CONNECTIONS_PER_ADDRESS/);
});

test('METRICS_TOKEN is optional and, when set, long enough', () => {
  expect(loadConfig({}).metricsToken).toBeUndefined();
  expect(loadConfig({ METRICS_TOKEN: 'a-scrape-token-of-some-length' }).metricsToken).toBe('a-scrape-token-of-some-length');
  expect(() => loadConfig({ METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN: must be at least 16/);
});

test("a presigning credential of its own for external storage: both halves, another key than the server's, only with S3_ENDPOINT", () => {
  const external = { S3_ENDPOINT: 'http://minio:9000', S3_ACCESS_KEY: 'yardmaster', S3_SECRET_KEY: 'server-secret' };
  expect(loadConfig(external).s3?.presign).toBeUndefined();
  expect(
    loadConfig({ ...external, S3_PRESIGN_ACCESS_KEY: 'yardmaster-presign', S3_PRESIGN_SECRET_KEY: 'presign-secret' }).s3?.presign,
  ).toEqual({ accessKey: 'yardmaster-presign', secretKey: 'presign-secret' });
  expect(() => loadConfig({ ...external, S3_PRESIGN_ACCESS_KEY: 'yardmaster-presign' })).toThrow(/^S3_PRESIGN_SECRET_KEY: .*set together$/);
  expect(() => loadConfig({ ...external, S3_PRESIGN_ACCESS_KEY: 'yardmaster', S3_PRESIGN_SECRET_KEY: 'x' })).toThrow(
    /^S3_PRESIGN_ACCESS_KEY: must be another credential/,
  );
  expect(() => loadConfig({ S3_PRESIGN_ACCESS_KEY: 'a', S3_PRESIGN_SECRET_KEY: 'b' })).toThrow(
    /^S3_PRESIGN_ACCESS_KEY: needs S3_ENDPOINT\nS3_PRESIGN_SECRET_KEY: needs S3_ENDPOINT$/,
  );
});
