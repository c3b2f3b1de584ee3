/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons of the admin area, and the reason an audit entry records when its call's outcome never came. */
export const adminReasons = {
  SELF_DELETE: 'SELF_DELETE',
  LAST_ADMIN: 'LAST_ADMIN',
  OUTCOME_NOT_RECORDED: 'OUTCOME_NOT_RECORDED',
} as const;
