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
import { StreamBuffer } from '../platform/events/stream-buffer.ts';
import { requireId } from '../platform/ids.ts';
import { Job } from './entities.ts';
import type { JobEventKind } from './job-changes.ts';
import { jobMatcher, type JobFilter } from './job-filter.ts';
import { jobLogsChannel, readLogLines, type StoredLogLine } from './job-logs.ts';
import { fromSnapshot, isFinal, jobView, type JobView } from './job-view.ts';
import { jobReasons } from './job-reasons.ts';

export type WatchItem =
  | { type: 'event'; sequence: number; kind: JobEventKind; job: JobView; at: Date }
  | { type: 'heartbeat'; sequence: number };

/** Most events a stream may hold for a slow client before it is cut off. */
const streamBufferLimit = 10_000;
const replayPageSize = 500;
const logPageSize = 500;

function eventItem(event: SequencedEvent): WatchItem & { type: 'event' } {
  return {
    type: 'event',
    sequence: event.sequence,
    kind: event.kind.slice('job.'.length) as JobEventKind,
    job: jobOf(event),
    at: event.createdAt,
  };
}

/**
 * The job an event carries, read once per event: the hub hands the same event to every
 * stream, and streams only read the view, never change it.
 */
const eventJobs = new WeakMap<SequencedEvent, JobView>();

function jobOf(event: SequencedEvent): JobView {
  let job = eventJobs.get(event);
  if (!job) {
    job = fromSnapshot(event.payload);
    eventJobs.set(event, job);
  }
  return job;
}

function isJobEvent(event: SequencedEvent): boolean {
  return event.kind.startsWith('job.');
}

/**
 * The live views of jobs: one job, every visible job from a resume point, and a job's
 * log. Each is an async generator that ends when the client goes away (`signal`).
 */
export class JobStreams {
  readonly #hub: EventHub;
  readonly #notifications: PgNotifications;
  readonly #settings: SettingsReader<typeof jobsSettings>;

  constructor(deps: { hub: EventHub; notifications: PgNotifications; settings: SettingsReader<typeof jobsSettings> }) {
    this.#hub = deps.hub;
    this.#notifications = deps.notifications;
    this.#settings = deps.settings;
  }

  /**
   * Every job event the caller may see and the filter lets through, in sequence order:
   * first those after `afterSequence` from the log, then live ones. Subscribing before
   * reading the log, and skipping live events at or below the last replayed one, leaves
   * no gap and no repeat between the two.
   */
  async *watchJobs(
    em: EntityManager,
    caller: Caller,
    filter: JobFilter,
    afterSequence: number,
    signal: AbortSignal,
  ): AsyncGenerator<WatchItem> {
    const matches = jobMatcher(filter, caller);
    const visible = (event: SequencedEvent) => isJobEvent(event) && matches(jobOf(event));
    const buffer = new StreamBuffer<SequencedEvent>(streamBufferLimit);
    const unsubscribe = this.#hub.subscribe((event) => {
      if (visible(event)) buffer.push(event);
    });
    try {
      let last = afterSequence;
      if (afterSequence > 0) {
        await this.#checkResumePoint(em, afterSequence);
        for (;;) {
          const page = await readEvents(em, last, replayPageSize, visibleTo(caller).owner);
          for (const event of page) {
            last = event.sequence;
            if (visible(event)) yield eventItem(event);
          }
          if (page.length < replayPageSize || signal.aborted) break;
        }
      }
      // A safe resume point: everything up to the hub's position is delivered unless still buffered.
      yield { type: 'heartbeat', sequence: buffer.size === 0 ? Math.max(last, this.#hub.position) : last };
      yield* this.#live(buffer, last, signal);
    } finally {
      unsubscribe();
    }
  }

  /** One job: its current state, then each change, ending after a final state. */
  async *watchJob(em: EntityManager, caller: Caller, id: string, signal: AbortSignal): AsyncGenerator<WatchItem> {
    requireId(id, 'id');
    const buffer = new StreamBuffer<SequencedEvent>(streamBufferLimit);
    const unsubscribe = this.#hub.subscribe((event) => {
      if (event.subjectId === id && isJobEvent(event)) buffer.push(event);
    });
    try {
      const job = await em.findOne(Job, { id, ...visibleTo(caller) });
      if (!job) throw notFound('job');
      const [latest] = await em.execute<{ sequence: string | null }[]>(
        'select max(sequence) as sequence from events where subject_id = ?',
        [id],
      );
      const current = jobView(job);
      yield { type: 'event', sequence: Number(latest?.sequence ?? 0), kind: 'updated', job: current, at: current.updatedAt };
      if (isFinal(current.status)) return;
      let seenVersion = current.version;
      for await (const item of this.#live(buffer, 0, signal)) {
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
    const unsubscribeEvents = this.#hub.subscribe((event) => {
      if (event.subjectId === id) changed.set();
    });
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

  /** Live events from the hub after `after`, with heartbeats when quiet. */
  async *#live(buffer: StreamBuffer<SequencedEvent>, after: number, signal: AbortSignal): AsyncGenerator<WatchItem> {
    let last = after;
    for (;;) {
      const next = await buffer.next(this.#settings.get('jobs.stream_heartbeat_interval'), signal);
      if ('aborted' in next) return;
      if ('timeout' in next) {
        yield { type: 'heartbeat', sequence: Math.max(last, this.#hub.position) };
        continue;
      }
      if (next.item.sequence <= last) continue;
      last = next.item.sequence;
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
