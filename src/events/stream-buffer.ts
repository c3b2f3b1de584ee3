import { DomainError } from '../domain-errors.ts';

export type Waited<T> = { item: T } | { timeout: true } | { aborted: true };

/**
 * A bounded queue between a source that pushes (the event hub) and one stream that
 * pulls at the pace of its client. A client too slow to keep up is cut off with
 * ResourceExhausted rather than letting its backlog grow without bound; it resumes
 * from the last sequence it received.
 */
export class StreamBuffer<T> {
  readonly #limit: number;
  #items: T[] = [];
  #wake: (() => void) | undefined;
  #overflowed = false;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#items.length;
  }

  push(item: T): void {
    if (this.#overflowed) return;
    if (this.#items.length >= this.#limit) {
      this.#overflowed = true;
      this.#items = [];
    } else {
      this.#items.push(item);
    }
    this.#wake?.();
  }

  /** The next item; or, after `timeoutMs` without one, a timeout; or the abort. */
  async next(timeoutMs: number, signal: AbortSignal): Promise<Waited<T>> {
    for (;;) {
      if (this.#overflowed) {
        throw new DomainError('resource_exhausted', 'the stream fell too far behind: reconnect and resume from the last sequence received', {
          reason: 'STREAM_OVERFLOW',
        });
      }
      if (this.#items.length > 0) return { item: this.#items.shift()! };
      if (signal.aborted) return { aborted: true };
      const woke = await new Promise<'item' | 'timeout' | 'aborted'>((resolve) => {
        const timer = setTimeout(() => finish('timeout'), timeoutMs);
        const onAbort = () => finish('aborted');
        const finish = (why: 'item' | 'timeout' | 'aborted') => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          this.#wake = undefined;
          resolve(why);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.#wake = () => finish('item');
      });
      if (woke === 'timeout') return { timeout: true };
      if (woke === 'aborted') return { aborted: true };
    }
  }
}
