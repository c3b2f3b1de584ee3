import { createContextKey, type HandlerContext } from '@connectrpc/connect';
import type { Caller, ClientInfo } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import type { Logger } from '../platform/logger.ts';

/**
 * Per-call values that the plumbing establishes and handlers read. Handlers pass what
 * the domain needs explicitly; nothing below the handlers reads these.
 */
export const requestIdKey = createContextKey<string>('', { description: 'request id' });
export const clientKey = createContextKey<ClientInfo>({ clientAddress: '', userAgent: '' }, { description: 'client' });
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: 'caller' });
export const loggerKey = createContextKey<Logger | undefined>(undefined, { description: 'logger' });
export const entityManagerKey = createContextKey<EntityManager | undefined>(undefined, { description: 'entity manager' });
/**
 * The account an anonymous call acted as once it succeeded (Login, Register), so the
 * audit record names it as the actor.
 */
export const auditActorKey = createContextKey<{ id: string; username: string } | undefined>(undefined, { description: 'audit actor' });
/**
 * What the call acted on, when no request field can say it (a refresh token is a secret:
 * the audit record names its session instead).
 */
export const auditTargetKey = createContextKey<string | undefined>(undefined, { description: 'audit target' });

/** The EntityManager fork of this call. */
export function entityManagerOf(ctx: HandlerContext): EntityManager {
  const em = ctx.values.get(entityManagerKey);
  if (!em) throw new Error('no EntityManager in the call context');
  return em;
}

/** The authenticated caller; the authorization interceptor guarantees one on non-public methods. */
export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new Error('no caller in the call context of a method that requires one');
  return caller;
}
