/**
 * Migrations that move data keep it: a database made by the migrations before one of them,
 * with rows in it, is migrated up (and back down) and the rows read as before.
 */
import { afterAll, beforeAll, expect, inject, test } from 'vitest';
import { createOrm } from '../src/orm.ts';
import type { MikroORM } from '../src/platform/db/orm.ts';
import { createLogger } from '../src/platform/logger.ts';
import { randomHex } from './support/assertions.ts';
import { queryDatabase } from './support/query-database.ts';

const adminUrl = inject('adminDatabaseUrl');
const name = `yardmaster_test_migrations_${randomHex(6)}`;
let orm: MikroORM;

beforeAll(async () => {
  await queryDatabase(adminUrl, `create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  orm = await createOrm({ url: url.toString(), logger: createLogger('silent'), poolSize: 2 });
});
afterAll(async () => {
  await orm?.close();
  await queryDatabase(adminUrl, `drop database if exists ${name} with (force)`);
});

test('job_search takes over the search text of existing jobs, and gives it back when migrated down', async () => {
  const before = 'Migration20261203140500_event_sequencing';
  await orm.migrator.up({ to: before });
  const jobId = '01a23c39-0176-76c8-bde0-50cac265c744';
  const ownerId = '01a23c38-7f06-7749-8fa2-6584e2b8f353';
  const connection = orm.em.getConnection();
  await connection.execute(
    `insert into users (id, username, email, password_hash, role, active, created_at, updated_at)
     values (?, 'owner', 'owner@example.com', 'x', 'user', true, now(), now())`,
    [ownerId],
  );
  await connection.execute(
    `insert into jobs (id, owner_id, type, name, params, labels, search_text, priority, status, max_attempts,
                       input_file_ids, output_file_ids, created_at, updated_at)
     values (?, ?, 'sleep', 'nightly report', '{}', '{"team":"data"}', 'nightly report team=data', 0, 'succeeded', 1,
             '[]', '[]', now(), now())`,
    [jobId, ownerId],
  );

  await orm.migrator.up();
  expect(await connection.execute('select job_id, search_text from job_search')).toEqual([
    { job_id: jobId, search_text: 'nightly report team=data' },
  ]);
  const columns = await connection.execute<{ column_name: string }[]>(
    `select column_name from information_schema.columns where table_name = 'jobs'`,
  );
  expect(columns.map((column) => column.column_name)).not.toContain('search_text');

  await orm.migrator.down({ to: before });
  expect(await connection.execute('select search_text from jobs where id = ?', [jobId])).toEqual([
    { search_text: 'nightly report team=data' },
  ]);
});

test('events are stored with pages half filled by inserts (room for the sequencer to number each on its page), and back when migrated down', async () => {
  const connection = orm.em.getConnection();
  const options = async () =>
    (await connection.execute<{ reloptions: string[] | null }[]>(`select reloptions from pg_class where relname = 'events'`))[0]!
      .reloptions;
  await orm.migrator.up();
  expect(await options()).toEqual(['fillfactor=50']);
  await orm.migrator.down({ to: 'Migration20261203151000_event_sequencing_scan' });
  expect(await options()).toBeNull();
  await orm.migrator.up();
});
