/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons the platform itself throws. */
export const sharedReasons = {
  /** A stream fell too far behind its source and was cut off: resume from the last sequence. */
  STREAM_OVERFLOW: 'STREAM_OVERFLOW',
} as const;
