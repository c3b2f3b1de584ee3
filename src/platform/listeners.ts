/** Removes the listener it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;

/**
 * The listeners of one kind of change. Every registry of the server is one of these:
 * `add` (exposed as `onChange`, `subscribe`...) returns the function that removes the
 * listener again.
 */
export class Listeners<T = void> {
  readonly #listeners = new Set<(value: T) => void>();

  add(listener: (value: T) => void): Unsubscribe {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Calls every listener; with `onError`, one that throws is reported there and the others still run. */
  notify(value: T, onError?: (error: unknown) => void): void {
    for (const listener of this.#listeners) {
      if (!onError) {
        listener(value);
        continue;
      }
      try {
        listener(value);
      } catch (error) {
        onError(error);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
