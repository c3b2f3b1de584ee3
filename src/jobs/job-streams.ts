import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { jobsSettings } from './jobs-settings.ts';
import { visibleTo, type Caller } from '../platform/caller.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import { DomainError, notFound } from '../platform/domain-errors.ts';
import { EventPositions } from '../platform/events/entities.ts';
import type { EventHub } from '../platform/events/event-hub.ts';
import { readEvents, type SequencedEvent } from '../platform/events/event-log.ts';
import { Latch } from '../platform/events/latch.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import { StreamBuffer, streamOverflow } from '../platform/events/stream-buffer.ts';
import { requireId } from '../platform/ids.ts';
import { Job } from './entities.ts';
import type { JobEventKind } from './job-changes.ts';
import { jobMatch, type JobFilter, type JobMatch } from './job-filter.ts';
import { jobLogsChannel, readLogLines, type StoredLogLine } from './job-logs.ts';
import { isFinal, jobView, type JobView } from './job-view.ts';
import { jobOf, JobWatchIndex, type JobWatcher } from './job-watch-index.ts';
import { jobReasons } from './job-reasons.ts';
import { HeartbeatSweep, type HeartbeatTarget } from './heartbeat-sweep.ts';
import type { Logger } from '../platform/logger.ts';

export type EventItem = { type: 'event'; sequence: number; kind: JobEventKind; job: JobView; at: Date };
export type WatchItem = EventItem | { type: 'heartbeat'; sequence: number };

/**
 * A WatchJobs stream's way out of its generator (see `StreamHandoff` in the server): once
 * its replay and first heartbeat are sent, the transport hands the stream over, and from
 * then on the stream is a small record in the index that writes each event (encoded once
 * per format for every stream) straight to its client, and its heartbeats on a timer.
 */
export interface StreamTakeover {
  /** Takes the stream over; `owner.streamEnded` runs once when it has ended, whoever ended it. */
  take(owner: TakenStreamOwner): TakenStream;
}

/** Whoever holds a taken stream: told once when it has ended (a method, not a closure per stream). */
export interface TakenStreamOwner {
  streamEnded(): void;
}

/** A stream taken over: written to directly. */
export interface TakenStream {
  /** Bytes written that the client has not taken yet. */
  readonly backlogBytes: number;
  send(item: WatchItem): void;
  /** Ends the stream: well, or with `error`. */
  end(error?: unknown): void;
}

/** Most events a stream may hold for a slow client before it is cut off. */
const streamBufferLimit = 10_000;
/** Most bytes a slow client may leave in its socket, once its stream is taken over, before it is cut off. */
const defaultBacklogLimitBytes = 4 * 2 ** 20;
const replayPageSize = 500;
const logPageSize = 500;
const allJobs: JobMatch = { ownerId: undefined, types: [], matches: () => true };

/** The stream item of an event, made once per event: every stream that sees it shares it (and its encodings). */
const eventItems = new WeakMap<SequencedEvent, EventItem>();

function eventItem(event: SequencedEvent): EventItem {
  let item = eventItems.get(event);
  if (!item) {
    item = {
      type: 'event',
      sequence: event.sequence,
      kind: event.kind.slice('job.'.length) as JobEventKind,
      job: jobOf(event),
      at: event.createdAt,
    };
    eventItems.set(event, item);
  }
  return item;
}

function isJobEvent(event: SequencedEvent): boolean {
  return event.kind.startsWith('job.');
}

/**
 * The state of one WatchJobs stream: its filter, what it has sent, and, until it is taken
 * over, its queue of live events for its generator. Once taken over, it is all that is
 * left of the stream: each event is written at once, heartbeats come from its timer.
 */
class WatchJobsStream implements JobWatcher, HeartbeatTarget, TakenStreamOwner {
  buffer = new StreamBuffer<SequencedEvent>(streamBufferLimit);
  /** The highest sequence sent, either way. */
  last: number;
  /** When the last message was sent: a heartbeat is due after a quiet interval. */
  sentAt = Date.now();
  readonly #match: JobMatch;
  readonly #backlogLimitBytes: number;
  #taken: TakenStream | undefined;
  /** Where a taken stream is listed (the index, the heartbeat sweep), to leave when it ends. */
  #takenIn: { index: JobWatchIndex; heartbeats: HeartbeatSweep } | undefined;

  constructor(match: JobMatch, afterSequence: number, backlogLimitBytes: number) {
    this.#match = match;
    this.last = afterSequence;
    this.#backlogLimitBytes = backlogLimitBytes;
  }

  matches(job: JobView): boolean {
    return this.#match.matches(job);
  }

  deliver(event: SequencedEvent): void {
    const taken = this.#taken;
    if (!taken) {
      this.buffer.push(event);
      return;
    }
    if (event.sequence <= this.last) return;
    if (taken.backlogBytes > this.#backlogLimitBytes) {
      taken.end(streamOverflow());
      return;
    }
    taken.send(eventItem(event));
    this.last = event.sequence;
    this.sentAt = Date.now();
  }

