import type { JsonObject } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import { durationFromMs, durationMs, timestampFromDate, type Duration } from '@bufbuild/protobuf/wkt';
import type { AdminService } from '../../gen/yardmaster/v1/admin_pb.ts';
import { JobTypeRuntime, type JobType as JobTypeMessage } from '../../gen/yardmaster/v1/job_types_pb.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { JobTypeCatalog, JobTypeDeclarationInput, JobTypeView } from './job-type-catalog.ts';

export function jobTypeToProto(type: JobTypeView): Omit<JobTypeMessage, '$typeName'> {
  return {
    name: type.name,
    description: type.description,
    paramsSchema: type.paramsSchema as JsonObject,
    maxAttempts: type.maxAttempts,
    timeout: durationFromMs(type.timeoutMs),
    lease: type.leaseMs === undefined ? undefined : durationFromMs(type.leaseMs),
    runtime: type.runtime === 'external' ? JobTypeRuntime.EXTERNAL : JobTypeRuntime.IN_PROCESS,
    retryDelay: durationFromMs(type.retryDelayMs),
    retryBackoff: type.retryBackoff,
    retryDelayMax: durationFromMs(type.retryDelayMaxMs),
    minInputFiles: type.inputFiles.min,
    maxInputFiles: type.inputFiles.max,
    version: type.version,
    createTime: type.createdAt && timestampFromDate(type.createdAt),
    updateTime: type.updatedAt && timestampFromDate(type.updatedAt),
  };
}

const optionalMs = (duration: Duration | undefined) => (duration === undefined ? undefined : durationMs(duration));

function declarationInput(message: JobTypeMessage | undefined): JobTypeDeclarationInput {
  return {
    name: message?.name ?? '',
    description: message?.description ?? '',
    paramsSchema: message?.paramsSchema as Record<string, unknown> | undefined,
    maxAttempts: message?.maxAttempts ?? 0,
    timeoutMs: optionalMs(message?.timeout),
    leaseMs: optionalMs(message?.lease),
    retryDelayMs: optionalMs(message?.retryDelay),
    retryBackoff: message?.retryBackoff ?? false,
    retryDelayMaxMs: optionalMs(message?.retryDelayMax),
    minInputFiles: message?.minInputFiles ?? 0,
    maxInputFiles: message?.maxInputFiles ?? 0,
  };
}

/** The job-type part of AdminService: declaring the types external workers run. */
export function createJobTypeAdminRpc(
  catalog: JobTypeCatalog,
): Pick<ServiceImpl<typeof AdminService>, 'createJobType' | 'updateJobType' | 'deleteJobType'> {
  return {
    async createJobType(req, ctx) {
      const type = await catalog.create(entityManagerOf(ctx), callerOf(ctx), declarationInput(req.jobType));
      return { jobType: jobTypeToProto(type) };
    },

    async updateJobType(req, ctx) {
      const input = declarationInput(req.jobType);
      const type = await catalog.update(entityManagerOf(ctx), callerOf(ctx), input.name, input, req.updateMask?.paths ?? []);
      return { jobType: jobTypeToProto(type) };
    },

    async deleteJobType(req, ctx) {
      await catalog.delete(entityManagerOf(ctx), req.name);
      return {};
    },
  };
}
