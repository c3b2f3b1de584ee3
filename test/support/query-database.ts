/** One query on a database over a connection of its own (no vitest here: bench/ uses it too). */
import pg from 'pg';

/** A plain client on a database, for asserting what was (not) written: connects, runs `sql`, disconnects. */
export async function queryDatabase<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}
