import type { Interceptor } from '@connectrpc/connect';
import type { Caller } from '../../platform/caller.ts';
import type { EntityManager } from '../../platform/db/orm.ts';
import { unauthenticated } from '../../platform/domain-errors.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { callerKey, directFramesKey, entityManagerKey } from '../context.ts';
import type { DirectFrames } from '../direct-frames.ts';
import type { ServerMetrics } from '../metrics.ts';
import { observeStream, type StreamHooks } from './server-streams.ts';
import { serverReasons } from '../server-reasons.ts';

/** Turns a bearer credential (an access token or an API key) into its caller, or throws (the auth area's authenticator). */
export interface CredentialVerifier {
  /** `em` is called only when the credential has to be looked up. */
  authenticate(em: () => EntityManager, bearer: string): Promise<Caller>;
}

const bearerPattern = /^Bearer\s+(\S+)\s*$/i;

/**
 * How often a server stream checks its credential again (at the next message after this,
 * and streams send one at least every heartbeat interval).
 */
export const streamRecheckIntervalMs = 5000;

/**
 * Establishes the caller from `Authorization: Bearer <access token | API key>`. On a
 * public method, credentials that do not check out are ignored (a stale token must not
 * stop a Login); everywhere else they are Unauthenticated. A server stream outlives the
 * moment it was authorised, so it checks its credential again as it goes: an ended
 * session, a revoked key, a deactivated account or a changed role ends it.
 */
export function authenticationInterceptor(
  authenticator: CredentialVerifier,
  policies: AccessPolicies,
  metrics: ServerMetrics,
): Interceptor {
  // Streams of one credential (a dashboard's thousand streams on one key) share each re-check.
  const rechecks = new Map<string, Promise<Caller>>();
  const recheck = async (em: () => EntityManager, bearer: string, caller: Caller) => {
    let pending = rechecks.get(bearer);
    if (!pending) {
      pending = authenticator.authenticate(em, bearer).finally(() => rechecks.delete(bearer));
      rechecks.set(bearer, pending);
    }
    const now = await pending;
    // What a stream shows was decided for the role it started with.
    if (now.role !== caller.role)
      throw unauthenticated('the role of this account changed: open the stream again', serverReasons.CREDENTIALS_CHANGED);
  };
  return (next) => async (req) => {
    const header = req.header.get('authorization');
    let caller: Caller | undefined;
    let bearer: string | undefined;
    const em = req.contextValues.get(entityManagerKey)!;
    if (header !== null) {
      const isPublic = policies.forMethod(req.method).public;
      bearer = bearerPattern.exec(header)?.[1];
      try {
        if (!bearer)
          throw unauthenticated('the Authorization header must be "Bearer <access token or API key>"', serverReasons.CREDENTIALS_MALFORMED);
        caller = await authenticator.authenticate(em, bearer);
        req.contextValues.set(callerKey, caller);
        metrics.countAuthAttempt(caller.apiKeyId ? 'api_key' : 'access_token', 'success');
      } catch (error) {
        metrics.countAuthAttempt(bearer?.startsWith('ym_') ? 'api_key' : 'access_token', 'failure');
        if (!isPublic) throw error;
      }
    }
    const res = await next(req);
    if (!res.stream || !caller || !bearer) return res;
    return observeStream(res, req, recheckHooks(recheck, em, bearer, caller, req.contextValues.get(directFramesKey)));
  };
}

/**
 * A stream's credential re-check: before a message once the interval has passed, or (once
 * the stream has left Connect's pipeline) on a timer. Made here, not inside the
 * interceptor: a taken stream keeps these hooks, and a closure made there would keep the
 * call's request and the chain of every `next`.
 */
function recheckHooks(
  recheck: (em: () => EntityManager, bearer: string, caller: Caller) => Promise<void>,
  em: () => EntityManager,
  bearer: string,
  caller: Caller,
  directFrames: DirectFrames | undefined,
): StreamHooks {
  let checkedAt = Date.now();
  // Messages written around Connect's pipeline skip `beforeMessage`: once a check is due,
  // the next message comes through here again.
  directFrames?.passMessagesFrom(checkedAt + streamRecheckIntervalMs);
  const check = () => recheck(() => em().fork(), bearer, caller);
  return {
    beforeMessage: async () => {
      if (Date.now() - checkedAt < streamRecheckIntervalMs) return;
      await check();
      checkedAt = Date.now();
      directFrames?.passMessagesFrom(checkedAt + streamRecheckIntervalMs);
    },
    whileTaken: { everyMs: streamRecheckIntervalMs, run: check },
  };
}
