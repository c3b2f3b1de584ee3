import type { Logger } from '../logger.ts';
import type { PgBoss } from './pg-boss.ts';
import type { FetchedQueueEntry } from './queue-entries.ts';

/** The claims of a batch of fetched entries, kept alive while their attempts run. */
export interface BatchClaims {
  /** The entry's attempt ended: its claim needs no more heartbeats. */
  release(entry: FetchedQueueEntry): void;
  /** Stops the heartbeats of every entry. */
  releaseAll(): void;
}

/**
 * What pg-boss's `work()` does for a fetched batch, for entries fetched with `fetch()`:
 * gives each entry its own abort signal (`entry.signal`), and, when the entries carry a
 * heartbeat, refreshes it every half heartbeat, fenced to the fetched attempt. An entry the
 * refresh no longer finds under this claim (failed by pg-boss's supervisor, cancelled, or
 * fetched again elsewhere) has its signal aborted; a refresh that could not run says
 * nothing about the claims and aborts none.
 */
export function keepClaims(boss: PgBoss, queue: string, entries: FetchedQueueEntry[], logger: Logger): BatchClaims {
  const claims = new Map(entries.map((entry) => [entry, new AbortController()]));
  for (const [entry, claim] of claims) entry.signal = claim.signal;
  const heartbeats = entries.map((entry) => entry.heartbeatSeconds ?? 0).filter((seconds) => seconds > 0);
  const held = new Set(entries);
  let timer: NodeJS.Timeout | undefined;
  if (heartbeats.length > 0) {
    timer = setInterval(() => void refresh(), (Math.min(...heartbeats) * 1000) / 2);
    timer.unref();
  }
  const refresh = async () => {
    const alive = [...held].filter((entry) => !entry.signal.aborted);
    if (alive.length === 0) return;
    let settled: Set<string>;
    try {
      const response = await boss.touch(
        queue,
        alive.map(({ id, retryCount }) => ({ id, retryCount })),
      );
      settled = new Set((response as { settled?: string[] }).settled ?? []);
    } catch (error) {
      logger.warn({ err: error, queue }, 'refreshing the heartbeats of running entries failed');
      return;
    }
    for (const entry of alive) {
      if (held.has(entry) && !settled.has(entry.id))
        claims.get(entry)!.abort(new Error(`queue entry ${entry.id} is no longer claimed by this worker`));
    }
  };
  return {
    release(entry) {
      held.delete(entry);
      if (held.size === 0) clearInterval(timer);
    },
    releaseAll() {
      held.clear();
      clearInterval(timer);
    },
  };
}
