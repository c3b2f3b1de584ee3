/**
 * Whether an error means a dependency (PostgreSQL, object storage) cannot be reached or
 * has no room for us right now, rather than that the call is wrong: such a call may
 * succeed when retried, so it is Unavailable, which standard retry policies retry.
 *
 * The drivers say so in different shapes: pg and MikroORM's DriverException carry a
 * SQLSTATE or a socket error code (copied from the pg error), Node joins the attempts of
 * one connect in an AggregateError, pg and pg-pool report a lost or timed-out connection
 * only by message, and wrappers (pg-boss, MikroORM) keep the original as `cause` or
 * `previous`. The whole chain is looked at.
 */
export function isOutageError(error: unknown): boolean {
  const seen = new Set<unknown>();
  const visit = (candidate: unknown, depth: number): boolean => {
    if (depth > 8 || typeof candidate !== 'object' || candidate === null || seen.has(candidate)) return false;
    seen.add(candidate);
    const fields = candidate as {
      code?: unknown;
      sqlState?: unknown;
      message?: unknown;
      cause?: unknown;
      previous?: unknown;
      errors?: unknown;
    };
    for (const code of [fields.code, fields.sqlState]) {
      if (typeof code === 'string' && (socketErrorCodes.has(code) || isUnavailableSqlState(code))) return true;
    }
    if (typeof fields.message === 'string' && lostConnectionMessages.some((pattern) => pattern.test(fields.message as string))) return true;
    const nested = [fields.cause, fields.previous, ...(Array.isArray(fields.errors) ? fields.errors : [])];
    return nested.some((inner) => visit(inner, depth + 1));
  };
  return visit(error, 0);
}

export const socketErrorCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of an unreachable or overloaded server: class 08 (connection exception),
 * 53300 (too many connections), 57P01-57P03 (shutting down, crashed, not yet accepting)
 * and 57014 (a statement cancelled by statement_timeout).
 */
function isUnavailableSqlState(code: string): boolean {
  return (code.length === 5 && code.startsWith('08')) || ['53300', '57P01', '57P02', '57P03', '57014'].includes(code);
}

/** pg and pg-pool errors that have no code. */
const lostConnectionMessages = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /^Client has encountered a connection error and is not queryable$/,
  /^Client was closed and is not queryable$/,
  /^Knex: Timeout acquiring a connection/,
];
