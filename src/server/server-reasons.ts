/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons the transport (interceptors, error mapping) gives. */
export const serverReasons = {
  CREDENTIALS_REQUIRED: 'CREDENTIALS_REQUIRED',
  CREDENTIALS_MALFORMED: 'CREDENTIALS_MALFORMED',
  CREDENTIALS_CHANGED: 'CREDENTIALS_CHANGED',
  ROLE_NOT_ALLOWED: 'ROLE_NOT_ALLOWED',
  SESSION_REQUIRED: 'SESSION_REQUIRED',
  ACCOUNT_THROTTLED: 'ACCOUNT_THROTTLED',
  TOO_MANY_STREAMS: 'TOO_MANY_STREAMS',
  ANONYMOUS_STREAMS_EXHAUSTED: 'ANONYMOUS_STREAMS_EXHAUSTED',
  TOO_MANY_HEAVY_CALLS: 'TOO_MANY_HEAVY_CALLS',
  AUDIT_LOG_UNAVAILABLE: 'AUDIT_LOG_UNAVAILABLE',
  DEPENDENCY_UNAVAILABLE: 'DEPENDENCY_UNAVAILABLE',
} as const;
