import type { Interceptor } from '@connectrpc/connect';
import type { SettingsStore } from '../../admin/settings-store.ts';
import { resourceExhausted } from '../../domain-errors.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey } from '../context.ts';
import { observeStream } from './server-streams.ts';

/** The retry delay suggested to an account over its limit: heavy calls take about that long. */
const heavyCallRetryAfterMs = 1000;

/**
 * Caps the heavy calls (those the contract declares `heavy`) that one account runs at
 * once on this instance, admins included: each can hold a database connection or the
 * storage for long, and the pool is shared by everyone. The count is per instance, not
 * across instances: each instance protects its own pool.
 */
export function heavyCallLimitInterceptor(policies: AccessPolicies, settings: Pick<SettingsStore, 'get'>): Interceptor {
  const running = new Map<string, number>();
  return (next) => async (req) => {
    const caller = req.contextValues.get(callerKey);
    if (!caller || !policies.forMethod(req.method).heavy) return next(req);
    const limit = settings.get('limits.heavy_calls_per_account');
    const count = running.get(caller.userId) ?? 0;
    if (count >= limit) {
      throw resourceExhausted(`an account may run at most ${limit} heavy calls at once on one server: retry when one has finished`, heavyCallRetryAfterMs, 'TOO_MANY_HEAVY_CALLS');
    }
    running.set(caller.userId, count + 1);
    const release = () => {
      const remaining = (running.get(caller.userId) ?? 1) - 1;
      if (remaining === 0) running.delete(caller.userId);
      else running.set(caller.userId, remaining);
    };
    let res;
    try {
      res = await next(req);
    } catch (error) {
      release();
      throw error;
    }
    if (!res.stream) {
      release();
      return res;
    }
    return observeStream(res, req.signal, { end: release });
  };
}
