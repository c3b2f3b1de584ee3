import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { AuthService as AuthServiceDesc } from '../../gen/yardmaster/v1/auth_pb.ts';
import { callerOf, clientKey, entityManagerOf, recordCall } from '../server/context.ts';
import type { AccessPolicies } from '../server/access-policies.ts';
import type { AuthService, SessionOwner, TokenGrant } from './auth-service.ts';
import type { ApiKey, Session } from './entities.ts';
import { roleToProto } from '../platform/role-names.ts';
import { optionalTimestamp, requestTime } from '../platform/timestamps.ts';
import { userToProto } from './user-messages.ts';

function grantToProto(grant: TokenGrant) {
  return {
    accessToken: grant.accessToken,
    accessTokenExpireTime: timestampFromDate(grant.accessTokenExpiresAt),
    refreshToken: grant.refreshToken,
    refreshTokenExpireTime: timestampFromDate(grant.refreshTokenExpiresAt),
    user: userToProto(grant.user),
  };
}

function apiKeyToProto(apiKey: ApiKey) {
  return {
    id: apiKey.id,
    name: apiKey.name,
    prefix: apiKey.prefix,
    createTime: timestampFromDate(apiKey.createdAt),
    expireTime: optionalTimestamp(apiKey.expiresAt),
    lastUsedTime: optionalTimestamp(apiKey.lastUsedAt),
    revokeTime: optionalTimestamp(apiKey.revokedAt),
  };
}

function sessionToProto(session: Session, currentSessionId: string | undefined) {
  return {
    id: session.id,
    createTime: timestampFromDate(session.createdAt),
    lastUsedTime: timestampFromDate(session.lastUsedAt),
    expireTime: timestampFromDate(session.expiresAt),
    userAgent: session.userAgent,
    clientAddress: session.clientAddress,
    current: session.id === currentSessionId,
  };
}

/** Names the account a successful anonymous call (login, registration) acted as, for the audit log. */
function signedInAs(ctx: HandlerContext, grant: TokenGrant): TokenGrant {
  recordCall(ctx, { actor: { userId: grant.user.id, username: grant.user.username } });
  return grant;
}

export function createAuthRpc(auth: AuthService, policies: AccessPolicies): ServiceImpl<typeof AuthServiceDesc> {
  return {
    async login(req, ctx) {
      const grant = await auth.login(entityManagerOf(ctx), req, ctx.values.get(clientKey));
      return grantToProto(signedInAs(ctx, grant));
    },

    async refresh(req, ctx) {
      // A failed refresh (a reused token above all) is audited as the session's account.
      const identified = (owner: SessionOwner) => {
        recordCall(ctx, { actor: { userId: owner.userId, username: owner.username }, target: owner.sessionId });
      };
      return grantToProto(await auth.refresh(entityManagerOf(ctx), req, ctx.values.get(clientKey), identified));
    },

    async logout(req, ctx) {
      const { revoked, sessionId } = await auth.logout(entityManagerOf(ctx), req, callerOf(ctx));
      recordCall(ctx, { target: sessionId ?? 'all sessions' });
      return { revokedSessions: revoked };
    },

    async register(req, ctx) {
      const grant = await auth.register(entityManagerOf(ctx), req, ctx.values.get(clientKey));
      return grantToProto(signedInAs(ctx, grant));
    },

    async getMe(_req, ctx) {
      return { user: userToProto(await auth.getUser(entityManagerOf(ctx), callerOf(ctx))) };
    },

    async changePassword(req, ctx) {
      const revokedSessions = await auth.changePassword(entityManagerOf(ctx), callerOf(ctx), req);
      return { revokedSessions };
    },

    async createApiKey(req, ctx) {
      const expiresAt = requestTime(req.expireTime, 'expire_time');
      const { apiKey, secret } = await auth.createApiKey(entityManagerOf(ctx), callerOf(ctx), { name: req.name, expiresAt });
      return { apiKey: apiKeyToProto(apiKey), secret };
    },

    async listApiKeys(req, ctx) {
      const page = await auth.listApiKeys(entityManagerOf(ctx), callerOf(ctx), req, req);
      return { apiKeys: page.items.map(apiKeyToProto), nextPageToken: page.nextPageToken };
    },

    async revokeApiKey(req, ctx) {
      return { apiKey: apiKeyToProto(await auth.revokeApiKey(entityManagerOf(ctx), callerOf(ctx), req.id)) };
    },

    async listSessions(req, ctx) {
      const caller = callerOf(ctx);
      const page = await auth.listSessions(entityManagerOf(ctx), caller, req);
      return { sessions: page.items.map((session) => sessionToProto(session, caller.sessionId)), nextPageToken: page.nextPageToken };
    },

    async revokeSession(req, ctx) {
      await auth.revokeSession(entityManagerOf(ctx), callerOf(ctx), req.id);
      return {};
    },

    async getMyPermissions(_req, ctx) {
      const caller = callerOf(ctx);
      return { role: roleToProto(caller.role), methods: policies.methodsFor(caller.role) };
    },
  };
}
