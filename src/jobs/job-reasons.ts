/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons of the jobs area. */
export const jobReasons = {
  JOB_NOT_QUEUED: 'JOB_NOT_QUEUED',
  JOB_FINISHED: 'JOB_FINISHED',
  JOB_NOT_RETRYABLE: 'JOB_NOT_RETRYABLE',
  JOB_NOT_FINISHED: 'JOB_NOT_FINISHED',
  RESYNC_REQUIRED: 'RESYNC_REQUIRED',
  /** DeleteJobType of a type with queued or running jobs. */
  JOB_TYPE_IN_USE: 'JOB_TYPE_IN_USE',
  /** UpdateJobType or DeleteJobType of an in-process type. */
  JOB_TYPE_BUILT_IN: 'JOB_TYPE_BUILT_IN',
  /** RetryJob of a job whose type was deleted since. */
  JOB_TYPE_GONE: 'JOB_TYPE_GONE',
  /** A worker's call about a job whose lease lapsed or ended: the attempt is no longer its own. */
  LEASE_EXPIRED: 'LEASE_EXPIRED',
} as const;

/** The error codes a failed job attempt records (job.error_code), as clients see them. */
export const jobErrorCodes = {
  HANDLER_ERROR: 'HANDLER_ERROR',
  WORKER_LOST: 'WORKER_LOST',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  INVALID_PARAMS: 'INVALID_PARAMS',
  INPUT_MISSING: 'INPUT_MISSING',
  INPUT_CORRUPT: 'INPUT_CORRUPT',
  OUTPUT_REFUSED: 'OUTPUT_REFUSED',
  /** An external worker held the attempt but sent no heartbeat before its lease lapsed. */
  LEASE_EXPIRED: 'LEASE_EXPIRED',
} as const;
