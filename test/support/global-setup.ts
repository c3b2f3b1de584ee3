/**
 * Starts one real PostgreSQL for the whole test run (embedded, under the system
 * temporary directory) unless TEST_DATABASE_URL points at one, and migrates a
 * template database that every test file clones for itself.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/platform/db/embedded-postgres.ts';
import { createOrm } from '../../src/orm.ts';
import { runMigrations } from '../../src/platform/db/schema-migrations.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { startEmbeddedS3 } from '../../src/platform/storage/embedded-s3.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of a maintenance database on the test server, for CREATE DATABASE. */
    adminDatabaseUrl: string;
    /** Migrated database every test database is created from. */
    templateDatabase: string;
    /** Endpoint of the S3-compatible server the test servers keep their files in (a bucket each). */
    s3Endpoint: string;
    s3Credentials: { accessKey: string; secretKey: string };
  }
}

export const templateDatabase = 'yardmaster_test_template';

const repoRoot = path.resolve(import.meta.dirname, '../..');

export default async function setup(project: TestProject) {
  const logger = createLogger('warn');
  // The console the test servers serve at / is built from the sources under test, never a stale build.
  // As shipped: vitest sets NODE_ENV=test, which would make Vite bundle React's development build.
  execFileSync(process.execPath, [path.join(repoRoot, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'error'], {
    cwd: path.join(repoRoot, 'clients/web'),
    env: { ...process.env, NODE_ENV: 'production' },
    stdio: 'inherit',
  });
  execFileSync(process.execPath, ['scripts/precompress.ts'], { cwd: path.join(repoRoot, 'clients/web'), stdio: 'ignore' });
  let scratchDir: string | undefined;
  let stopPostgres: (() => Promise<void>) | undefined;
  let adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) {
    scratchDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-test-'));
    const embedded = await startEmbeddedPostgres({
      clusterDir: scratchDir,
      database: 'postgres',
      logger,
      // Test data is thrown away: durability only costs time here.
      settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
    });
    adminUrl = embedded.adminUrl;
    stopPostgres = embedded.stop;
  }

  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${templateDatabase}`);
  await admin.query(`create database ${templateDatabase}`);
  await admin.end();

  const templateUrl = new URL(adminUrl);
  templateUrl.pathname = `/${templateDatabase}`;
  const orm = await createOrm({ url: templateUrl.toString(), logger, poolSize: 2 });
  await runMigrations(orm);
  await orm.close();

  const objectsDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-test-objects-'));
  const s3 = await startEmbeddedS3({
    directory: objectsDir,
    host: '127.0.0.1',
    bucket: 'yardmaster-test',
    secretKey: randomBytes(24).toString('base64url'),
    logger,
  });

  project.provide('adminDatabaseUrl', adminUrl);
  project.provide('templateDatabase', templateDatabase);
  project.provide('s3Endpoint', s3.endpoint);
  project.provide('s3Credentials', s3.credentials);

  return async () => {
    await s3.stop();
    await rm(objectsDir, { recursive: true, force: true });
    await stopPostgres?.();
    if (scratchDir) await rm(scratchDir, { recursive: true, force: true });
  };
}
