import type { Caller } from '../platform/caller.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';

/** Sent (by triggers, see the credential_notifications migration) when a session, an API key or an account changes. */
export const credentialsChangedChannel = 'credentials_changed';

interface Entry {
  caller: Caller;
  /** When the credential must be checked again at the latest (its expiry, or sooner). */
  recheckAtMs: number;
  /** The count of insertions when this entry was last (re-)inserted. */
  insertedAt: number;
}

/**
 * The callers of credentials this instance has checked, so that a call with a known
 * credential costs neither a signature check nor a database round trip.
 *
 * Correctness rests on forgetting in time: every change that can end or alter a
 * credential notifies `credentials_changed` on commit, and every instance then forgets
 * everything it remembers (such changes are rare next to calls). A check that started
 * before a notification is not remembered (its answer may predate the change), and
 * nothing is remembered or served while the LISTEN connection is down; when it comes
 * back, what was missed meanwhile is unknown, so everything is forgotten again.
 */
export class CheckedCredentials {
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>();
  #notifications: Pick<PgNotifications, 'connected'> | undefined;
  /** Counts the times everything was forgotten; a check remembers only if it did not change meanwhile. */
  #generation = 0;
  /** Counts insertions, to tell how far an entry has moved towards the front (the least recently used end). */
  #insertions = 0;

  constructor(maxEntries = 10_000) {
    this.#maxEntries = maxEntries;
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(credentialsChangedChannel, () => this.forgetAll());
    notifications.onReconnect(() => this.forgetAll());
    this.#notifications = notifications;
  }

  /** The caller of `bearer` when it was checked and nothing has changed since. */
  get(bearer: string): Caller | undefined {
    if (!this.#notifications?.connected) return undefined;
    const entry = this.#entries.get(bearer);
    if (!entry) return undefined;
    if (entry.recheckAtMs <= Date.now()) {
      this.#entries.delete(bearer);
      return undefined;
    }
    // A Map iterates in insertion order, so the first entry is the least recently used one
    // evicted. An entry is re-inserted at the back only once half the capacity has been
    // inserted after it: one still in use is never the first (evicting it takes a whole
    // capacity of insertions after it), and most hits cost one lookup instead of a delete
    // and a set with the credential's few hundred characters.
    if (this.#insertions - entry.insertedAt > this.#maxEntries / 2) {
      this.#entries.delete(bearer);
      entry.insertedAt = ++this.#insertions;
      this.#entries.set(bearer, entry);
    }
    return entry.caller;
  }

  /** Where a check starts: pass it to `remember` with the check's result. */
  get generation(): number {
    return this.#generation;
  }

  remember(bearer: string, caller: Caller, recheckAtMs: number, checkedInGeneration: number): void {
    if (checkedInGeneration !== this.#generation || !this.#notifications?.connected) return;
    this.#entries.delete(bearer);
    this.#entries.set(bearer, { caller, recheckAtMs, insertedAt: ++this.#insertions });
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
  }

  forgetAll(): void {
    this.#generation++;
    this.#entries.clear();
  }
}
