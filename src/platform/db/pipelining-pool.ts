import pg from 'pg';
import type { Logger } from '../logger.ts';

/**
 * Connections of our own in pg's pipeline mode, beside the ORM's, for the hot transactions
 * sent with pipelinedTransaction (creating jobs, ending attempts): a statement goes out
 * without waiting for the answers of those before it. A pooled connection that fails is
 * dropped by the pool; the failure is only logged here, idle or in use.
 */
export function openPipeliningPool(databaseUrl: string, logger: Logger, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: databaseUrl, max, pipeline: true });
  pool.on('error', (error) => logger.warn({ err: error }, 'pipelining pool connection failed'));
  // The pool listens for errors only while a connection is idle: one that breaks while a
  // transaction holds it (the database going away mid-write) would otherwise throw its
  // 'error' event out of the process. Its statements fail on their own; pg-pool drops it
  // when it comes back unusable.
  pool.on('connect', (client) => client.on('error', (error) => logger.warn({ err: error }, 'pipelining connection failed while in use')));
  return pool;
}
