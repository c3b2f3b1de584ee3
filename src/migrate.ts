/**
 * `npm run migrate`: applies pending migrations to DATABASE_URL, or to the embedded
 * database under DATA_DIR when DATABASE_URL is unset, and exits. The server also does
 * this at every start.
 */
import path from 'node:path';
import { processConfig } from './process-config.ts';
import { createLogger } from './platform/logger.ts';
import { startEmbeddedPostgres } from './platform/db/embedded-postgres.ts';
import { createOrm } from './orm.ts';
import { runMigrations, withStartupLock } from './platform/db/schema-migrations.ts';

const config = processConfig();
const logger = createLogger(config.logLevel);
const embedded = config.databaseUrl
  ? undefined
  : await startEmbeddedPostgres({ clusterDir: path.join(config.dataDir, 'postgres'), logger });
const databaseUrl = config.databaseUrl ?? embedded!.url;
const orm = await createOrm({ url: databaseUrl, logger, poolSize: 2 });
try {
  const applied = await withStartupLock(databaseUrl, () => runMigrations(orm));
  console.log(applied.length === 0 ? 'The database is up to date.' : `Applied ${applied.length} migration(s): ${applied.join(', ')}`);
} finally {
  await orm.close();
  await embedded?.stop();
}
