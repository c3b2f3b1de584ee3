import type { ServiceImpl } from '@connectrpc/connect';
import { durationFromMs, durationMs, timestampDate, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { JsonObject } from '@bufbuild/protobuf';
import type { File } from '../../gen/yardmaster/v1/files_pb.ts';
import { JobLogLevel, type Job as JobMessage } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { WorkerCommandKind, type WorkerService as WorkerServiceDesc } from '../../gen/yardmaster/v1/worker_pb.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { LogLevelName, WorkerCommand, WorkerCommandKind as CommandKindName, WorkerService } from './worker-service.ts';

const commandKinds: Record<CommandKindName, WorkerCommandKind> = {
  cancel_job: WorkerCommandKind.CANCEL_JOB,
  drain: WorkerCommandKind.DRAIN,
  stop: WorkerCommandKind.STOP,
  restart: WorkerCommandKind.RESTART,
};

const levelNames: Partial<Record<JobLogLevel, LogLevelName>> = {
  [JobLogLevel.DEBUG]: 'debug',
  [JobLogLevel.INFO]: 'info',
  [JobLogLevel.WARN]: 'warn',
  [JobLogLevel.ERROR]: 'error',
};

function commandToProto(command: WorkerCommand) {
  return { kind: commandKinds[command.kind], jobId: command.jobId, reason: command.reason };
}

export interface WorkerRpcDeps<Job> {
  workers: WorkerService<Job>;
  jobToProto: (job: Job) => JobMessage;
  /** A claimed job's input files, in the job's order, as FilesService shows them. */
  inputFiles: (em: EntityManager, job: Job) => Promise<File[]>;
}

export function createWorkerRpc<Job>({ workers, jobToProto, inputFiles }: WorkerRpcDeps<Job>): ServiceImpl<typeof WorkerServiceDesc> {
  return {
    async claimJobs(req, ctx) {
      const em = entityManagerOf(ctx);
      const reply = await workers.claim(
        em,
        callerOf(ctx),
        { workerId: req.workerId, queues: req.queues, maxJobs: req.maxJobs, waitMs: req.wait ? durationMs(req.wait) : 0 },
        ctx.signal,
      );
      const jobs = [];
      for (const claimed of reply.jobs) {
        jobs.push({
          job: jobToProto(claimed.job),
          leaseExpireTime: timestampFromDate(claimed.leaseExpiresAt),
          deadlineTime: timestampFromDate(claimed.deadlineAt),
          inputFiles: await inputFiles(em.fork(), claimed.job),
        });
      }
      return { jobs, commands: reply.commands.map(commandToProto), heartbeatInterval: durationFromMs(reply.heartbeatIntervalMs) };
    },

    async heartbeat(req, ctx) {
      const reply = await workers.heartbeat(entityManagerOf(ctx), callerOf(ctx), { workerId: req.workerId, jobIds: req.jobIds });
      return {
        leases: reply.leases.map((lease) => ({
          jobId: lease.jobId,
          attempt: lease.attempt,
          leaseExpireTime: timestampFromDate(lease.expiresAt),
        })),
        releasedJobIds: reply.released,
        commands: reply.commands.map(commandToProto),
        heartbeatInterval: durationFromMs(reply.heartbeatIntervalMs),
      };
    },

    async reportProgress(req, ctx) {
      return workers.progress(entityManagerOf(ctx), callerOf(ctx), {
        workerId: req.workerId,
        jobId: req.jobId,
        percent: req.percent,
        message: req.message,
      });
    },

    async appendJobLogs(req, ctx) {
      const received = new Date();
      const lastSequence = await workers.appendLogs(entityManagerOf(ctx), callerOf(ctx), {
        workerId: req.workerId,
        jobId: req.jobId,
        lines: req.lines.map((line) => ({
          message: line.message,
          level: levelNames[line.level] ?? 'info',
          createdAt: line.time ? timestampDate(line.time) : received,
        })),
      });
      return { lastSequence: BigInt(lastSequence) };
    },

    async completeJob(req, ctx) {
      const job = await workers.complete(entityManagerOf(ctx), callerOf(ctx), {
        workerId: req.workerId,
        jobId: req.jobId,
        result: (req.result ?? {}) as JsonObject as Record<string, unknown>,
        outputFileIds: req.outputFileIds,
      });
      return { job: jobToProto(job) };
    },

    async failJob(req, ctx) {
      const job = await workers.fail(entityManagerOf(ctx), callerOf(ctx), {
        workerId: req.workerId,
        jobId: req.jobId,
        error: req.error,
        retryable: req.retryable,
        code: req.code,
      });
      return { job: jobToProto(job) };
    },
  };
}
