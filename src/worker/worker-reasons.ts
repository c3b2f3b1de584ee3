/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes.
 */

/** ErrorInfo reasons of the worker area. */
export const workerReasons = {
  /** ClaimJobs or Heartbeat with a worker id that a live worker of another account uses. */
  WORKER_ID_IN_USE: 'WORKER_ID_IN_USE',
} as const;
