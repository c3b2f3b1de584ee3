import pg from 'pg';
import type { Logger } from '../logger.ts';

/**
 * Connections of our own in pg's pipeline mode, beside the ORM's, for the hot transactions
 * sent with pipelinedTransaction (creating jobs, ending attempts): a statement goes out
 * without waiting for the answers of those before it. A pooled connection that fails is
 * dropped by the pool; the failure is only logged here.
 */
export function openPipeliningPool(databaseUrl: string, logger: Logger, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: databaseUrl, max, pipeline: true });
  pool.on('error', (error) => logger.warn({ err: error }, 'pipelining pool connection failed'));
  return pool;
}
