import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from '@connectrpc/connect';
import { DomainError } from '../../platform/domain-errors.ts';
import { ErrorInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';
import type { AccessPolicies, MethodAccess } from '../access-policies.ts';
import { callerKey, callRecordOf, clientKey, loggerOf, requestIdKey } from '../context.ts';
import { readFieldPath } from '../message-fields.ts';
import { codeName } from './code-names.ts';
import { withMappedErrors } from './error-mapping.ts';
import { observeStream } from './server-streams.ts';
import { serverReasons } from '../server-reasons.ts';
import type { ScopedInterceptor } from './method-chain.ts';

/** One call in the audit trail: who did what to which target, from where, and how it ended. */
export interface AuditEntry {
  actorId: string | undefined;
  actorUsername: string | undefined;
  action: string;
  target: string | undefined;
  clientAddress: string;
  requestId: string;
  outcome: 'success' | 'failure';
  errorCode: string | undefined;
  reason: string | undefined;
}

/** Where the audit interceptors write (the admin area's audit log; app.ts passes it). */
export interface AuditSink {
  /** Records a call that has ended; a failure to write is the sink's to report, not thrown. */
  record(entry: AuditEntry): Promise<void>;
  /** Records a call about to run; returns the record's id. Throws when it cannot be written. */
  begin(entry: Omit<AuditEntry, 'outcome' | 'errorCode' | 'reason'>): Promise<string>;
  /** Fills in the outcome of a call recorded by `begin`; a failure to write is not thrown. */
  finish(id: string, entry: AuditEntry): Promise<void>;
}

/** The record written before the call ran (by `writeAhead`), if one was. */
const auditRecordKey = createContextKey<{ id: string | undefined } | undefined>(undefined, { description: 'audit record' });

/** How long a client should wait before retrying a call refused for want of its audit record. */
const auditRetryAfterMs = 1000;

/**
 * The audit log's two interceptors. `record`, outside authentication so that calls with
 * bad credentials are audited too, writes the record of every call of a method declared
 * audited, whatever its outcome, with actor, target (the request field the contract
 * names, or what the handler learnt), client address and request id. `writeAhead`, last
 * before the handler, writes the record of a call that will run before it runs: a call
 * whose record cannot be written is refused (Unavailable) instead of acting unrecorded.
 */
export function auditInterceptors(
  auditLog: AuditSink,
  policies: AccessPolicies,
): { record: ScopedInterceptor; writeAhead: ScopedInterceptor } {
  const entryOf = (req: Parameters<Parameters<Interceptor>[0]>[0], error: ConnectError | undefined): AuditEntry => {
    const rule = policies.forMethod(req.method);
    const values = req.contextValues;
    const recorded = callRecordOf(values);
    const actor = values.get(callerKey) ?? recorded.actor;
    return {
      actorId: actor?.userId,
      actorUsername: actor?.username,
      action: rule.name,
      target: recorded.target ?? (req.stream ? undefined : readFieldPath(req.method.input, req.message, rule.auditTargetField).trim()),
      clientAddress: values.get(clientKey).clientAddress,
      requestId: values.get(requestIdKey),
      outcome: error ? 'failure' : 'success',
      errorCode: error ? codeName(error.code) : undefined,
      reason: error?.findDetails(ErrorInfoSchema)[0]?.reason,
    };
  };

  // Outcomes are read as the client will see them: errors come out of `next` mapped.
  const record: Interceptor = (unmapped) => {
    const next = withMappedErrors(unmapped);
    return async (req) => {
      const rule = policies.forMethod(req.method);
      if (rule.audit === 'none') return unmapped(req);
      const values = req.contextValues;
      const written: { id: string | undefined } = { id: undefined };
      values.set(auditRecordKey, written);
      // The caller is known only once authentication (further in) has run.
      const write = async (error: ConnectError | undefined) => {
        const entry = entryOf(req, error);
        if (written.id !== undefined) await auditLog.finish(written.id, entry);
        else if (isAudited(rule, values, error !== undefined)) await auditLog.record(entry);
      };
      const recordFailure = async (error: ConnectError, evenIfCanceled: boolean) => {
        if (evenIfCanceled || error.code !== Code.Canceled || written.id !== undefined) await write(error);
      };
      let res: Awaited<ReturnType<typeof next>>;
      try {
        res = await next(req);
      } catch (error) {
        await recordFailure(error as ConnectError, false);
        throw error;
      }
      if (!res.stream) {
        await write(undefined);
        return res;
      }
      // A server stream's work happens as it is read: it is recorded when it ends, with what
      // the handler learnt meanwhile (its target), also when the client stopped reading.
      return observeStream(res, req, {
        end: async (how) => {
          if (how.kind === 'failed') await recordFailure(how.error as ConnectError, true);
          else if (how.kind === 'done') await write(undefined);
          else await write(new ConnectError('the client stopped reading', Code.Canceled));
        },
      });
    };
  };

  const writeAhead: Interceptor = (next) => async (req) => {
    const rule = policies.forMethod(req.method);
    const written = req.contextValues.get(auditRecordKey);
    if (!written || !isAudited(rule, req.contextValues, false)) return next(req);
    const entry = entryOf(req, undefined);
    try {
      written.id = await auditLog.begin(entry);
    } catch (error) {
      loggerOf(req.contextValues)?.error({ err: error, audit: entry }, 'could not write an audit event: the call was refused');
      throw new DomainError('unavailable', 'the call could not be recorded in the audit log, so it was not carried out: retry later', {
        reason: serverReasons.AUDIT_LOG_UNAVAILABLE,
        retryAfterMs: auditRetryAfterMs,
      });
    }
    return next(req);
  };

  const audited = (rule: MethodAccess) => rule.audit !== 'none';
  return { record: { interceptor: record, appliesTo: audited }, writeAhead: { interceptor: writeAhead, appliesTo: audited } };
}

/** Whether a call of `rule`'s method is recorded; the caller is known once authentication has run. */
function isAudited(rule: MethodAccess, values: ContextValues, failed: boolean): boolean {
  return (
    rule.audit === 'all' ||
    (rule.audit === 'failures' && failed) ||
    (rule.audit === 'admin_calls' && values.get(callerKey)?.role === 'admin')
  );
}
