import { Code, ConnectError } from '@connectrpc/connect';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';

/** One rejected request field of an InvalidArgument error. */
export interface FieldViolation {
  /** Path of the field in the request (proto field names joined by dots, e.g. `params.seconds`). */
  field: string;
  description: string;
}

/**
 * A failed call with its details decoded: the Connect code, the ErrorInfo reason and
 * metadata, the BadRequest field violations and the RetryInfo delay. It is a ConnectError
 * (`instanceof ConnectError` holds, `findDetails` works), made from any thrown value with
 * `YardmasterError.from(error)`.
 */
export class YardmasterError extends ConnectError {
  /** The ErrorInfo reason, e.g. `RESYNC_REQUIRED`, `REFRESH_TOKEN_REUSED`; undefined when the server sent none. */
  readonly reason: string | undefined;
  /** The ErrorInfo metadata (e.g. `oldest_sequence` of a RESYNC_REQUIRED). */
  readonly info: Readonly<Record<string, string>>;
  /** The rejected fields of an InvalidArgument error, in request order. */
  readonly fieldViolations: readonly FieldViolation[];
  /** How long to wait before the same call may succeed (RetryInfo), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(error: ConnectError) {
    // The name stays "ConnectError": ConnectError's own instanceof check looks for it.
    super(error.rawMessage, error.code, error.metadata, undefined, error.cause ?? error);
    (this as { details: ConnectError['details'] }).details = error.details;
    const info = error.findDetails(ErrorInfoSchema)[0];
    this.reason = info?.reason || undefined;
    this.info = { ...(info?.metadata ?? {}) };
    this.fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((detail) => detail.fieldViolations.map(({ field, description }) => ({ field, description })));
    const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryAfterMs = delay ? Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1_000_000) : undefined;
  }

  /** ConnectError answers instanceof by shape, which every ConnectError has; this class by its prototype chain. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(YardmasterError, value);
  }

  /** The name of the Connect code, e.g. `InvalidArgument`. */
  get codeName(): string {
    return Code[this.code];
  }

  /** A YardmasterError for anything thrown: a ConnectError keeps its code and details; anything else is Unknown (an aborted signal is Canceled). */
  static override from(error: unknown, code: Code = Code.Unknown): YardmasterError {
    if (error instanceof YardmasterError) return error;
    return new YardmasterError(ConnectError.from(error, code));
  }
}

/** The ErrorInfo reason of a thrown value, if it is a ConnectError that carries one. */
export function errorReason(error: unknown): string | undefined {
  return error instanceof ConnectError ? YardmasterError.from(error).reason : undefined;
}

/** Whether the server said a stream's resume point is gone (FailedPrecondition RESYNC_REQUIRED). */
export function isResyncRequired(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.FailedPrecondition && errorReason(error) === 'RESYNC_REQUIRED';
}
