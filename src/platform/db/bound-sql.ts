import { CompiledQuery, type Kysely } from 'kysely';
import type { EntityManager } from './orm.ts';

/**
 * Runs `sql` with its values sent as bind parameters, in the caller's transaction if it
 * has one. `em.execute` writes every value into the SQL text instead (escaped in
 * JavaScript, then read back by PostgreSQL's parser): for the hot job statements, whose
 * values are JSON documents of a whole batch, that escaping was a visible share of the
 * server's CPU. Placeholders are `?`, as with `em.execute`, numbered here in order; the
 * statement must hold no other question mark (no jsonb `?` operator).
 */
export async function executeBound<T>(em: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  let position = 0;
  const numbered = sql.replace(/\?/g, () => `$${++position}`);
  if (position !== params.length) throw new Error(`${position} placeholders for ${params.length} values`);
  return executeNumbered(em, numbered, params);
}

/** As executeBound, for a statement whose placeholders are already numbered (`$1`, `$2`, ...). */
export async function executeNumbered<T>(em: EntityManager, sql: string, params: unknown[]): Promise<T[]> {
  const executor = (em.getTransactionContext() ?? em.getConnection().getClient()) as Kysely<unknown>;
  const result = await executor.executeQuery<T>(CompiledQuery.raw(sql, params));
  return result.rows;
}
