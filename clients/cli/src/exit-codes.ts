import { YardmasterError } from '@yardmaster/client';

/**
 * The exit codes of `yard`, documented in the README: scripts branch on them, so they
 * never change meaning. A failed call maps its Connect code to one of them.
 */
export const ExitCode = {
  ok: 0,
  /** Anything not listed below (Internal, Unknown, DataLoss, ...). */
  failure: 1,
  /** Bad command line: unknown command or option, missing argument, invalid value. */
  usage: 2,
  /** Not signed in, session expired, or wrong username or password (Unauthenticated). */
  unauthenticated: 3,
  /** Signed in, but not allowed (PermissionDenied). */
  permissionDenied: 4,
  /** No such job, file, user... (NotFound). */
  notFound: 5,
  /** The server refused the request as it is (InvalidArgument, FailedPrecondition, AlreadyExists, OutOfRange, Aborted). */
  rejected: 6,
  /** The server could not be reached or did not answer in time (Unavailable, DeadlineExceeded). */
  unavailable: 7,
  /** Rate limit or quota (ResourceExhausted). */
  exhausted: 8,
  /** The job followed by `watch` or `submit --wait` failed. */
  jobFailed: 10,
  /** The job followed by `watch` or `submit --wait` was cancelled. */
  jobCancelled: 11,
  /** Interrupted (Ctrl-C). */
  interrupted: 130,
} as const;

const byCodeName: Record<string, number> = {
  Unauthenticated: ExitCode.unauthenticated,
  PermissionDenied: ExitCode.permissionDenied,
  NotFound: ExitCode.notFound,
  InvalidArgument: ExitCode.rejected,
  FailedPrecondition: ExitCode.rejected,
  AlreadyExists: ExitCode.rejected,
  OutOfRange: ExitCode.rejected,
  Aborted: ExitCode.rejected,
  Unavailable: ExitCode.unavailable,
  DeadlineExceeded: ExitCode.unavailable,
  ResourceExhausted: ExitCode.exhausted,
  Canceled: ExitCode.interrupted,
};

/** A failure the CLI itself reports (bad input, nothing to do): a message and its exit code, no Connect code. */
export class CliFailure extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = ExitCode.usage) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** One line for standard error, and the exit code, for anything a command threw. */
export function describeFailure(thrown: unknown): { line: string; exitCode: number } {
  if (thrown instanceof CliFailure) return { line: thrown.message, exitCode: thrown.exitCode };
  const error = YardmasterError.from(thrown);
  const message = error.rawMessage || 'no message';
  // The field at fault, unless the message already names it.
  const fields = error.fieldViolations
    .map(({ field, description }) => `${field}: ${description}`)
    .filter((violation) => !message.includes(violation))
    .join('; ');
  const reason = error.reason ? ` [${error.reason}]` : '';
  const retry = error.retryAfterMs !== undefined ? ` (retry in ${Math.ceil(error.retryAfterMs / 1000)} s)` : '';
  return {
    line: `${error.codeName}: ${message}${fields ? ` (${fields})` : ''}${reason}${retry}`,
    exitCode: byCodeName[error.codeName] ?? ExitCode.failure,
  };
}
