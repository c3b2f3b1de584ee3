import { createContextKey, type ContextValues, type HandlerContext } from '@connectrpc/connect';
import type { Caller, ClientInfo } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import type { Logger } from '../platform/logger.ts';
import type { DirectFrames } from './direct-frames.ts';
import type { StreamHandoff } from './stream-handoff.ts';

/**
 * Per-call values that the plumbing establishes and handlers read. Handlers pass what
 * the domain needs explicitly; nothing below the handlers reads these.
 */
export const requestIdKey = createContextKey<string>('', { description: 'request id' });
export const clientKey = createContextKey<ClientInfo>({ clientAddress: '', userAgent: '' }, { description: 'client' });
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: 'caller' });
/** The call's logger (with its request id), made the first time something logs through it: most calls never do. */
export const loggerKey = createContextKey<(() => Logger) | undefined>(undefined, { description: 'logger' });
/** The call's EntityManager, forked the first time something asks for it (many calls never do). */
export const entityManagerKey = createContextKey<(() => EntityManager) | undefined>(undefined, { description: 'entity manager' });

/** `make`, called once and only when first needed. */
export function onFirstUse<T>(make: () => T): () => T {
  let made: T | undefined;
  return () => (made ??= make());
}

/** The call's logger, when the plumbing set one. */
export function loggerOf(values: ContextValues): Logger | undefined {
  return values.get(loggerKey)?.();
}

/** Set on the other server-streaming calls: their response, for frames written around Connect's pipeline (Download's chunks). */
export const directFramesKey = createContextKey<DirectFrames | undefined>(undefined, { description: 'direct frames' });
/** Set on the server-streaming calls that may leave Connect's pipeline once set up (see `StreamHandoff`). */
export const streamHandoffKey = createContextKey<StreamHandoff | undefined>(undefined, { description: 'stream handoff' });
/**
 * What a call did that neither its request nor its caller says, for its audit record.
 * Handlers add to it with `recordCall`; the audit interceptor reads it when the call ends.
 */
export interface CallRecord {
  /** The account an anonymous call acted as (Login, Register; a refresh's session owner). */
  actor?: { userId: string; username: string };
  /**
   * What the call acted on, when no request field can say it (a refresh token is a secret:
   * the record names its session instead).
   */
  target?: string;
}

const callRecordKey = createContextKey<CallRecord>({}, { description: 'call record' });

/** Adds to what this call did, for its audit record. */
export function recordCall(ctx: HandlerContext, facts: CallRecord): void {
  ctx.values.set(callRecordKey, { ...ctx.values.get(callRecordKey), ...facts });
}

/** What the call's handler recorded of it (empty when nothing). */
export function callRecordOf(values: ContextValues): CallRecord {
  return values.get(callRecordKey);
}

/** The EntityManager fork of this call. */
export function entityManagerOf(ctx: HandlerContext): EntityManager {
  const em = ctx.values.get(entityManagerKey);
  if (!em) throw new Error('no EntityManager in the call context');
  return em();
}

/** The authenticated caller; the authorization interceptor guarantees one on non-public methods. */
export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error('no caller in the call context of a method that requires one');
  return caller;
}
