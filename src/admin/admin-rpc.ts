import type { ServiceImpl } from '@connectrpc/connect';
import { timestampFromDate, ValueSchema, type Value } from '@bufbuild/protobuf/wkt';
import { fromJson, toJson, type JsonValue } from '@bufbuild/protobuf';
import { type AdminService as AdminServiceDesc, AuditOutcome, SettingType } from '../../gen/yardmaster/v1/admin_pb.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { AuditLog } from './audit-log.ts';
import type { AuditEvent } from './entities.ts';
import type { SettingTypeName } from '../platform/settings/setting-types.ts';
import type { SettingsAdmin, SettingView } from '../platform/settings/settings-store.ts';
import { countSystemTotals } from './system-totals.ts';
import { optionalTimestamp, requestTime } from '../platform/timestamps.ts';
import { invalidField } from '../platform/domain-errors.ts';

type AdminMethod = 'listSettings' | 'getSetting' | 'updateSetting' | 'listAuditEvents' | 'getMetrics';

const settingTypes: Record<SettingTypeName, SettingType> = {
  bool: SettingType.BOOL,
  integer: SettingType.INTEGER,
  duration: SettingType.DURATION,
  string: SettingType.STRING,
  string_list: SettingType.STRING_LIST,
  bytes: SettingType.BYTES,
};

function settingToProto(view: SettingView) {
  return {
    key: view.key,
    type: settingTypes[view.type],
    value: fromJson(ValueSchema, view.value as JsonValue),
    defaultValue: fromJson(ValueSchema, view.defaultValue as JsonValue),
    description: view.description,
    updatedBy: view.updatedByUsername ?? '',
    updateTime: optionalTimestamp(view.updatedAt),
  };
}

function auditEventToProto(event: AuditEvent) {
  return {
    id: event.id,
    createTime: timestampFromDate(event.createdAt),
    actorId: event.actorId ?? '',
    actorUsername: event.actorUsername ?? '',
    action: event.action,
    target: event.target ?? '',
    clientAddress: event.clientAddress,
    requestId: event.requestId,
    outcome: event.outcome === 'success' ? AuditOutcome.SUCCESS : AuditOutcome.FAILURE,
    errorCode: event.errorCode ?? '',
    reason: event.reason ?? '',
  };
}

export interface AdminRpcDeps {
  settings: SettingsAdmin;
  auditLog: AuditLog;
  /** Job counts by status name as the proto map keyed by JOB_STATUS_* (the jobs area's rule). */
  jobCountsToProto: (counts: Record<string, number>) => Record<string, bigint>;
}

/**
 * The part of AdminService the admin area holds: settings, the audit log and the system
 * metrics. The accounts are auth's (see auth/user-admin-rpc.ts); app.ts joins the two.
 */
export function createAdminRpc({
  settings,
  auditLog,
  jobCountsToProto,
}: AdminRpcDeps): Pick<ServiceImpl<typeof AdminServiceDesc>, AdminMethod> {
  return {
    async listSettings() {
      return { settings: settings.list().map(settingToProto) };
    },

    async getSetting(req) {
      return { setting: settingToProto(settings.describe(req.key)) };
    },

    async updateSetting(req, ctx) {
      const caller = callerOf(ctx);
      const view = await settings.update(entityManagerOf(ctx), req.key, req.value ? jsonValueOf(req.value) : null, {
        id: caller.userId,
        username: caller.username,
      });
      return { setting: settingToProto(view) };
    },

    async listAuditEvents(req, ctx) {
      const filter = {
        actor: req.actor.trim(),
        action: req.action.trim(),
        target: req.target.trim(),
        since: requestTime(req.startTime, 'start_time'),
        until: requestTime(req.endTime, 'end_time'),
        outcome:
          req.outcome === AuditOutcome.SUCCESS
            ? ('success' as const)
            : req.outcome === AuditOutcome.FAILURE
              ? ('failure' as const)
              : undefined,
      };
      const page = await auditLog.list(entityManagerOf(ctx), filter, req);
      return { auditEvents: page.items.map(auditEventToProto), nextPageToken: page.nextPageToken };
    },

    async getMetrics(_req, ctx) {
      const totals = await countSystemTotals(entityManagerOf(ctx));
      return {
        usersTotal: BigInt(totals.usersTotal),
        usersEnabled: BigInt(totals.usersEnabled),
        usersActive24h: BigInt(totals.usersActive24h),
        usersByRole: Object.fromEntries(
          Object.entries(totals.usersByRole).map(([role, count]) => [`ROLE_${role.toUpperCase()}`, BigInt(count)]),
        ),
        apiKeysActive: BigInt(totals.apiKeysActive),
        sessionsActive: BigInt(totals.sessionsActive),
        jobsByStatus: jobCountsToProto(totals.jobsByStatus),
        filesTotal: BigInt(totals.filesTotal),
        fileBytesTotal: BigInt(totals.fileBytesTotal),
      };
    },
  };
}

/** A setting's new value as JSON; NaN and infinities have no JSON form. */
function jsonValueOf(value: Value): JsonValue {
  try {
    return toJson(ValueSchema, value);
  } catch {
    throw invalidField('value', 'must be a JSON value (NaN and infinities are not)');
  }
}
