import { createHash } from 'node:crypto';
import type pg from 'pg';
import { fromKysely, PgBoss, type Db } from 'pg-boss';
import { deadLetterJobsByIdWithOutputs, notifyChannelSql } from 'pg-boss/dist/plans.js';
import { executeNumbered } from '../db/bound-sql.ts';
import type { EntityManager } from '../db/orm.ts';
import type { Logger } from '../logger.ts';

export type { PgBoss };

export const pgBossSchema = 'pgboss';

/** A queue's retry and expiry policy (a job type is one). */
export interface QueuePolicy {
  name: string;
  retry: { defaultMaxAttempts: number; delayMs: number; backoff: boolean; maxDelayMs: number };
  timeoutMs: number;
  cancelGraceMs: number;
  /**
   * Its entries are held under leases the application keeps (external workers): pg-boss
   * must not fail an entry for want of its own heartbeat, only by the expiry backstop.
   */
  leased?: boolean;
}

export interface PgBossOptions {
  url: string;
  logger: Logger;
  /** Connections of pg-boss's own pool. */
  poolSize?: number;
}

/**
 * pg-boss on the application's database, in its own schema. LISTEN/NOTIFY brings a new
 * job to a waiting worker in milliseconds instead of a polling interval.
 */
export async function startPgBoss({ url, logger, poolSize = 10 }: PgBossOptions): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: url,
    schema: pgBossSchema,
    max: poolSize,
    useListenNotify: true,
    application_name: 'yardmaster-queue',
    // Live instances (and the queues they work) are visible within seconds, and the jobs
    // of an instance that died are failed (and retried) within a quarter minute.
    instanceHeartbeatSeconds: 10,
    superviseIntervalSeconds: 15,
  });
  const queueLogger = logger.child({ component: 'pg-boss' });
  boss.on('error', (error) => queueLogger.warn({ err: error }, 'pg-boss error'));
  boss.on('warning', (warning) => queueLogger.warn({ warning }, 'pg-boss warning'));
  await boss.start();
  return boss;
}

/**
 * Gives every queue (one per job type) its pg-boss queue, with its retry and expiry policy.
 * The expiry is a backstop for a worker that died: our own timeout fires first.
 */
export async function ensureQueues(boss: PgBoss, types: QueuePolicy[]): Promise<void> {
  for (const type of types) {
    const options = {
      retryLimit: type.retry.defaultMaxAttempts - 1,
      retryDelay: Math.ceil(type.retry.delayMs / 1000),
      retryBackoff: type.retry.backoff,
      ...(type.retry.backoff ? { retryDelayMax: Math.ceil(type.retry.maxDelayMs / 1000) } : {}),
      expireInSeconds: Math.ceil((type.timeoutMs + type.cancelGraceMs) / 1000) + 60,
    };
    const heartbeatSeconds = type.leased ? null : 30;
    if (await boss.getQueue(type.name)) {
      // pg-boss fixes the longest retry delay when a queue is created.
      const { retryDelayMax: _max, ...updatable } = options as typeof options & { retryDelayMax?: number };
      await boss.updateQueue(type.name, { ...updatable, heartbeatSeconds });
    } else {
      await boss.createQueue(type.name, {
        ...options,
        ...(heartbeatSeconds === null ? {} : { heartbeatSeconds }),
        policy: 'standard',
        notify: true,
      });
    }
  }
}

/** pg-boss's view of the caller's transaction, so that a queue entry commits or rolls back with it. */
export function transactionDb(em: EntityManager): Db {
  const context = em.getTransactionContext();
  if (!context) throw new Error('pg-boss calls that must share a transaction need one');
  return fromKysely(context as Parameters<typeof fromKysely>[0]);
}

/** The channel on which pg-boss announces new entries of a notify queue (the payload is the queue's name). */
export async function queueNotifyChannel(em: EntityManager): Promise<string> {
  const [row] = await executeNumbered<{ channel: string }>(em, `select ${notifyChannelSql(pgBossSchema)} as channel`, []);
  return row!.channel;
}

/**
 * Fails fetched entries for good whatever attempts they have left, as pg-boss's own worker
 * does with a `deadletter` result (state `failed`, no retry, on to the queue's dead letter
 * queue if it has one), for entries fetched with `fetch()`. Fenced to the fetched attempt.
 */
export async function deadLetterEntries(boss: PgBoss, queue: string, entries: { id: string; retryCount: number }[]): Promise<void> {
  const table = ((await boss.getQueue(queue)) as { table?: string } | null)?.table;
  if (!table) throw new Error(`queue ${queue} does not exist`);
  const items = entries.map(({ id, retryCount }) => ({ id, retry_count: retryCount, output: null }));
  await boss.getDb().executeSql(deadLetterJobsByIdWithOutputs(pgBossSchema, table), [queue, JSON.stringify(items)]);
}

/** The name of each pg-boss statement text sent named (a few per queue). */
const statementNames = new Map<string, string>();

/**
 * pg-boss on one connection of the caller's (in its transaction, if it opened one), with
 * each of pg-boss's statements that carries parameters sent as a named statement (named
 * after its text): PostgreSQL parses and plans it once per connection instead of at each
 * call. Statements without parameters may hold several commands and stay unnamed.
 */
export function namedStatementsDb(client: pg.ClientBase): Db {
  return {
    executeSql: (text, values) => {
      if (!values || values.length === 0) return client.query(text);
      let name = statementNames.get(text);
      if (name === undefined) {
        name = `pgboss.${createHash('sha1').update(text).digest('base64url')}`;
        statementNames.set(text, name);
      }
      return client.query({ name, text, values });
    },
  };
}
