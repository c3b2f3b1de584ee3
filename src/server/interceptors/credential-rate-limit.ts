import { Code, type Interceptor } from '@connectrpc/connect';
import type { CredentialRateLimiter } from '../../auth/credential-rate-limiter.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey, clientKey } from '../context.ts';
import { toConnectError } from '../error-mapping.ts';
import { ErrorInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';
import { readFieldPath } from '../message-fields.ts';
import type { ServerMetrics } from '../metrics.ts';

/** Outcomes that look like guessing: wrong credentials, taken names, closed doors. */
const failureCodes = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.AlreadyExists]);
/** Reasons that are guessing whatever their code (a wrong current password is InvalidArgument). */
const failureReasons = new Set(['WRONG_PASSWORD']);

/**
 * Rate limits the methods the contract marks as credential-checking, per client address
 * and per account (the request field the contract names, else the signed-in caller's),
 * across every instance.
 */
export function credentialRateLimitInterceptor(limiter: CredentialRateLimiter, policies: AccessPolicies, metrics: ServerMetrics): Interceptor {
  return (next) => async (req) => {
    const rule = policies.forMethod(req.method);
    if (!rule.rateLimit || req.stream) return next(req);
    const address = req.contextValues.get(clientKey).clientAddress;
    const accountName = readFieldPath(req.method.input, req.message, rule.rateLimit.accountField);
    const caller = req.contextValues.get(callerKey);
    const account = accountName.trim() !== '' ? await limiter.accountKeyOf(accountName) : caller ? limiter.accountKeyOfUser(caller.userId) : undefined;
    const kind = req.method.name.toLowerCase();
    await limiter.admit(address, account);
    try {
      const res = await next(req);
      metrics.authAttempts.inc({ kind, outcome: 'success' });
      await limiter.recordSuccess(account);
      return res;
    } catch (error) {
      const mapped = toConnectError(error, undefined);
      if (failureCodes.has(mapped.code) || failureReasons.has(mapped.findDetails(ErrorInfoSchema)[0]?.reason ?? '')) {
        metrics.authAttempts.inc({ kind, outcome: 'failure' });
        await limiter.recordFailure(address, account);
      }
      throw error;
    }
  };
}
