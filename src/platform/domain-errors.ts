/**
 * Errors the domain throws. They carry only what is safe to show a client; the error
 * mapping interceptor turns them into Connect errors. Domain code never imports Connect.
 */

export interface FieldViolation {
  /** Request field path in proto names, e.g. `user.email`. */
  field: string;
  description: string;
}

export type DomainErrorKind =
  | 'invalid_argument'
  | 'unauthenticated'
  | 'permission_denied'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'resource_exhausted'
  | 'aborted'
  | 'unavailable';

export interface DomainErrorOptions {
  /** Stable UPPER_SNAKE_CASE cause a client can branch on (AIP-193). */
  reason?: string;
  metadata?: Record<string, string>;
  violations?: FieldViolation[];
  retryAfterMs?: number;
}

export class DomainError extends Error {
  readonly kind: DomainErrorKind;
  readonly reason: string | undefined;
  readonly metadata: Record<string, string>;
  readonly violations: FieldViolation[];
  readonly retryAfterMs: number | undefined;

  constructor(kind: DomainErrorKind, message: string, options: DomainErrorOptions = {}) {
    super(message);
    this.name = 'DomainError';
    this.kind = kind;
    this.reason = options.reason;
    this.metadata = options.metadata ?? {};
    this.violations = options.violations ?? [];
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * A password the caller had to give and got wrong outside a sign-in (the current password
 * of a change): InvalidArgument to the client, and a failed guess to the credential rate
 * limit, which recognises it by its class.
 */
export class WrongPasswordError extends DomainError {
  constructor(message: string, options: DomainErrorOptions = {}) {
    super('invalid_argument', message, options);
    this.name = 'WrongPasswordError';
  }
}

export function invalidArgument(violations: FieldViolation[]): DomainError {
  const summary = violations.map((v) => `${v.field}: ${v.description}`).join('; ');
  return new DomainError('invalid_argument', summary, { violations });
}

export function invalidField(field: string, description: string): DomainError {
  return invalidArgument([{ field, description }]);
}

/** A resource that does not exist, or that the caller may not know exists. */
export function notFound(resource: string): DomainError {
  return new DomainError('not_found', `${resource} not found`);
}

export function unauthenticated(message: string, reason?: string): DomainError {
  return new DomainError('unauthenticated', message, { reason });
}

export function permissionDenied(message: string, reason?: string): DomainError {
  return new DomainError('permission_denied', message, { reason });
}

export function alreadyExists(message: string, field?: string): DomainError {
  return new DomainError('already_exists', message, {
    violations: field ? [{ field, description: message }] : [],
  });
}

export function failedPrecondition(message: string, reason?: string): DomainError {
  return new DomainError('failed_precondition', message, { reason });
}

export function resourceExhausted(message: string, retryAfterMs: number, reason?: string): DomainError {
  return new DomainError('resource_exhausted', message, { retryAfterMs, reason });
}

/**
 * Collects field violations so that one reply names every bad field, not just the first.
 */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): this {
    this.list.push({ field, description });
    return this;
  }

  /** Adds a violation when `ok` is false; returns `ok`. */
  check(ok: boolean, field: string, description: string): boolean {
    if (!ok) this.add(field, description);
    return ok;
  }

  throwIfAny(): void {
    if (this.list.length > 0) throw invalidArgument(this.list);
  }
}
