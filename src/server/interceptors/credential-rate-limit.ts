import { Code, type ConnectError, type Interceptor } from '@connectrpc/connect';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey, clientKey, requestIdKey } from '../context.ts';
import { WrongPasswordError } from '../../platform/domain-errors.ts';
import { readFieldPath } from '../message-fields.ts';
import type { ServerMetrics } from '../metrics.ts';
import { serverReasons } from '../server-reasons.ts';
import type { AuditSink } from './audit.ts';
import { withMappedErrors } from './error-mapping.ts';
import type { ScopedInterceptor } from './method-chain.ts';

/** How an attempt ended: right credentials, a failed guess, or refused before any credential was checked. */
export type AttemptOutcome = 'success' | 'failure' | 'not_evaluated';

/**
 * Counts credential-checking attempts per client address and per account, across every
 * instance (the auth area's credential rate limiter; app.ts passes it).
 */
export interface AttemptLimiter {
  /** The account key of a name as a request gives it. */
  accountKeyOf(accountName: string): Promise<string>;
  accountKeyOfUser(userId: string): string;
  /** Takes the attempt's slots, or throws when a limit refuses it; `settle` says how it ended. */
  reserve(
    address: string,
    account: string | undefined,
    options: { checksPassword: boolean },
  ): Promise<{ settle(outcome: AttemptOutcome): Promise<{ accountThrottled: boolean }> }>;
}

/** Outcomes that look like guessing: wrong credentials, taken names, closed doors. */
const failureCodes = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.AlreadyExists]);
/** The audit action of an account reaching auth.account_throttle_threshold. */
const accountThrottledAction = 'yardmaster.v1.AuthService.AccountThrottled';

/**
 * Rate limits the methods the contract marks as credential-checking, per client address
 * and per account (the request field the contract names, else the signed-in caller's),
 * across every instance. The attempt's slots are taken before the handler checks any
 * credential, and given back when it turns out no guess was made.
 */
export function credentialRateLimitInterceptor(
  limiter: AttemptLimiter,
  policies: AccessPolicies,
  metrics: ServerMetrics,
  auditLog: AuditSink,
): ScopedInterceptor {
  const interceptor: Interceptor = (next) => {
    // The outcome is read as the client will see it: errors come out mapped.
    const mappedNext = withMappedErrors(next);
    return async (req) => {
      const rule = policies.forMethod(req.method);
      if (!rule.rateLimit || req.stream) return next(req);
      const client = req.contextValues.get(clientKey);
      const accountName = readFieldPath(req.method.input, req.message, rule.rateLimit.accountField);
      const caller = req.contextValues.get(callerKey);
      const account =
        accountName.trim() !== '' ? await limiter.accountKeyOf(accountName) : caller ? limiter.accountKeyOfUser(caller.userId) : undefined;
      const kind = req.method.name.toLowerCase();
      const reservation = await limiter.reserve(client.clientAddress, account, { checksPassword: rule.rateLimit.checksPassword });
      let outcome: AttemptOutcome = 'not_evaluated';
      try {
        const res = await mappedNext(req);
        outcome = 'success';
        metrics.countAuthAttempt(kind, 'success');
        return res;
      } catch (error) {
        const mapped = error as ConnectError;
        // A wrong current password is a guess too, though its code is InvalidArgument.
        if (failureCodes.has(mapped.code) || mapped.cause instanceof WrongPasswordError) {
          outcome = 'failure';
          metrics.countAuthAttempt(kind, 'failure');
        }
        throw error;
      } finally {
        const { accountThrottled } = await reservation.settle(outcome);
        if (accountThrottled && account !== undefined) {
          await auditLog.record({
            actorId: undefined,
            actorUsername: undefined,
            action: accountThrottledAction,
            target: account.replace(/^(id|name):/, ''),
            clientAddress: client.clientAddress,
            requestId: req.contextValues.get(requestIdKey),
            outcome: 'failure',
            errorCode: undefined,
            reason: serverReasons.ACCOUNT_THROTTLED,
          });
        }
      }
    };
  };
  return { interceptor, appliesTo: (rule) => rule.rateLimit !== undefined };
}
