import { Code, ConnectError } from '@connectrpc/connect';
import { BadRequestSchema, ErrorInfoSchema } from '@gen/yardmaster/v1/common_pb.ts';

/** What a failed call tells a person: the message, the stable reason and the fields at fault. */
export interface CallProblem {
  code: Code;
  message: string;
  reason: string | undefined;
  fields: { field: string; description: string }[];
}

export function problemOf(error: unknown): CallProblem {
  const connectError = ConnectError.from(error);
  const reason = connectError.findDetails(ErrorInfoSchema)[0]?.reason;
  const fields = connectError.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
  return { code: connectError.code, message: connectError.rawMessage, reason, fields };
}

export function isNotFound(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.NotFound;
}
