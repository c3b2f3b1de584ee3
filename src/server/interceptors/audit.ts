import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { AuditLog } from '../../admin/audit-log.ts';
import { ErrorInfoSchema } from '../../../gen/yardmaster/v1/common_pb.ts';
import type { AccessPolicies } from '../access-policies.ts';
import { auditActorKey, auditTargetKey, callerKey, clientKey, requestIdKey } from '../context.ts';
import { toConnectError } from '../error-mapping.ts';
import { readFieldPath } from '../message-fields.ts';
import { codeName } from './code-names.ts';

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
    try {
      const res = await next(req);
      if (rule.audit === 'all') await record(undefined);
      return res;
    } catch (error) {
      const mapped = toConnectError(error, undefined);
      if (mapped.code !== Code.Canceled) await record(mapped);
      throw error;
    }
  };
}
