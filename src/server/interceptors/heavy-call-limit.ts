import type { Interceptor } from '@connectrpc/connect';
import type { SettingsReader } from '../../platform/settings/settings-store.ts';
import type { serverSettings } from '../server-settings.ts';
import { resourceExhausted } from '../../platform/domain-errors.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey } from '../context.ts';
import { OpenCounts } from '../open-counts.ts';
import { holdDuringCall } from './server-streams.ts';
import type { ScopedInterceptor } from './method-chain.ts';
import { serverReasons } from '../server-reasons.ts';

/** The retry delay suggested to an account over its limit: heavy calls take about that long. */
const heavyCallRetryAfterMs = 1000;

/**
 * Caps the heavy calls (those the contract declares `heavy`) that one account runs at
 * once on this instance, admins included: each can hold a database connection or the
 * storage for long, and the pool is shared by everyone. The count is per instance, not
 * across instances: each instance protects its own pool.
 */
export function heavyCallLimitInterceptor(
  policies: AccessPolicies,
  settings: Pick<SettingsReader<typeof serverSettings>, 'get'>,
): ScopedInterceptor {
  const running = new OpenCounts();
  const interceptor: Interceptor = (next) => async (req) => {
    const caller = req.contextValues.get(callerKey);
    if (!caller || !policies.forMethod(req.method).heavy) return next(req);
    const limit = settings.get('limits.heavy_calls_per_account');
    if (running.get(caller.userId) >= limit) {
      throw resourceExhausted(
        `an account may run at most ${limit} heavy calls at once on one server: retry when one has finished`,
        heavyCallRetryAfterMs,
        serverReasons.TOO_MANY_HEAVY_CALLS,
      );
    }
    return holdDuringCall(() => next(req), req, running.take(caller.userId));
  };
  return { interceptor, appliesTo: (rule) => rule.heavy };
}
