import { setImmediate as nextTurn } from 'node:timers/promises';
import { expect, test } from 'vitest';
import type { EventHub } from '../platform/events/event-hub.ts';
import type { SequencedEvent } from '../platform/events/event-log.ts';
import { Listeners } from '../platform/listeners.ts';
import { JobWatchIndex, type JobWatcher } from './job-watch-index.ts';
import { toSnapshot, type JobView } from './job-view.ts';

/** What the index needs of the hub: its listeners, called a page at a time, then its position moved (as EventHub does). */
class PagedHub {
  position = 0;
  readonly #listeners = new Listeners<SequencedEvent>();

  subscribe(listener: (event: SequencedEvent) => void) {
    return this.#listeners.add(listener);
  }

  handOut(page: SequencedEvent[]): void {
    for (const event of page)
      this.#listeners.notify(event, (error) => {
        throw error;
      });
    this.position = page.at(-1)!.sequence;
  }
}

function jobEvent(sequence: number): SequencedEvent {
  const job = { id: `job-${sequence}`, ownerId: 'owner-1', type: 'noop', status: 'running', labels: {}, params: {} };
  return {
    sequence,
    createdAt: new Date(),
    kind: 'job.updated',
    subjectId: job.id,
    ownerId: job.ownerId,
    payload: toSnapshot(job as unknown as JobView),
  };
}

/** A stream that checks, at every event it gets, that the index never said it had this event already. */
class CheckedWatcher implements JobWatcher {
  readonly received: number[] = [];
  readonly #index: () => JobWatchIndex;

  constructor(index: () => JobWatchIndex) {
    this.#index = index;
  }

  matches(): boolean {
    return true;
  }

  deliver(event: SequencedEvent): void {
    expect(this.#index().position, 'the index claimed an event handed out before this stream had it').toBeLessThan(event.sequence);
    this.received.push(event.sequence);
  }
}

async function settled(index: JobWatchIndex, hub: PagedHub): Promise<void> {
  while (index.position < hub.position) await nextTurn();
}

test('an event reaches many streams over several turns, in order, and the position follows the slowest', async () => {
  const hub = new PagedHub();
  const index = new JobWatchIndex(hub as unknown as EventHub, { visitsPerTurn: 7 });
  const watchers = Array.from({ length: 50 }, () => new CheckedWatcher(() => index));
  for (const watcher of watchers) index.watchJobs(watcher, undefined, []);

  hub.handOut([jobEvent(1), jobEvent(2), jobEvent(3)]);
  // Seven streams had the first event in this turn; the rest wait for theirs.
  expect(index.position).toBe(0);
  expect(watchers.filter((watcher) => watcher.received.length > 0)).toHaveLength(7);
  hub.handOut([jobEvent(4)]);
  await settled(index, hub);

  for (const watcher of watchers) expect(watcher.received).toEqual([1, 2, 3, 4]);
  expect(index.position).toBe(4);
});

test('a stream that leaves while an event is handed out gets nothing more; one that joins gets what follows', async () => {
  const hub = new PagedHub();
  const index = new JobWatchIndex(hub as unknown as EventHub, { visitsPerTurn: 5 });
  const watchers = Array.from({ length: 20 }, () => new CheckedWatcher(() => index));
  const unsubscribes = watchers.map((watcher) => index.watchJobs(watcher, 'owner-1', ['noop']));

  hub.handOut([jobEvent(1), jobEvent(2)]);
  const leaving = watchers.at(-1)!;
  unsubscribes.at(-1)!();
  const joining = new CheckedWatcher(() => index);
  index.watchJobs(joining, undefined, []);
  hub.handOut([jobEvent(3)]);
  await settled(index, hub);

  expect(leaving.received).toEqual([]);
  expect(joining.received.at(-1)).toBe(3);
  expect(joining.received).toEqual([...joining.received].sort((a, b) => a - b));
  for (const watcher of watchers.slice(0, -1)) expect(watcher.received).toEqual([1, 2, 3]);
});

test('a stream that fails to take an event does not keep it from the others', async () => {
  const hub = new PagedHub();
  const errors: unknown[] = [];
  const index = new JobWatchIndex(hub as unknown as EventHub, { visitsPerTurn: 3, onError: (error) => errors.push(error) });
  const failing: JobWatcher = {
    matches: () => true,
    deliver: () => {
      throw new Error('broken stream');
    },
  };
  const before = new CheckedWatcher(() => index);
  const after = new CheckedWatcher(() => index);
  index.watchJobs(before, undefined, []);
  index.watchJobs(failing, undefined, []);
  index.watchJobs(after, undefined, []);

  hub.handOut([jobEvent(1), jobEvent(2)]);
  await settled(index, hub);

  expect(errors).toHaveLength(2);
  expect(before.received).toEqual([1, 2]);
  expect(after.received).toEqual([1, 2]);
});
