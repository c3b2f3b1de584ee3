import type { ServiceImpl } from '@connectrpc/connect';
import { timestampFromDate, ValueSchema, type Value } from '@bufbuild/protobuf/wkt';
import { fromJson, toJson, type JsonValue } from '@bufbuild/protobuf';
import { AdminService as AdminServiceDesc, AuditOutcome, SettingType } from '../../gen/yardmaster/v1/admin_pb.ts';
import { roleFromProto } from '../platform/role-names.ts';
import { optionalTimestamp, userToProto } from '../auth/user-messages.ts';
import type { CredentialRateLimiter } from '../auth/credential-rate-limiter.ts';
import type { SigningKeys } from '../auth/signing-keys.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { AuditLog } from './audit-log.ts';
import type { AuditEvent } from './entities.ts';
import type { SettingTypeName } from '../platform/settings/setting-types.ts';
import type { SettingsAdmin, SettingView } from '../platform/settings/settings-store.ts';
import { countSystemTotals } from './system-totals.ts';
import { requestTime } from '../platform/timestamps.ts';
import { invalidField } from '../platform/domain-errors.ts';
import { countsByStatusToProto } from '../jobs/job-messages.ts';
import type { UserAdmin } from './user-admin.ts';

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
  users: UserAdmin;
  settings: SettingsAdmin;
  auditLog: AuditLog;
  signingKeys: SigningKeys;
  credentialLimiter: CredentialRateLimiter;
}

export function createAdminRpc({ users, settings, auditLog, signingKeys, credentialLimiter }: AdminRpcDeps): ServiceImpl<typeof AdminServiceDesc> {
  return {
    async listUsers(req, ctx) {
      const filter = { query: req.query, role: roleFromProto(req.role), active: req.active, orderBy: req.orderBy };
      const page = await users.listUsers(entityManagerOf(ctx), filter, req);
      return { users: page.items.map(userToProto), nextPageToken: page.nextPageToken };
    },

    async getUser(req, ctx) {
      return { user: userToProto(await users.getUser(entityManagerOf(ctx), req.id)) };
    },

    async createUser(req, ctx) {
      const user = await users.createUser(entityManagerOf(ctx), { ...req, role: roleFromProto(req.role) });
      return { user: userToProto(user) };
    },

    async updateUser(req, ctx) {
      const changes = {
        username: req.user?.username,
        email: req.user?.email,
        role: req.user ? roleFromProto(req.user.role) : undefined,
        active: req.user?.active,
      };
      const user = await users.updateUser(entityManagerOf(ctx), req.user?.id ?? '', changes, req.updateMask?.paths ?? []);
      return { user: userToProto(user) };
    },

    async deleteUser(req, ctx) {
      await users.deleteUser(entityManagerOf(ctx), callerOf(ctx), req);
      return {};
    },

    async resetUserPassword(req, ctx) {
      const { user, generatedPassword } = await users.resetPassword(entityManagerOf(ctx), req);
      return { user: userToProto(user), generatedPassword };
    },

    async clearSignInThrottle(req, ctx) {
      const user = await users.getUser(entityManagerOf(ctx), req.id);
      const cleared = await credentialLimiter.clearAccount(user.id);
      return { user: userToProto(user), wasThrottled: cleared > 0 };
    },

    async listSettings() {
      return { settings: settings.list().map(settingToProto) };
    },

    async getSetting(req) {
      return { setting: settingToProto(settings.describe(req.key)) };
    },

    async updateSetting(req, ctx) {
      const caller = callerOf(ctx);
      const view = await settings.update(entityManagerOf(ctx), req.key, req.value ? jsonValueOf(req.value) : null, { id: caller.userId, username: caller.username });
      return { setting: settingToProto(view) };
    },

    async listAuditEvents(req, ctx) {
      const filter = {
        actor: req.actor.trim(),
        action: req.action.trim(),
        target: req.target.trim(),
        since: requestTime(req.startTime, 'start_time'),
        until: requestTime(req.endTime, 'end_time'),
        outcome: req.outcome === AuditOutcome.SUCCESS ? ('success' as const) : req.outcome === AuditOutcome.FAILURE ? ('failure' as const) : undefined,
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
        jobsByStatus: countsByStatusToProto(totals.jobsByStatus),
        filesTotal: BigInt(totals.filesTotal),
        fileBytesTotal: BigInt(totals.fileBytesTotal),
      };
    },

    async rotateSigningKey(_req, ctx) {
      return signingKeys.rotate(entityManagerOf(ctx));
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
