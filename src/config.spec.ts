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
  const config = loadConfig({
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
  }, '/srv');
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
  expect(names.sort()).toEqual(['ACCESS_TOKEN_TTL', 'ADMIN_PASSWORD', 'CORS_ORIGINS', 'DATABASE_URL', 'LOG_FORMAT', 'PORT', 'SHUTDOWN_TIMEOUT', 'TLS_KEY', 'WORKER_ONLY']);
});

test('refresh tokens must outlive access tokens', () => {
  expect(() => loadConfig({ ACCESS_TOKEN_TTL: '1h', REFRESH_TOKEN_TTL: '30m' })).toThrow(/REFRESH_TOKEN_TTL: must be longer/);
});
