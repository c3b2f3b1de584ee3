import type { ServiceImpl } from '@connectrpc/connect';
import { durationFromMs, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { requestTime } from '../platform/timestamps.ts';
import { create, toBinary, toJsonString, type JsonObject } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import { encodeEnvelope } from '@connectrpc/connect/protocol';
import {
  JobEventKind,
  WatchJobsResponseSchema,
  type JobsService as JobsServiceDesc,
  type CreateJobRequest,
} from '../../gen/yardmaster/v1/jobs_pb.ts';
import { callerOf, entityManagerOf, streamHandoffKey } from '../server/context.ts';
import type { MessageFormat, StreamHandoff } from '../server/stream-handoff.ts';
import { countsByStatusToProto, eventKindToProto, jobFilterFromProto, jobToProto, logLineToProto } from './job-messages.ts';
import type { JobStreams, StreamTakeover, TakenStream, WatchItem } from './job-streams.ts';
import type { CreateJobInput, JobsService } from './jobs-service.ts';
import type { JobTypeCatalog } from './job-type-catalog.ts';
import { jobTypeToProto } from './job-types-rpc.ts';

function createInput(req: CreateJobRequest, prefix = ''): CreateJobInput {
  return {
    type: req.type,
    name: req.name,
    params: req.params as JsonObject | undefined,
    labels: req.labels,
    priority: req.priority,
    maxAttempts: req.maxAttempts,
    inputFileIds: req.inputFileIds,
    runAfter: requestTime(req.runAfter, `${prefix}run_after`),
    requestId: req.requestId,
  };
}

function watchMessage(item: WatchItem) {
  if (item.type === 'heartbeat') return { sequence: BigInt(item.sequence), kind: JobEventKind.HEARTBEAT };
  return {
    sequence: BigInt(item.sequence),
    job: jobToProto(item.job),
    kind: eventKindToProto(item.kind),
    eventTime: timestampFromDate(item.at),
  };
}

/**
 * Each event's WatchJobs message, encoded and enveloped once per format however many
 * streams send it: the same bytes Connect would produce for it, for every protocol.
 * Heartbeats (one per stream now and then) are encoded each time.
 */
function watchJobsFrames() {
  const textEncoder = new TextEncoder();
  const encode = (item: WatchItem, format: MessageFormat): Uint8Array => {
    const message = create(WatchJobsResponseSchema, watchMessage(item));
    const bytes =
      format === 'binary' ? toBinary(WatchJobsResponseSchema, message) : textEncoder.encode(toJsonString(WatchJobsResponseSchema, message));
    return encodeEnvelope(0, bytes);
  };
  const encoded = new WeakMap<WatchItem, Partial<Record<MessageFormat, Uint8Array>>>();
  return (item: WatchItem, format: MessageFormat): Uint8Array => {
    if (item.type === 'heartbeat') return encode(item, format);
    let frames = encoded.get(item);
    if (!frames) {
      frames = {};
      encoded.set(item, frames);
    }
    let frame = frames[format];
    if (!frame) {
      frame = encode(item, format);
      frames[format] = frame;
    }
    return frame;
  };
}

type FrameOf = ReturnType<typeof watchJobsFrames>;

/** A WatchJobs stream out of Connect's pipeline: its frames written straight to its response. */
class TakenWatchJobs implements TakenStream {
  readonly #handoff: StreamHandoff;
  readonly #frameOf: FrameOf;

  constructor(handoff: StreamHandoff, frameOf: FrameOf) {
    this.#handoff = handoff;
    this.#frameOf = frameOf;
  }

  get backlogBytes(): number {
    return this.#handoff.backlogBytes;
  }

  send(item: WatchItem): void {
    this.#handoff.write(this.#frameOf(item, this.#handoff.format));
  }

  end(error?: unknown): void {
    this.#handoff.end(error);
  }
}

/** How a WatchJobs call hands its stream over, on the transports that allow it. */
function watchJobsTakeover(ctx: HandlerContext, frameOf: FrameOf): StreamTakeover | undefined {
  const handoff = ctx.values.get(streamHandoffKey);
  if (!handoff) return undefined;
  const timeoutMs = ctx.timeoutMs.bind(ctx);
  return {
    take(owner) {
      handoff.take(owner, timeoutMs());
      return new TakenWatchJobs(handoff, frameOf);
    },
  };
}

export function createJobsRpc(jobs: JobsService, streams: JobStreams, catalog: JobTypeCatalog): ServiceImpl<typeof JobsServiceDesc> {
  const watchJobsFrameOf = watchJobsFrames();
  return {
    async listJobTypes() {
      return { jobTypes: catalog.all().map(jobTypeToProto) };
    },

    async createJob(req, ctx) {
      return { job: jobToProto(await jobs.create(entityManagerOf(ctx), callerOf(ctx), createInput(req))) };
    },

    async batchCreateJobs(req, ctx) {
      const created = await jobs.batchCreate(
        entityManagerOf(ctx),
        callerOf(ctx),
        req.requests.map((request, index) => createInput(request, `requests[${index}].`)),
      );
      return { jobs: created.map(jobToProto) };
    },

    async getJob(req, ctx) {
      return { job: jobToProto(await jobs.get(callerOf(ctx), req.id)) };
    },

    async listJobs(req, ctx) {
      const page = await jobs.list(entityManagerOf(ctx), callerOf(ctx), jobFilterFromProto(req.filter), req.orderBy, req);
      return { jobs: page.items.map(jobToProto), nextPageToken: page.nextPageToken };
    },

    async updateJob(req, ctx) {
      const changes = { name: req.job?.name, labels: req.job?.labels, priority: req.job?.priority };
      const job = await jobs.update(entityManagerOf(ctx), callerOf(ctx), req.job?.id ?? '', changes, req.updateMask?.paths ?? []);
      return { job: jobToProto(job) };
    },

    async cancelJob(req, ctx) {
      return { job: jobToProto(await jobs.cancel(entityManagerOf(ctx), callerOf(ctx), req.id, req.reason)) };
    },

    async retryJob(req, ctx) {
      return { job: jobToProto(await jobs.retry(entityManagerOf(ctx), callerOf(ctx), req.id)) };
    },

    async deleteJob(req, ctx) {
      await jobs.delete(entityManagerOf(ctx), callerOf(ctx), req.id);
      return {};
    },

    async getJobStats(req, ctx) {
      const stats = await jobs.stats(entityManagerOf(ctx), callerOf(ctx), jobFilterFromProto(req.filter));
      return {
        total: BigInt(stats.total),
        countsByStatus: countsByStatusToProto(stats.countsByStatus),
        types: Object.entries(stats.countsByType)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([type, counts]) => ({ type, countsByStatus: countsByStatusToProto(counts) })),
        durationP50: stats.durationP50Ms === undefined ? undefined : durationFromMs(stats.durationP50Ms),
        durationP95: stats.durationP95Ms === undefined ? undefined : durationFromMs(stats.durationP95Ms),
        finishedLastHour: BigInt(stats.finishedLastHour),
        throughputPerMinute: stats.throughputPerMinute,
      };
    },

    async listJobLogs(req, ctx) {
      const page = await jobs.listLogs(entityManagerOf(ctx), callerOf(ctx), req.id, req);
      return { lines: page.items.map(logLineToProto), nextPageToken: page.nextPageToken };
    },

    async *streamJobLogs(req, ctx) {
      for await (const lines of streams.tailLogs(
        entityManagerOf(ctx),
        callerOf(ctx),
        req.id,
        req.follow,
        Number(req.afterSequence),
        ctx.signal,
      )) {
        yield { lines: lines.map(logLineToProto) };
      }
    },

    async *watchJob(req, ctx) {
      for await (const item of streams.watchJob(entityManagerOf(ctx), callerOf(ctx), req.id, ctx.signal)) {
        yield watchMessage(item);
      }
    },

    async *watchJobs(req, ctx) {
      const filter = jobFilterFromProto(req.filter);
      const takeover = watchJobsTakeover(ctx, watchJobsFrameOf);
      for await (const item of streams.watchJobs(
        () => entityManagerOf(ctx),
        callerOf(ctx),
        filter,
        Number(req.afterSequence),
        ctx.signal,
        takeover,
      )) {
        yield watchMessage(item);
      }
    },
  };
}
