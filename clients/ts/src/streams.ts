import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import {
  JobEventKind,
  JobStatus,
  type JobFilterSchema,
  type JobLogLine,
  type WatchJobResponse,
  type WatchJobsResponse,
} from '../../../gen/yardmaster/v1/jobs_pb.ts';
import { backoffDelayMs, sleep, type BackoffOptions } from './backoff.ts';
import type { YardmasterClient } from './client.ts';
import { isResyncRequired, YardmasterError } from './errors.ts';

/** What every resuming stream accepts. */
export interface ResumeOptions {
  /** Ends the stream: the iteration then stops quietly (no error). */
  signal?: AbortSignal;
  /** Delays between reconnection attempts (exponential with jitter; a RetryInfo delay from the server is respected). */
  backoff?: BackoffOptions;
  /** Called before each reconnection attempt, with the error that ended the previous connection (undefined: the server closed it). */
  onReconnect?: (info: { attempt: number; delayMs: number; error: YardmasterError | undefined }) => void;
}

/** Codes after which a stream is worth opening again: the connection or the server went away, or asked the client to slow down. */
const retryableCodes = new Set([
  Code.Unavailable,
  Code.Unknown,
  Code.Internal,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
  Code.Aborted,
  Code.Canceled,
]);

interface StreamSteps<M, Y> {
  open(signal: AbortSignal): AsyncIterable<M>;
  /** What to hand the caller for this message (nothing, for a repeat or a heartbeat). */
  accept(message: M): Y[];
  /** After the server ended the stream by itself: true when that is the natural end, false to reconnect. */
  finished(): boolean;
  /** The resume point is gone: forget it so the next connection starts from now. Undefined: resync is an error. */
  resync?: () => void;
  /** Called with the resync error once the new connection delivered its first message. */
  onResync?: (error: YardmasterError) => void | Promise<void>;
}

/**
 * Reads a server stream and opens it again after a dropped connection (with backoff)
 * until it ends by itself, fails for good, or the caller stops (break or signal).
 * A RESYNC_REQUIRED answer is handed to `onResync` once; a second one in a row, before
 * any message, is thrown: never a loop.
 */
async function* resuming<M, Y>(options: ResumeOptions, steps: StreamSteps<M, Y>): AsyncGenerator<Y, void, undefined> {
  const outer = options.signal;
  let attempt = 0;
  let pendingResync: YardmasterError | undefined;
  for (;;) {
    if (outer?.aborted) return;
    const controller = new AbortController();
    const onAbort = () => controller.abort(outer?.reason);
    outer?.addEventListener('abort', onAbort, { once: true });
    let failure: YardmasterError | undefined;
    try {
      for await (const message of steps.open(controller.signal)) {
        attempt = 0;
        if (pendingResync) {
          const error = pendingResync;
          pendingResync = undefined;
          await steps.onResync?.(error);
        }
        for (const item of steps.accept(message)) yield item;
      }
      if (steps.finished()) return;
    } catch (error) {
      failure = YardmasterError.from(error);
    } finally {
      outer?.removeEventListener('abort', onAbort);
      controller.abort();
    }
    if (outer?.aborted) return;
    if (failure && isResyncRequired(failure)) {
      if (!steps.resync || !steps.onResync || pendingResync) throw failure;
      steps.resync();
      pendingResync = failure;
      continue;
    }
    if (failure && !retryableCodes.has(failure.code)) throw failure;
    attempt++;
    const maxAttempts = options.backoff?.maxAttempts;
    if (maxAttempts !== undefined && attempt > maxAttempts)
      throw failure ?? new YardmasterError(new ConnectError('the stream kept closing', Code.Unavailable));
    const delayMs = Math.max(backoffDelayMs(attempt, options.backoff), failure?.retryAfterMs ?? 0);
    options.onReconnect?.({ attempt, delayMs, error: failure });
    try {
      await sleep(delayMs, outer);
    } catch {
      return;
    }
  }
}

