import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { RoleName } from './caller.ts';

const roleOfName: Record<RoleName, Role> = { user: Role.USER, admin: Role.ADMIN, worker: Role.WORKER };

export function roleToProto(role: RoleName): Role {
  return roleOfName[role];
}

/** undefined for ROLE_UNSPECIFIED and values this server does not know. */
export function roleFromProto(role: Role): RoleName | undefined {
  return (Object.keys(roleOfName) as RoleName[]).find((name) => roleOfName[name] === role);
}
