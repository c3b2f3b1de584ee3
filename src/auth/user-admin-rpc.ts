import type { ServiceImpl } from '@connectrpc/connect';
import type { AdminService as AdminServiceDesc } from '../../gen/yardmaster/v1/admin_pb.ts';
import { roleFromProto } from '../platform/role-names.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { CredentialRateLimiter } from './credential-rate-limiter.ts';
import type { SigningKeys } from './signing-keys.ts';
import type { UserAdmin } from './user-admin.ts';
import { userToProto } from './user-messages.ts';

type UserAdminMethod =
  | 'listUsers'
  | 'getUser'
  | 'createUser'
  | 'updateUser'
  | 'deleteUser'
  | 'resetUserPassword'
  | 'clearSignInThrottle'
  | 'rotateSigningKey';

export interface UserAdminRpcDeps {
  users: UserAdmin;
  signingKeys: SigningKeys;
  credentialLimiter: CredentialRateLimiter;
}

/**
 * The part of AdminService that administers accounts and their credentials: auth owns
 * them. The rest of AdminService is the admin area's (admin/admin-rpc.ts); app.ts joins the two.
 */
export function createUserAdminRpc({
  users,
  signingKeys,
  credentialLimiter,
}: UserAdminRpcDeps): Pick<ServiceImpl<typeof AdminServiceDesc>, UserAdminMethod> {
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

    async rotateSigningKey(_req, ctx) {
      return signingKeys.rotate(entityManagerOf(ctx));
    },
  };
}
