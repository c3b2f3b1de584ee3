import type { Interceptor } from '@connectrpc/connect';
import { permissionDenied, unauthenticated } from '../../platform/domain-errors.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey } from '../context.ts';
import { serverReasons } from '../server-reasons.ts';
import type { ScopedInterceptor } from './method-chain.ts';

/**
 * Enforces the access rule the contract declares for the method; handlers never check roles.
 * Not an async function: it only checks and then hands on `next`'s own promise (an async
 * step per call would add a promise and a turn of the microtask queue; what it throws
 * reaches the interceptors around it as a rejection would, through their `await next`).
 */
export function authorizationInterceptor(policies: AccessPolicies): ScopedInterceptor {
  const interceptor: Interceptor = (next) => (req) => {
    const rule = policies.forMethod(req.method);
    if (!rule.public) {
      const caller = req.contextValues.get(callerKey);
      if (!caller)
        throw unauthenticated(
          'this method needs credentials: send "Authorization: Bearer <access token or API key>"',
          serverReasons.CREDENTIALS_REQUIRED,
        );
      if (!rule.roles.has(caller.role)) {
        throw permissionDenied(`${rule.name} is not allowed for the role ${caller.role}`, serverReasons.ROLE_NOT_ALLOWED);
      }
      if (rule.sessionRequired && caller.sessionId === undefined) {
        throw permissionDenied(
          `${rule.name} manages credentials and needs an access token from Login: an API key may not call it`,
          serverReasons.SESSION_REQUIRED,
        );
      }
    }
    return next(req);
  };
  return { interceptor, appliesTo: (rule) => !rule.public };
}
