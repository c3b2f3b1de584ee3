import { DomainError } from '../domain-errors.ts';
import { Latch } from './latch.ts';
import { sharedReasons } from '../error-reasons.ts';

export type Waited<T> = { item: T } | { timeout: true } | { aborted: true };

/** How a stream too slow for its events ends: its client resumes from the last sequence it received. */
export function streamOverflow(): DomainError {
  return new DomainError('resource_exhausted', 'the stream fell too far behind: reconnect and resume from the last sequence received', {
    reason: sharedReasons.STREAM_OVERFLOW,
  });
}

/**
 * A bounded queue between a source that pushes (the event hub) and one stream that
 * pulls at the pace of its client. A client too slow to keep up is cut off with
 * ResourceExhausted rather than letting its backlog grow without bound; it resumes
 * from the last sequence it received.
 */
export class StreamBuffer<T> {
  readonly #limit: number;
  readonly #arrived = new Latch();
  #items: T[] = [];
  #overflowed = false;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#items.length;
  }

  /** Cut off: its next read ends the stream, and nothing more is taken. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  push(item: T): void {
    if (this.#overflowed) return;
    if (this.#items.length >= this.#limit) {
      this.cutOff();
      return;
    }
    this.#items.push(item);
    this.#arrived.set();
  }

  /** The next item, if one is waiting. */
  shift(): T | undefined {
    return this.#items.shift();
  }

  /** Ends the stream as too slow at its next read, whatever it holds (also a backlog held elsewhere, in its socket). */
  cutOff(): void {
    this.#overflowed = true;
    this.#items = [];
    this.#arrived.set();
  }

  /** The next item; or, after `timeoutMs` without one, a timeout; or the abort. */
  async next(timeoutMs: number, signal: AbortSignal): Promise<Waited<T>> {
    for (;;) {
      if (this.#overflowed) {
        throw streamOverflow();
      }
      if (this.#items.length > 0) return { item: this.#items.shift()! };
      const woke = await this.#arrived.wait(timeoutMs, signal);
      if (woke === 'timeout') return { timeout: true };
      if (woke === 'aborted') return { aborted: true };
    }
  }
}
