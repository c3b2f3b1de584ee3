import pg from 'pg';
import type { MikroORM } from './orm.ts';

/** Start-up steps of all instances are serialised with this session-level advisory lock. */
const startupLockKey = 0x59_4d_53_54; // "YMST"

/**
 * Runs `work` while holding the start-up lock, so that instances starting together do
 * not migrate or seed the same database at once.
 */
export async function withStartupLock<T>(databaseUrl: string, work: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [startupLockKey]);
    return await work();
  } finally {
    await client.query('select pg_advisory_unlock($1)', [startupLockKey]).catch(() => {});
    await client.end();
  }
}

/** Applies pending migrations; returns the names of those applied. */
export async function runMigrations(orm: MikroORM): Promise<string[]> {
  const applied = await orm.migrator.up();
  return applied.map((migration) => migration.name);
}