  /**
   * Hands the stream over (its generator is never resumed): what its queue holds is sent
   * now, then every event as it comes. It leaves `index` when it ends; `heartbeats` keeps
   * it alive while it is quiet.
   */
  takeOver(takeover: StreamTakeover, index: JobWatchIndex, heartbeats: HeartbeatSweep): void {
    this.#takenIn = { index, heartbeats };
    const taken = takeover.take(this);
    this.#taken = taken;
    const buffer = this.buffer;
    this.buffer = emptyBuffer;
    if (buffer.overflowed) {
      taken.end(streamOverflow());
      return;
    }
    for (let next = buffer.shift(); next && this.#taken; next = buffer.shift()) this.deliver(next);
    if (this.#taken) heartbeats.add(this);
  }

  streamEnded(): void {
    const takenIn = this.#takenIn;
    this.#takenIn = undefined;
    this.#taken = undefined;
    takenIn?.index.unwatchJobs(this, this.#match.ownerId, this.#match.types);
    takenIn?.heartbeats.delete(this);
  }

  /** Events sent meanwhile count as traffic: a heartbeat only after a quiet interval. */
  beatIfQuiet(now: number, intervalMs: number, position: number): void {
    const taken = this.#taken;
    if (!taken || now - this.sentAt < intervalMs) return;
    this.sentAt = now;
    taken.send({ type: 'heartbeat', sequence: Math.max(this.last, position) });
  }
}

/** The queue of every stream once taken over: it never holds anything. */
const emptyBuffer = new StreamBuffer<SequencedEvent>(0);

/**
 * The live views of jobs: one job, every visible job from a resume point, and a job's
 * log. Each is an async generator that ends when the client goes away (`signal`).
 */
export class JobStreams {
  readonly #index: JobWatchIndex;
  readonly #notifications: PgNotifications;
  readonly #settings: SettingsReader<typeof jobsSettings>;
  readonly #backlogLimitBytes: number;
  readonly #heartbeats: HeartbeatSweep;

  constructor(deps: {
    hub: EventHub;
    notifications: PgNotifications;
    settings: SettingsReader<typeof jobsSettings>;
    logger?: Logger;
    /** Most bytes a taken-over stream's client may leave unread before it is cut off. */
    backlogLimitBytes?: number;
  }) {
    const logger = deps.logger;
    this.#index = new JobWatchIndex(deps.hub, {
      onError: (error) => logger?.error({ err: error }, 'handing an event to a job stream failed'),
    });
    this.#notifications = deps.notifications;
    this.#settings = deps.settings;
    this.#backlogLimitBytes = deps.backlogLimitBytes ?? defaultBacklogLimitBytes;
    this.#heartbeats = new HeartbeatSweep(
      () => deps.settings.get('jobs.stream_heartbeat_interval'),
      () => this.#index.position,
    );
  }

