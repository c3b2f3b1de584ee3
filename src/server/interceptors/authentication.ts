import type { Interceptor } from '@connectrpc/connect';
import type { Authenticator } from '../../auth/authenticator.ts';
import { unauthenticated } from '../../domain-errors.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey, entityManagerKey } from '../context.ts';
import type { ServerMetrics } from '../metrics.ts';

const bearerPattern = /^Bearer\s+(\S+)\s*$/i;

/**
 * Establishes the caller from `Authorization: Bearer <access token | API key>`. On a
 * public method, credentials that do not check out are ignored (a stale token must not
 * stop a Login); everywhere else they are Unauthenticated.
 */
export function authenticationInterceptor(authenticator: Authenticator, policies: AccessPolicies, metrics: ServerMetrics): Interceptor {
  return (next) => async (req) => {
    const header = req.header.get('authorization');
    if (header !== null) {
      const isPublic = policies.forMethod(req.method).public;
      const bearer = bearerPattern.exec(header)?.[1];
      try {
        if (!bearer) throw unauthenticated('the Authorization header must be "Bearer <access token or API key>"', 'CREDENTIALS_MALFORMED');
        const caller = await authenticator.authenticate(req.contextValues.get(entityManagerKey)!, bearer);
        req.contextValues.set(callerKey, caller);
        metrics.authAttempts.inc({ kind: caller.apiKeyId ? 'api_key' : 'access_token', outcome: 'success' });
      } catch (error) {
        metrics.authAttempts.inc({ kind: bearer?.startsWith('ym_') ? 'api_key' : 'access_token', outcome: 'failure' });
        if (!isPublic) throw error;
      }
    }
    return next(req);
  };
}
