/**
 * The reasons are on the wire (google.rpc.ErrorInfo.reason): clients act on them, so a
 * value never changes; code refers to them by name, where they are thrown and where matched.
 */

/** ErrorInfo reasons of the files area. */
export const fileReasons = {
  FILE_EXISTS: 'FILE_EXISTS',
  FILE_NOT_AVAILABLE: 'FILE_NOT_AVAILABLE',
  FILE_IN_USE: 'FILE_IN_USE',
  FILE_TOO_LARGE: 'FILE_TOO_LARGE',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  SIZE_MISMATCH: 'SIZE_MISMATCH',
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  CONTENT_TYPE_NOT_ALLOWED: 'CONTENT_TYPE_NOT_ALLOWED',
  UPLOAD_FAILED: 'UPLOAD_FAILED',
  UPLOAD_IN_PROGRESS: 'UPLOAD_IN_PROGRESS',
  UPLOAD_GONE: 'UPLOAD_GONE',
  INCOMPLETE_UPLOAD: 'INCOMPLETE_UPLOAD',
  NOT_UPLOADING: 'NOT_UPLOADING',
} as const;
