import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { AuditLog } from '../../admin/audit-log.ts';
import { ErrorInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { auditActorKey, auditTargetKey, callerKey, clientKey, requestIdKey } from '../context.ts';
import { toConnectError } from '../error-mapping.ts';
import { readFieldPath } from '../message-fields.ts';
import { codeName } from './code-names.ts';
import { observeStream } from './server-streams.ts';

/**
 * Writes an audit record for every call of a method declared audited, whatever its
 * outcome, with actor, target (the request field the contract names), client address
 * and request id.
 */
export function auditInterceptor(auditLog: AuditLog, policies: AccessPolicies): Interceptor {
  return (next) => async (req) => {
    const rule = policies.forMethod(req.method);
    if (rule.audit === 'none') return next(req);
    const values = req.contextValues;
    // The caller is known only once authentication (further in) has run.
    const audited = (failed: boolean) => rule.audit === 'all' || (rule.audit === 'failures' && failed) || (rule.audit === 'admin_calls' && values.get(callerKey)?.role === 'admin');
    const record = async (error: ConnectError | undefined) => {
      const actor = values.get(callerKey) ?? values.get(auditActorKey);
      const actorId = actor && 'userId' in actor ? actor.userId : actor?.id;
      await auditLog.record({
        actorId,
        actorUsername: actor?.username,
        action: rule.name,
        target: values.get(auditTargetKey) ?? (req.stream ? undefined : readFieldPath(req.method.input, req.message, rule.auditTargetField).trim()),
        clientAddress: values.get(clientKey).clientAddress,
        requestId: values.get(requestIdKey),
        outcome: error ? 'failure' : 'success',
        errorCode: error ? codeName(error.code) : undefined,
        reason: error?.findDetails(ErrorInfoSchema)[0]?.reason,
      });
    };
    const recordFailure = async (error: unknown, evenIfCanceled: boolean) => {
      const mapped = toConnectError(error, undefined);
      if ((evenIfCanceled || mapped.code !== Code.Canceled) && audited(true)) await record(mapped);
    };
    let res;
    try {
      res = await next(req);
    } catch (error) {
      await recordFailure(error, false);
      throw error;
    }
    if (!res.stream) {
      if (audited(false)) await record(undefined);
      return res;
    }
    // A server stream's work happens as it is read: it is recorded when it ends, with what
    // the handler learnt meanwhile (its target), also when the client stopped reading.
    return observeStream(res, req.signal, {
      end: async (how) => {
        if (how.kind === 'failed') await recordFailure(how.error, true);
        else if (how.kind === 'done' && audited(false)) await record(undefined);
        else if (how.kind === 'stopped' && audited(true)) await record(new ConnectError('the client stopped reading', Code.Canceled));
      },
    });
  };
}
