/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** The reason an audit entry records when its call's outcome never came. */
export const adminReasons = {
  OUTCOME_NOT_RECORDED: 'OUTCOME_NOT_RECORDED',
} as const;
