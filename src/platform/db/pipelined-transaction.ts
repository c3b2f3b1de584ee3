import type pg from 'pg';

/** The statements of one pipelined transaction (see pipelinedTransaction). */
export interface PipelinedStatements {
  /** Sends a statement at once, without waiting for the answers of those before it. */
  send(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  /** Something else the transaction waits for before it counts as done (a call that sends through `send`). */
  include(pending: Promise<unknown>): void;
}

/**
 * One transaction whose statements go out together: BEGIN, what `issue` sends, COMMIT,
 * then every answer is awaited. On a pool of pipelining clients (pg's `pipeline: true`)
 * that is one round trip instead of one per statement, for work whose statements do not
 * depend on each other's results.
 *
 * All or nothing as any transaction: a statement that fails makes PostgreSQL refuse the
 * rest and turns the COMMIT into a rollback; if `issue` itself fails before the COMMIT is
 * sent, the transaction is rolled back here. The first failure is thrown.
 */
export async function pipelinedTransaction(pool: pg.Pool, issue: (statements: PipelinedStatements) => Promise<void>): Promise<void> {
  const client = await pool.connect();
  const pending: Promise<unknown>[] = [];
  const include = (promise: Promise<unknown>) => {
    // Settled below; until then a rejection is not an unhandled one.
    promise.catch(() => {});
    pending.push(promise);
  };
  const send = (text: string, values?: unknown[]) => {
    const result = client.query(text, values);
    include(result);
    return result;
  };
  // pg writes each statement to the socket as it is sent (a write each): held back until the
  // COMMIT, they leave in one write. (pg corks the same stream around each statement itself.)
  const socket = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  let issueFailure: { error: unknown } | undefined;
  socket?.cork?.();
  try {
    send('begin');
    try {
      await issue({ send, include });
    } catch (error) {
      issueFailure = { error };
    }
    send(issueFailure ? 'rollback' : 'commit');
  } finally {
    socket?.uncork?.();
  }
  const failed = (await Promise.allSettled(pending)).find((result) => result.status === 'rejected');
  // A statement's own failure carries PostgreSQL's code; anything else may have left the connection unusable.
  client.release(failed !== undefined && typeof (failed.reason as { code?: unknown } | null)?.code !== 'string');
  if (issueFailure) throw issueFailure.error;
  if (failed) throw failed.reason;
}
