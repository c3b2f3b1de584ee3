import type { EventHub } from '../platform/events/event-hub.ts';
import type { SequencedEvent } from '../platform/events/event-log.ts';
import type { Unsubscribe } from '../platform/listeners.ts';
import { fromSnapshot, type JobView } from './job-view.ts';

/** A stream of job events: which jobs it wants, and how an event reaches it. */
export interface JobWatcher {
  matches(job: JobView): boolean;
  deliver(event: SequencedEvent): void;
}

/** The watchers of one owner (or of any owner), by the type they are limited to. */
class WatchersByType {
  readonly anyType = new Set<JobWatcher>();
  readonly byType = new Map<string, Set<JobWatcher>>();

  add(watcher: JobWatcher, types: readonly string[]): void {
    if (types.length === 0) {
      this.anyType.add(watcher);
      return;
    }
    for (const type of types) {
      let watchers = this.byType.get(type);
      if (!watchers) {
        watchers = new Set();
        this.byType.set(type, watchers);
      }
      watchers.add(watcher);
    }
  }

  delete(watcher: JobWatcher, types: readonly string[]): void {
    if (types.length === 0) {
      this.anyType.delete(watcher);
      return;
    }
    for (const type of types) {
      const watchers = this.byType.get(type);
      watchers?.delete(watcher);
      if (watchers?.size === 0) this.byType.delete(type);
    }
  }

  get empty(): boolean {
    return this.anyType.size === 0 && this.byType.size === 0;
  }
}

/** Job streams visited (tested, and written to if they match) in one turn of the event loop. */
const defaultVisitsPerTurn = 200;

/** Where the handing out of one event stands: the event, its job, and the streams still to visit. */
interface Dispatch {
  event: SequencedEvent;
  job: JobView;
  watchers: Iterator<JobWatcher>;
}

/**
 * This instance's one subscriber of the event hub for job streams. Each event goes only
 * to the streams that can want it: those of its job (WatchJob, log tails), and those
 * whose owner (or any owner) and type (or any type) are the event's, and each of those
 * is tested once. The job an event carries is read from its snapshot once, however many
 * streams see it.
 *
 * Handing one event to a thousand WatchJobs streams takes milliseconds of writes; done in
 * one go, it holds up everything else the instance does meanwhile, such as the database
 * replies of the transaction that ends the next job, whose event then reaches the hub that
 * much later. So the WatchJobs streams get an event a few hundred at a time, one batch per
 * turn of the event loop, events strictly one after the other (every stream sees them in
 * order). `position` says how far every stream has been handed everything: heartbeats
 * give it as a resume point, and it never runs ahead of a stream still waiting for its
 * turn. The streams of one job (WatchJob, log tails) are few and get each event at once.
 */
export class JobWatchIndex {
  readonly #hub: EventHub;
  readonly #anyOwner = new WatchersByType();
  readonly #byOwner = new Map<string, WatchersByType>();
  readonly #bySubject = new Map<string, Set<(event: SequencedEvent) => void>>();
  readonly #unsubscribe: Unsubscribe;
  readonly #visitsPerTurn: number;
  readonly #onError: (error: unknown) => void;
  /** Events waiting for the WatchJobs streams, oldest first; the first is being handed out. */
  readonly #queue: SequencedEvent[] = [];
  #current: Dispatch | undefined;
  /** Every event up to here has reached every WatchJobs stream (while the queue is not empty). */
  #handedOut = 0;
  #turnScheduled = false;

  constructor(hub: EventHub, options: { visitsPerTurn?: number; onError?: (error: unknown) => void } = {}) {
    this.#hub = hub;
    this.#visitsPerTurn = options.visitsPerTurn ?? defaultVisitsPerTurn;
    this.#onError = options.onError ?? (() => {});
    this.#unsubscribe = hub.subscribe((event) => this.#dispatch(event));
  }

  /**
   * Every event up to this position has been handed to every stream of this index: a
   * stream whose own buffer is empty has delivered everything up to here.
   */
  get position(): number {
    return this.#queue.length === 0 ? this.#hub.position : this.#handedOut;
  }

  close(): void {
    this.#unsubscribe();
  }

