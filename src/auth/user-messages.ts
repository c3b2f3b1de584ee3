import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { UserSchema, type User as UserMessage } from '../../gen/yardmaster/v1/common_pb.ts';
import type { User } from './entities.ts';
import { roleToProto } from '../platform/role-names.ts';
import { optionalTimestamp } from '../platform/timestamps.ts';

export function userToProto(user: User): UserMessage {
  return create(UserSchema, {
    id: user.id,
    username: user.username,
    email: user.email,
    role: roleToProto(user.role),
    active: user.active,
    createTime: timestampFromDate(user.createdAt),
    updateTime: timestampFromDate(user.updatedAt),
    lastLoginTime: optionalTimestamp(user.lastLoginAt),
  });
}