export interface WatchJobsOptions extends ResumeOptions {
  /** Only events of jobs matching this filter. */
  filter?: MessageInitShape<typeof JobFilterSchema>;
  /** Start after this sequence (a position from an earlier watch); default: from now. */
  afterSequence?: bigint;
  /** Also yield heartbeats (kind HEARTBEAT, no job): their `sequence` is the position every event up to which was sent. */
  heartbeats?: boolean;
  /**
   * The resume point is older than the history the server keeps (FailedPrecondition
   * RESYNC_REQUIRED): some events are gone for good. Reload what you show (ListJobs) here;
   * it is called once the watch has reopened from the current position, so the events
   * after your reload follow. Without it the error is thrown.
   */
  onResync?: (error: YardmasterError) => void | Promise<void>;
}

/**
 * Every job event the caller may see (WatchJobs), as an async iterable that survives
 * dropped connections: it reopens the stream after the last sequence seen (an event's or
 * a heartbeat's), so no event is lost or repeated. Stop it with `break` or the signal.
 *
 * ```ts
 * for await (const event of watchJobs(client, { filter: { types: ['sleep'] }, signal })) console.log(event.sequence, event.job?.status);
 * ```
 */
export function watchJobs(client: YardmasterClient, options: WatchJobsOptions = {}): AsyncGenerator<WatchJobsResponse, void, undefined> {
  let position = options.afterSequence;
  return resuming<WatchJobsResponse, WatchJobsResponse>(options, {
    open: (signal) => client.jobs.watchJobs({ filter: options.filter, afterSequence: position ?? 0n }, { signal }),
    accept(message) {
      if (position !== undefined && message.sequence <= position && message.kind !== JobEventKind.HEARTBEAT) return [];
      if (position === undefined || message.sequence > position) position = message.sequence;
      return message.kind === JobEventKind.HEARTBEAT && !options.heartbeats ? [] : [message];
    },
    finished: () => false,
    resync: () => {
      position = undefined;
    },
    onResync: options.onResync,
  });
}

const terminal = new Set<JobStatus>([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]);

/**
 * One job's states (WatchJob): the current one first, then every change, ending after the
 * terminal state. A dropped connection is reopened and states already seen (by sequence)
 * are not repeated.
 */
export function watchJob(
  client: YardmasterClient,
  id: string,
  options: ResumeOptions = {},
): AsyncGenerator<WatchJobResponse, void, undefined> {
  let position = -1n;
  let done = false;
  return resuming<WatchJobResponse, WatchJobResponse>(options, {
    open: (signal) => client.jobs.watchJob({ id }, { signal }),
    accept(message) {
      if (message.kind === JobEventKind.HEARTBEAT || !message.job) return [];
      const final = terminal.has(message.job.status);
      // A final state is never a repeat (the watch ends with the first one), whatever its
      // sequence: a server that sent the current state with a newer position must not leave
      // the client reopening the stream for ever.
      if (message.sequence <= position && !final) return [];
      if (message.sequence > position) position = message.sequence;
      done = final;
      return [message];
    },
    finished: () => done,
  });
}

export interface TailLogsOptions extends ResumeOptions {
  /** Start after this line (a `sequence` seen earlier); default: from the first line. */
  afterSequence?: bigint;
  /** Keep tailing until the job ends (default true); false: the stored lines only. */
  follow?: boolean;
}

/**
 * A job's log lines (StreamJobLogs): the stored ones, then (with `follow`) live ones until
 * the job ends. A dropped connection resumes after the last line received: no gap, no repeat.
 */
export function tailLogs(client: YardmasterClient, id: string, options: TailLogsOptions = {}): AsyncGenerator<JobLogLine, void, undefined> {
  let position = options.afterSequence ?? 0n;
  return resuming<{ lines: JobLogLine[] }, JobLogLine>(options, {
    open: (signal) => client.jobs.streamJobLogs({ id, follow: options.follow ?? true, afterSequence: position }, { signal }),
    accept(message) {
      const fresh = message.lines.filter((line) => line.sequence > position);
      if (fresh.length > 0) position = fresh.at(-1)!.sequence;
      return fresh;
    },
    finished: () => true,
  });
}
