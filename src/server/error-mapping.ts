import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  CheckConstraintViolationException,
  ConnectionException,
  DeadlockException,
  ForeignKeyConstraintViolationException,
  LockWaitTimeoutException,
  NotFoundError,
  NotNullConstraintViolationException,
  OptimisticLockError,
  UniqueConstraintViolationException,
} from '@mikro-orm/core';
import { errors as joseErrors } from 'jose';
import { DomainError, type DomainErrorKind } from '../platform/domain-errors.ts';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '../../gen/yardmaster/v1/common_pb.ts';
import type { Logger } from '../platform/logger.ts';
import { isOutageError } from './outage-errors.ts';
import { serverReasons } from './server-reasons.ts';

/** The retry delay suggested during an outage: a PostgreSQL restart takes about a second. */
const outageRetryAfterMs = 1000;

const codeOfKind: Record<DomainErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  aborted: Code.Aborted,
  unavailable: Code.Unavailable,
};

/**
 * The one place where errors become what a client sees. Domain errors keep their safe
 * message and details; database and token library errors get a fixed message for
 * their class; anything else is Internal with no detail at all (it is logged instead),
 * so no stack trace, SQL or internal name ever leaves the server.
 */
export function toConnectError(error: unknown, logger: Logger | undefined): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof DomainError) return fromDomainError(error);
  if (error instanceof ConnectionException || isOutageError(error)) {
    logger?.warn({ err: error }, 'a dependency is unavailable');
    return fromDomainError(
      new DomainError('unavailable', 'a service the server depends on is unavailable: retry later', {
        reason: serverReasons.DEPENDENCY_UNAVAILABLE,
        retryAfterMs: outageRetryAfterMs,
      }),
    );
  }
  if (error instanceof UniqueConstraintViolationException) return new ConnectError('the resource already exists', Code.AlreadyExists);
  if (error instanceof ForeignKeyConstraintViolationException) {
    return new ConnectError('the change conflicts with related resources', Code.FailedPrecondition);
  }
  if (error instanceof NotNullConstraintViolationException || error instanceof CheckConstraintViolationException) {
    return new ConnectError('a value is missing or out of range', Code.InvalidArgument);
  }
  if (error instanceof DeadlockException || error instanceof LockWaitTimeoutException || error instanceof OptimisticLockError) {
    return new ConnectError('a concurrent change interfered: retry the call', Code.Aborted);
  }
  if (error instanceof NotFoundError) return new ConnectError('not found', Code.NotFound);
  if (error instanceof joseErrors.JOSEError) return new ConnectError('the credentials are not valid', Code.Unauthenticated);
  if (error instanceof Error && error.name === 'AbortError') return new ConnectError('the call was cancelled', Code.Canceled);
  logger?.error({ err: error }, 'unexpected error');
  return new ConnectError('internal error', Code.Internal);
}

function fromDomainError(error: DomainError): ConnectError {
  const details = [];
  const metadata = new Headers();
  if (error.violations.length > 0) {
    details.push({ desc: BadRequestSchema, value: { fieldViolations: error.violations } });
  }
  if (error.reason) {
    details.push({ desc: ErrorInfoSchema, value: { reason: error.reason, metadata: error.metadata } });
  }
  if (error.retryAfterMs !== undefined) {
    const seconds = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
    details.push({ desc: RetryInfoSchema, value: { retryDelay: durationFromMs(Math.max(0, Math.ceil(error.retryAfterMs))) } });
    metadata.set('retry-after', String(seconds));
  }
  // The domain error stays its cause, for interceptors that tell domain errors apart by class.
  return new ConnectError(error.message, codeOfKind[error.kind], metadata, details, error);
}