  /**
   * Every job event the caller may see and the filter lets through, in sequence order:
   * first those after `afterSequence` from the log, then live ones. Subscribing before
   * reading the log, and skipping live events at or below the last replayed one, leaves
   * no gap and no repeat between the two. With `takeover`, the stream is handed over
   * after its first heartbeat (this generator then never yields again, nor ends).
   * `entityManager` is called only for a replay: a live stream holds no ORM context.
   */
  async *watchJobs(
    entityManager: () => EntityManager,
    caller: Caller,
    filter: JobFilter,
    afterSequence: number,
    signal: AbortSignal,
    takeover?: StreamTakeover,
  ): AsyncGenerator<WatchItem> {
    const match = jobMatch(filter, caller);
    const stream = new WatchJobsStream(match, afterSequence, this.#backlogLimitBytes);
    this.#index.watchJobs(stream, match.ownerId, match.types);
    try {
      if (afterSequence > 0) {
        const em = entityManager();
        await this.#checkResumePoint(em, afterSequence);
        let read = afterSequence;
        for (;;) {
          const page = await readEvents(em, read, replayPageSize, visibleTo(caller).owner);
          for (const event of page) {
            read = event.sequence;
            if (isJobEvent(event) && match.matches(jobOf(event))) yield eventItem(event);
          }
          if (page.length < replayPageSize || signal.aborted) break;
        }
        stream.last = read;
      }
      // A safe resume point: everything up to the index's position is delivered unless still buffered.
      stream.sentAt = Date.now();
      yield { type: 'heartbeat', sequence: stream.buffer.size === 0 ? Math.max(stream.last, this.#index.position) : stream.last };
      if (takeover && !signal.aborted) {
        // Asked for the next message: Connect has written the heartbeat, and lets go now.
        stream.takeOver(takeover, this.#index, this.#heartbeats);
        // A promise of its own that nothing settles or holds: nothing refers to this generator
        // any more, and it goes to the garbage collector without running its `finally`.
        await new Promise<never>(() => {});
      }
      yield* this.#live(stream, signal);
    } finally {
      this.#index.unwatchJobs(stream, match.ownerId, match.types);
    }
  }

  /** One job: its current state, then each change, ending after a final state. */
  async *watchJob(em: EntityManager, caller: Caller, id: string, signal: AbortSignal): AsyncGenerator<WatchItem> {
    requireId(id, 'id');
    const stream = new WatchJobsStream(allJobs, 0, this.#backlogLimitBytes);
    const unsubscribe = this.#index.watchSubject(id, (event) => {
      if (isJobEvent(event)) stream.buffer.push(event);
    });
    try {
      // The position first, then the job: a change committed between the two reads is then
      // above the position sent with the state, so a client deduping by sequence keeps it.
      // (Read the other way round, the final state could come at the position already sent.)
      const [latest] = await em.execute<{ sequence: string | null }[]>(
        'select max(sequence) as sequence from events where subject_id = ?',
        [id],
      );
      const job = await em.findOne(Job, { id, ...visibleTo(caller) });
      if (!job) throw notFound('job');
      const current = jobView(job);
      yield { type: 'event', sequence: Number(latest?.sequence ?? 0), kind: 'updated', job: current, at: current.updatedAt };
      if (isFinal(current.status)) return;
      let seenVersion = current.version;
      for await (const item of this.#live(stream, signal)) {
        if (item.type === 'heartbeat') {
          yield item;
          continue;
        }
        if (item.kind !== 'deleted' && item.job.version <= seenVersion) continue;
        seenVersion = item.job.version;
        yield item;
        if (item.kind === 'deleted' || isFinal(item.job.status)) return;
      }
    } finally {
      unsubscribe();
    }
  }

  /**
   * A job's log lines after `afterSequence`: stored ones, then (with `follow`) new ones
   * as they are written, until the job has finished and its last line has been sent.
   * Yields batches of lines, or an empty batch as a heartbeat.
   */
  async *tailLogs(
    em: EntityManager,
    caller: Caller,
    id: string,
    follow: boolean,
    afterSequence: number,
    signal: AbortSignal,
  ): AsyncGenerator<StoredLogLine[]> {
    requireId(id, 'id');
    if (!(await em.count(Job, { id, ...visibleTo(caller) }))) throw notFound('job');
    const changed = new Latch();
    const unsubscribeLogs = await this.#notifications.subscribe(jobLogsChannel, (jobId) => {
      if (jobId === id) changed.set();
    });
    const unsubscribeEvents = this.#index.watchSubject(id, () => changed.set());
    try {
      let cursor = Math.max(0, afterSequence);
      let finished = false;
      let lastSentAt = Date.now();
      while (!signal.aborted) {
        // A fresh fork per page: a long tail must not pile lines up in one identity map.
        const lines = await readLogLines(em.fork(), id, cursor, logPageSize);
        if (lines.length > 0) {
          cursor = lines[lines.length - 1]!.sequence;
          lastSentAt = Date.now();
          yield lines;
          continue;
        }
        // Every line is written before the attempt ends, so once the job is seen finished,
        // the read above (which came after) had the last of them.
        if (!follow || finished) return;
        const job = await em.fork().findOne(Job, id, { fields: ['status'] });
        if (!job || isFinal(job.status)) {
          finished = true;
          continue;
        }
        // Other changes to the job (progress...) wake the loop too: the heartbeat is due by
        // the clock, not by how the last wait ended.
        const interval = this.#settings.get('jobs.stream_heartbeat_interval');
        if (Date.now() - lastSentAt >= interval) {
          lastSentAt = Date.now();
          yield [];
        }
        await changed.wait(Math.max(1, interval - (Date.now() - lastSentAt)), signal);
      }
    } finally {
      unsubscribeLogs();
      unsubscribeEvents();
    }
  }

  /** Live events from the hub after the stream's last, with heartbeats when quiet. */
  async *#live(stream: WatchJobsStream, signal: AbortSignal): AsyncGenerator<WatchItem> {
    for (;;) {
      const interval = this.#settings.get('jobs.stream_heartbeat_interval');
      const next = await stream.buffer.next(Math.max(1, interval - (Date.now() - stream.sentAt)), signal);
      if ('aborted' in next) return;
      if ('timeout' in next) {
        stream.sentAt = Date.now();
        yield { type: 'heartbeat', sequence: Math.max(stream.last, this.#index.position) };
        continue;
      }
      if (next.item.sequence <= stream.last) continue;
      stream.last = next.item.sequence;
      stream.sentAt = Date.now();
      yield eventItem(next.item);
    }
  }

  async #checkResumePoint(em: EntityManager, afterSequence: number): Promise<void> {
    const positions = await em.findOneOrFail(EventPositions, 1);
    if (afterSequence < positions.prunedThrough) {
      throw new DomainError(
        'failed_precondition',
        `resync required: events up to ${positions.prunedThrough} are no longer kept; list the jobs again, then watch from the latest sequence`,
        {
          reason: jobReasons.RESYNC_REQUIRED,
          metadata: { oldest_sequence: String(positions.prunedThrough + 1) },
        },
      );
    }
    if (afterSequence > positions.lastSequence) {
      throw new DomainError(
        'failed_precondition',
        `resync required: sequence ${afterSequence} is ahead of the newest event (${positions.lastSequence})`,
        {
          reason: jobReasons.RESYNC_REQUIRED,
          metadata: { newest_sequence: String(positions.lastSequence) },
        },
      );
    }
  }
}
