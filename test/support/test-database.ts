import { inject } from 'vitest';
import { randomHex } from './assertions.ts';
import { queryDatabase } from './query-database.ts';

export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A fresh database of its own, cloned from the migrated template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const name = `yardmaster_test_${randomHex(6)}`;
  await queryDatabase(adminUrl, `create database ${name} template ${inject('templateDatabase')}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => queryDatabase(adminUrl, `drop database if exists ${name} with (force)`).then(() => {}),
  };
}