  /** Hands `watcher` every job event whose job it matches, among those of `ownerId` (undefined: any) and `types` (empty: any). */
  watchJobs(watcher: JobWatcher, ownerId: string | undefined, types: readonly string[]): Unsubscribe {
    let owned = ownerId === undefined ? this.#anyOwner : this.#byOwner.get(ownerId);
    if (!owned) {
      owned = new WatchersByType();
      this.#byOwner.set(ownerId!, owned);
    }
    owned.add(watcher, types);
    return () => this.unwatchJobs(watcher, ownerId, types);
  }

  /** Stops handing `watcher` events (it was added with this owner and these types); nothing if it was not. */
  unwatchJobs(watcher: JobWatcher, ownerId: string | undefined, types: readonly string[]): void {
    const watchers = ownerId === undefined ? this.#anyOwner : this.#byOwner.get(ownerId);
    if (!watchers) return;
    watchers.delete(watcher, types);
    if (ownerId !== undefined && watchers.empty) this.#byOwner.delete(ownerId);
  }

  /** Calls `listener` with every event about `subjectId` (a job), of any kind. */
  watchSubject(subjectId: string, listener: (event: SequencedEvent) => void): Unsubscribe {
    let listeners = this.#bySubject.get(subjectId);
    if (!listeners) {
      listeners = new Set();
      this.#bySubject.set(subjectId, listeners);
    }
    listeners.add(listener);
    const registered = listeners;
    return () => {
      registered.delete(listener);
      if (registered.size === 0 && this.#bySubject.get(subjectId) === registered) this.#bySubject.delete(subjectId);
    };
  }

  #dispatch(event: SequencedEvent): void {
    const subjectListeners = this.#bySubject.get(event.subjectId);
    if (subjectListeners) for (const listener of [...subjectListeners]) listener(event);
    if (!event.kind.startsWith('job.')) return;
    if (this.#anyOwner.empty && this.#byOwner.size === 0 && this.#queue.length === 0) return;
    // The hub moves its position past this event once it returns; ours stays behind until handed out.
    if (this.#queue.length === 0) this.#handedOut = this.#hub.position;
    this.#queue.push(event);
    if (!this.#turnScheduled) this.#handOut();
  }

  /** Hands out queued events until this turn's visits are used up; the next turn goes on. */
  readonly #handOut = (): void => {
    this.#turnScheduled = false;
    let visits = this.#visitsPerTurn;
    while (this.#queue.length > 0) {
      if (!this.#current) this.#current = this.#start(this.#queue[0]!);
      const dispatch = this.#current;
      for (let next = dispatch.watchers.next(); !next.done; next = dispatch.watchers.next()) {
        try {
          if (next.value.matches(dispatch.job)) next.value.deliver(dispatch.event);
        } catch (error) {
          this.#onError(error);
        }
        if (--visits === 0) {
          this.#turnScheduled = true;
          setImmediate(this.#handOut);
          return;
        }
      }
      this.#current = undefined;
      this.#handedOut = this.#queue.shift()!.sequence;
    }
  };

  /**
   * The streams that may want the event, visited as the sets are when reached: one that
   * leaves meanwhile is skipped, one that joins meanwhile is visited (its replay and its
   * last sequence keep it from seeing an event twice).
   */
  #start(event: SequencedEvent): Dispatch {
    const job = jobOf(event);
    return { event, job, watchers: watchersOf([this.#anyOwner, this.#byOwner.get(job.ownerId)], job.type) };
  }
}

function* watchersOf(groups: (WatchersByType | undefined)[], type: string): Generator<JobWatcher> {
  for (const watchers of groups) {
    if (!watchers) continue;
    yield* watchers.anyType;
    const typed = watchers.byType.get(type);
    if (typed) yield* typed;
  }
}

/**
 * The job an event carries, read once per event: the hub hands the same event to every
 * stream, and streams only read the view, never change it.
 */
const eventJobs = new WeakMap<SequencedEvent, JobView>();

export function jobOf(event: SequencedEvent): JobView {
  let job = eventJobs.get(event);
  if (!job) {
    job = fromSnapshot(event.payload);
    eventJobs.set(event, job);
  }
  return job;
}
