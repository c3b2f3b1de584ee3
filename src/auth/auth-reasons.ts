/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons of the auth area. */
export const authReasons = {
  INVALID_CREDENTIALS: 'INVALID_CREDENTIALS',
  /** A signed-in account's current password was wrong (a WrongPasswordError: the credential rate limit counts it). */
  WRONG_PASSWORD: 'WRONG_PASSWORD',
  ACCOUNT_DISABLED: 'ACCOUNT_DISABLED',
  REGISTRATION_CLOSED: 'REGISTRATION_CLOSED',
  ACCESS_TOKEN_EXPIRED: 'ACCESS_TOKEN_EXPIRED',
  ACCESS_TOKEN_INVALID: 'ACCESS_TOKEN_INVALID',
  REFRESH_TOKEN_INVALID: 'REFRESH_TOKEN_INVALID',
  REFRESH_TOKEN_EXPIRED: 'REFRESH_TOKEN_EXPIRED',
  REFRESH_TOKEN_REUSED: 'REFRESH_TOKEN_REUSED',
  SESSION_REVOKED: 'SESSION_REVOKED',
  API_KEY_INVALID: 'API_KEY_INVALID',
  API_KEY_LIMIT: 'API_KEY_LIMIT',
  RATE_LIMITED: 'RATE_LIMITED',
  SELF_DELETE: 'SELF_DELETE',
  LAST_ADMIN: 'LAST_ADMIN',
} as const;
