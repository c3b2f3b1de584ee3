/**
 * A wake-up flag for a stream that re-reads its source when told something changed:
 * notifications set it, the stream waits on it. Any number of notifications between two
 * waits count as one, so a busy source cannot pile up wake-ups.
 */
export class Latch {
  #set = false;
  #wake: (() => void) | undefined;

  set(): void {
    this.#set = true;
    this.#wake?.();
  }

  /** Resolves 'set' (and clears the flag), 'timeout' after `timeoutMs`, or 'aborted'. */
  async wait(timeoutMs: number, signal: AbortSignal): Promise<'set' | 'timeout' | 'aborted'> {
    if (this.#set) {
      this.#set = false;
      return 'set';
    }
    if (signal.aborted) return 'aborted';
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish('timeout'), timeoutMs);
      const onAbort = () => finish('aborted');
      const finish = (why: 'set' | 'timeout' | 'aborted') => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#wake = undefined;
        if (why === 'set') this.#set = false;
        resolve(why);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#wake = () => finish('set');
    });
  }
}
