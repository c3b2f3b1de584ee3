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

/**
 * This instance's one subscriber of the event hub for job streams. Each event goes only
 * to the streams that can want it: those of its job (WatchJob, log tails), and those
 * whose owner (or any owner) and type (or any type) are the event's, and each of those
 * is tested once. The job an event carries is read from its snapshot once, however many
 * streams see it.
 */
export class JobWatchIndex {
  readonly #anyOwner = new WatchersByType();
  readonly #byOwner = new Map<string, WatchersByType>();
  readonly #bySubject = new Map<string, Set<(event: SequencedEvent) => void>>();
  readonly #unsubscribe: Unsubscribe;

  constructor(hub: EventHub) {
    this.#unsubscribe = hub.subscribe((event) => this.#dispatch(event));
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
    const watchers = owned;
    return () => {
      watchers.delete(watcher, types);
      if (ownerId !== undefined && watchers.empty && this.#byOwner.get(ownerId) === watchers) this.#byOwner.delete(ownerId);
    };
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
    if (this.#anyOwner.empty && this.#byOwner.size === 0) return;
    const job = jobOf(event);
    const owned = this.#byOwner.get(job.ownerId);
    for (const watchers of [this.#anyOwner, owned]) {
      if (!watchers) continue;
      for (const watcher of watchers.anyType) if (watcher.matches(job)) watcher.deliver(event);
      const typed = watchers.byType.get(job.type);
      if (typed) for (const watcher of typed) if (watcher.matches(job)) watcher.deliver(event);
    }
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
