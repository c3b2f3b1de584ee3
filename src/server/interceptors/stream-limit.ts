import type { Interceptor } from '@connectrpc/connect';
import { DomainError } from '../../domain-errors.ts';
import { callerKey } from '../context.ts';
import { observeStream } from './server-streams.ts';

/** Open server streams one account may hold on one instance (admins are not limited). */
export const maxStreamsPerAccount = 100;

/**
 * Caps the server streams an account holds open on this instance: each costs memory and
 * a share of every event's fan-out, so one account must not open thousands.
 */
export function streamLimitInterceptor(limit = maxStreamsPerAccount): Interceptor {
  const open = new Map<string, number>();
  return (next) => async (req) => {
    const caller = req.contextValues.get(callerKey);
    if (req.method.methodKind !== 'server_streaming' || !caller || caller.role === 'admin') return next(req);
    const count = open.get(caller.userId) ?? 0;
    if (count >= limit) {
      throw new DomainError('resource_exhausted', `an account may hold at most ${limit} open streams on one server: close some first`, { reason: 'TOO_MANY_STREAMS' });
    }
    open.set(caller.userId, count + 1);
    const release = () => {
      const remaining = (open.get(caller.userId) ?? 1) - 1;
      if (remaining === 0) open.delete(caller.userId);
      else open.set(caller.userId, remaining);
    };
    let res;
    try {
      res = await next(req);
    } catch (error) {
      release();
      throw error;
    }
    // A server-streaming method always answers with a stream; the test narrows the type.
    return res.stream ? observeStream(res, req.signal, { end: release }) : res;
  };
}
