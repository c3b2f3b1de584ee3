import type { EntityManager } from '../platform/db/orm.ts';
import type { EventHub } from '../platform/events/event-hub.ts';
import type { QueuePauses } from './queue-pauses.ts';
import type { QueueOverview, QueueService } from './queue-service.ts';

/** How old a shared overview may be when nothing changed (ages and the last hour move on). */
const maxAgeMs = 1000;

/**
 * The queue counts that WatchQueues streams show, read once for all of them: after a job
 * event or a pause change the next reader computes a new overview and every other
 * stream woken by the same change gets that one, instead of each running the same
 * aggregate.
 */
export class QueueOverviewFeed {
  readonly #queues: QueueService<unknown>;
  readonly #listeners = new Set<() => void>();
  #generation = 0;
  #shared: { generation: number; at: number; overview: Promise<QueueOverview> } | undefined;

  constructor(deps: { queues: QueueService<unknown>; hub: EventHub; pauses: QueuePauses }) {
    this.#queues = deps.queues;
    deps.hub.subscribe((event) => {
      if (event.kind.startsWith('job.')) this.#changed();
    });
    deps.pauses.onChange(() => this.#changed());
  }

  /** Calls `listener` after every change that may move the counts; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
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

  #changed(): void {
    this.#generation += 1;
    for (const listener of this.#listeners) listener();
  }
}
