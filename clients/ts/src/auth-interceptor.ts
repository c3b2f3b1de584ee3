import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { TokenSession } from './token-session.ts';

/**
 * Sends the session's credential with every call. When a unary call comes back
 * Unauthenticated (the access token expired or was revoked) and the session can
 * refresh, it refreshes once and retries the call once.
 */
export function authInterceptor(session: TokenSession): Interceptor {
  return (next) => async (req) => {
    const bearer = await session.bearer();
    if (bearer) req.header.set('Authorization', `Bearer ${bearer}`);
    try {
      return await next(req);
    } catch (error) {
      const retryable =
        !req.stream && bearer !== undefined && session.canRefresh && error instanceof ConnectError && error.code === Code.Unauthenticated;
      if (!retryable) throw error;
      const sentToken = bearer;
      // Another call may have refreshed meanwhile; only refresh if the token is still the failed one.
      const fresh = session.tokens?.accessToken !== sentToken ? session.tokens : await session.refresh().catch(() => undefined);
      if (!fresh) throw error;
      req.header.set('Authorization', `Bearer ${fresh.accessToken}`);
      return next(req);
    }
  };
}
