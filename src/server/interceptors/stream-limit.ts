import type { Interceptor } from '@connectrpc/connect';
import { DomainError } from '../../platform/domain-errors.ts';
import { callerKey, clientKey } from '../context.ts';
import { OpenCounts } from '../open-counts.ts';
import { holdDuringCall } from './server-streams.ts';
import type { ScopedInterceptor } from './method-chain.ts';
import { serverReasons } from '../server-reasons.ts';

export interface StreamLimits {
  /** Open server (and bidi) streams one non-admin account may hold on one instance. */
  perAccount: number;
  /** Open streams (server or bidi) without credentials from one client address. */
  anonymousPerAddress: number;
  /** Open streams without credentials on one instance, all addresses together. */
  anonymousTotal: number;
}

export const defaultStreamLimits: StreamLimits = { perAccount: 100, anonymousPerAddress: 20, anonymousTotal: 500 };

/**
 * Caps the streams held open on this instance: each costs memory and a share of every
 * event's fan-out. Accounts are counted by account (admins are not limited); callers
 * without credentials (Health.Watch, reflection: the public streams) by client address,
 * and all of them together, so that no crowd of anonymous streams can starve the
 * signed-in ones.
 */
export function streamLimitInterceptor(limits: StreamLimits = defaultStreamLimits): ScopedInterceptor {
  const perAccount = new OpenCounts();
  const perAddress = new OpenCounts();
  let anonymousOpen = 0;
  const interceptor: Interceptor = (next) => async (req) => {
    if (req.method.methodKind === 'unary') return next(req);
    const caller = req.contextValues.get(callerKey);
    let release: () => void;
    if (caller) {
      // Uploads (client streams) end when their bytes are in; they are bounded elsewhere.
      if (req.method.methodKind === 'client_streaming' || caller.role === 'admin') return next(req);
      if (perAccount.get(caller.userId) >= limits.perAccount) {
        throw new DomainError(
          'resource_exhausted',
          `an account may hold at most ${limits.perAccount} open streams on one server: close some first`,
          { reason: serverReasons.TOO_MANY_STREAMS },
        );
      }
      release = perAccount.take(caller.userId);
    } else {
      const address = req.contextValues.get(clientKey).clientAddress;
      if (perAddress.get(address) >= limits.anonymousPerAddress) {
        throw new DomainError(
          'resource_exhausted',
          `at most ${limits.anonymousPerAddress} open streams from one address without signing in: close some first`,
          {
            reason: serverReasons.TOO_MANY_STREAMS,
          },
        );
      }
      if (anonymousOpen >= limits.anonymousTotal) {
        throw new DomainError(
          'resource_exhausted',
          `this server holds its limit of ${limits.anonymousTotal} open streams without signing in: retry later, or sign in`,
          {
            reason: serverReasons.ANONYMOUS_STREAMS_EXHAUSTED,
          },
        );
      }
      const releaseAddress = perAddress.take(address);
      anonymousOpen++;
      release = () => {
        releaseAddress();
        anonymousOpen--;
      };
    }
    return holdDuringCall(() => next(req), req, release);
  };
  return { interceptor, appliesTo: (_rule, method) => method.methodKind !== 'unary' };
}
