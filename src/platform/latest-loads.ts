/**
 * Reloads of in-memory state that can finish out of order (a NOTIFY, a reconnect and a
 * local write each start one): a load applies only if no load started after it has
 * applied already, so a slow, stale read never overwrites a newer one.
 */
export class LatestLoads {
  #started = 0;
  #applied = 0;

  async run<T>(load: () => Promise<T>, apply: (loaded: T) => void): Promise<void> {
    const ticket = ++this.#started;
    const loaded = await load();
    if (ticket < this.#applied) return;
    this.#applied = ticket;
    apply(loaded);
  }
}
