import type pg from 'pg';

/** The statements of one pipelined transaction (see pipelinedTransaction). */
export interface PipelinedStatements {
  /** Sends a statement at once, without waiting for the answers of those before it. */
  send(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  /** Something else the transaction waits for before it counts as done (a call that sends through `send`). */
  include(pending: Promise<unknown>): void;
  /**
   * Sends through `call` (pg-boss's `db` option: one statement through `executeSql`) and
   * resolves once that statement is out or the call has settled, so what is sent next
   * follows it; the call is included.
   */
  sendThrough(call: (db: StatementSender) => Promise<unknown>): Promise<void>;
  /**
   * Lets what was sent so far leave now, before `issue` awaits an answer the next
   * statements depend on (a locking read): one round trip more, the others still together.
   */
  flush(): void;
}

/** pg-boss's `db` option. */
export interface StatementSender {
  executeSql(text: string, values?: unknown[]): Promise<pg.QueryResult>;
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
  const flush = () => {
    socket?.uncork?.();
    socket?.cork?.();
  };
  const sendThrough = async (call: (db: StatementSender) => Promise<unknown>) => {
    const { out, called } = sendingThrough({ executeSql: send }, call);
    include(called);
    await out;
  };
  let issueFailure: { error: unknown } | undefined;
  socket?.cork?.();
  try {
    send('begin');
    try {
      await issue({ send, include, sendThrough, flush });
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

/**
 * Runs `call` (a pg-boss call given `db`) with its statements going to `sender`: `out`
 * resolves once its statement is out or the call has settled, so that what the caller
 * sends next (a COMMIT) follows it; pg-boss may look its queue up before it writes.
 * `called` is the call's own promise, for the caller to await with the transaction.
 */
export function sendingThrough<S extends { executeSql(text: string, values?: unknown[]): Promise<unknown> }>(
  sender: S,
  call: (db: S) => Promise<unknown>,
): { out: Promise<unknown>; called: Promise<unknown> } {
  let sent!: () => void;
  const wasSent = new Promise<void>((resolve) => (sent = resolve));
  const called = call({
    ...sender,
    executeSql: (text: string, values?: unknown[]) => {
      const result = sender.executeSql(text, values);
      sent();
      return result;
    },
  });
  return { out: Promise.race([wasSent, called]), called };
}
