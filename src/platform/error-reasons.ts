/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons used on both sides of a boundary: thrown in one folder, matched in another (or thrown by the platform itself). */
export const sharedReasons = {
  /** A stream fell too far behind its source and was cut off: resume from the last sequence. */
  STREAM_OVERFLOW: 'STREAM_OVERFLOW',
  /** A password check of a signed-in account failed (counted by the credential rate limit). */
  WRONG_PASSWORD: 'WRONG_PASSWORD',
} as const;
