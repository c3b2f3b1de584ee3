import type { ServiceImpl } from '@connectrpc/connect';
import { durationFromMs, timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { QueueService as QueueServiceDesc } from '../../gen/yardmaster/v1/queue_pb.ts';
import type { Job as JobMessage } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { callerOf, entityManagerOf } from '../server/context.ts';
import type { QueueOverviewFeed } from './queue-overview-feed.ts';
import type { QueueService, QueueTotals, QueueView } from './queue-service.ts';

function ageOf(ms: number | undefined) {
  return ms === undefined ? undefined : durationFromMs(ms);
}

function queueToProto(queue: QueueView) {
  return {
    name: queue.name,
    description: queue.description,
    queued: BigInt(queue.queued),
    running: BigInt(queue.running),
    succeededLastHour: BigInt(queue.succeededLastHour),
    failedLastHour: BigInt(queue.failedLastHour),
    paused: queue.paused,
    oldestQueuedAge: ageOf(queue.oldestQueuedAgeMs),
    concurrency: queue.concurrency,
    workersAttached: queue.workersAttached,
  };
}

function totalsToProto(totals: QueueTotals) {
  return {
    queued: BigInt(totals.queued),
    running: BigInt(totals.running),
    succeededLastHour: BigInt(totals.succeededLastHour),
    failedLastHour: BigInt(totals.failedLastHour),
    oldestQueuedAge: ageOf(totals.oldestQueuedAgeMs),
  };
}

export interface QueueRpcDeps<Job> {
  queues: QueueService<Job>;
  feed: QueueOverviewFeed;
  /** A queued job as the jobs area writes it in messages. */
  jobToProto: (job: Job) => JobMessage;
}

export function createQueueRpc<Job>(deps: QueueRpcDeps<Job>): ServiceImpl<typeof QueueServiceDesc> {
  const { queues, feed, jobToProto } = deps;
  const changeResponse = async (ctx: Parameters<ServiceImpl<typeof QueueServiceDesc>['pauseQueue']>[1]) => {
    const overview = await queues.overview(entityManagerOf(ctx));
    return { queues: overview.queues.map(queueToProto), pausedGlobally: overview.pausedGlobally };
  };
  return {
    async listQueues(_req, ctx) {
      return { queues: (await queues.overview(entityManagerOf(ctx))).queues.map(queueToProto) };
    },

    async getQueueStatus(_req, ctx) {
      const overview = await queues.overview(entityManagerOf(ctx));
      return { totals: totalsToProto(overview.totals), pausedGlobally: overview.pausedGlobally, pausedQueues: overview.pausedQueues };
    },

    async listQueuedJobs(req, ctx) {
      const page = await queues.listQueued(entityManagerOf(ctx), callerOf(ctx), req.queue, req);
      return { jobs: page.items.map(jobToProto), nextPageToken: page.nextPageToken };
    },

    async pauseQueue(req, ctx) {
      await queues.pause(entityManagerOf(ctx), callerOf(ctx), req.queue);
      return changeResponse(ctx);
    },

    async resumeQueue(req, ctx) {
      await queues.resume(entityManagerOf(ctx), callerOf(ctx), req.queue);
      return changeResponse(ctx);
    },

    async clearQueue(req, ctx) {
      return { count: BigInt(await queues.clear(entityManagerOf(ctx), { queue: req.queue, confirm: req.confirm, dryRun: req.dryRun })) };
    },

    async *watchQueues(_req, ctx) {
      for await (const overview of feed.watch(entityManagerOf(ctx), ctx.signal)) {
        yield {
          queues: overview.queues.map(queueToProto),
          totals: totalsToProto(overview.totals),
          pausedGlobally: overview.pausedGlobally,
          time: timestampFromDate(new Date()),
        };
      }
    },
  };
}
