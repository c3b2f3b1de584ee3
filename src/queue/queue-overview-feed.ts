import type { EntityManager } from '../platform/db/orm.ts';
import type { EventHub } from '../platform/events/event-hub.ts';
import { Latch } from '../platform/events/latch.ts';
import { Listeners, type Unsubscribe } from '../platform/listeners.ts';
import type { QueuePauses } from './queue-pauses.ts';
import type { QueueOverview, QueueService } from './queue-service.ts';

/** How old a shared overview may be when nothing changed (ages and the last hour move on). */
const maxAgeMs = 1000;
/** At most this often does a watch yield changed counts. */
const watchMinIntervalMs = 300;

/** Counts without the ever-growing ages, to tell a real change from the clock moving. */
function fingerprint(overview: QueueOverview): string {
  return JSON.stringify([
    overview.queues.map((queue) => ({ ...queue, oldestQueuedAgeMs: queue.oldestQueuedAgeMs !== undefined })),
    overview.pausedGlobally,
  ]);
}

/**
 * The queue counts that WatchQueues streams show, read once for all of them: after a job
 * event or a pause change the next reader computes a new overview and every other
 * stream woken by the same change gets that one, instead of each running the same
 * aggregate.
 */
export class QueueOverviewFeed {
  readonly #queues: QueueService<unknown>;
  readonly #heartbeatIntervalMs: () => number;
  readonly #listeners = new Listeners();
  #generation = 0;
  #shared: { generation: number; at: number; overview: Promise<QueueOverview> } | undefined;

  constructor(deps: { queues: QueueService<unknown>; hub: EventHub; pauses: QueuePauses; heartbeatIntervalMs: () => number }) {
    this.#queues = deps.queues;
    this.#heartbeatIntervalMs = deps.heartbeatIntervalMs;
    deps.hub.subscribe((event) => {
      if (event.kind.startsWith('job.')) this.#changed();
    });
    deps.pauses.onChange(() => this.#changed());
  }

  /** Calls `listener` after every change that may move the counts; returns the unsubscribe. */
  onChange(listener: () => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** An overview computed after the latest change, and at most a second old. */
  current(em: EntityManager): Promise<QueueOverview> {
    const shared = this.#shared;
    if (shared && shared.generation === this.#generation && Date.now() - shared.at <= maxAgeMs) return shared.overview;
    const next = { generation: this.#generation, at: Date.now(), overview: this.#queues.overview(em) };
    this.#shared = next;
    // A failed read is not shared with later readers.
    next.overview.catch(() => {
      if (this.#shared === next) this.#shared = undefined;
    });
    return next.overview;
  }

  /**
   * The overview now, then again after each change of the counts, or unchanged as a
   * heartbeat when the stream was quiet for the heartbeat interval; ends when `signal` aborts.
   */
  async *watch(em: EntityManager, signal: AbortSignal): AsyncGenerator<QueueOverview> {
    const changed = new Latch();
    const stopWatching = this.onChange(() => changed.set());
    try {
      let sent = '';
      let sentAt = 0;
      for (;;) {
        const overview = await this.current(em.fork());
        const print = fingerprint(overview);
        const heartbeatDue = Date.now() - sentAt >= this.#heartbeatIntervalMs();
        if (print !== sent || heartbeatDue) {
          yield overview;
          sent = print;
          sentAt = Date.now();
        }
        const woke = await changed.wait(Math.max(1, this.#heartbeatIntervalMs() - (Date.now() - sentAt)), signal);
        if (woke === 'aborted') return;
        // Changes arriving in a burst are counted once.
        if (woke === 'set') await new Promise((resolve) => setTimeout(resolve, watchMinIntervalMs));
      }
    } finally {
      stopWatching();
    }
  }

  #changed(): void {
    this.#generation += 1;
    this.#listeners.notify();
  }
}
