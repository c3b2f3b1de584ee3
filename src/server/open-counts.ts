/** Open things (calls, streams, connections) by key, forgetting keys that reach zero so that the map holds only live ones. */
export class OpenCounts {
  readonly #open = new Map<string, number>();

  get(key: string): number {
    return this.#open.get(key) ?? 0;
  }

  /** Counts one more under `key`; returns the function that gives it back (once). */
  take(key: string): () => void {
    this.#open.set(key, this.get(key) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const remaining = this.get(key) - 1;
      if (remaining <= 0) this.#open.delete(key);
      else this.#open.set(key, remaining);
    };
  }
}
