/** A stream the sweep keeps alive: it sends a heartbeat when it has been quiet for `intervalMs`. */
export interface HeartbeatTarget {
  beatIfQuiet(now: number, intervalMs: number, position: number): void;
}

/** Longest wait between two sweeps: a heartbeat is at most this late after its interval. */
const maxSweepMs = 1000;

/**
 * One timer for the heartbeats of every taken stream of an instance, instead of a timer
 * (and its re-armed Timeout object, and a bound callback) per stream: a few hundred bytes
 * per open stream, and one timer callback per sweep rather than one per stream per beat.
 * Each sweep asks every stream whether it has been quiet for the interval; a heartbeat
 * therefore comes between one interval and one interval plus a quarter of it (at most
 * a second) after a stream's last message.
 */
export class HeartbeatSweep {
  readonly #targets = new Set<HeartbeatTarget>();
  readonly #intervalMs: () => number;
  readonly #position: () => number;
  #timer: NodeJS.Timeout | undefined;

  constructor(intervalMs: () => number, position: () => number) {
    this.#intervalMs = intervalMs;
    this.#position = position;
  }

  add(target: HeartbeatTarget): void {
    this.#targets.add(target);
    this.#schedule();
  }

  delete(target: HeartbeatTarget): void {
    this.#targets.delete(target);
    if (this.#targets.size === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #schedule(): void {
    if (this.#timer || this.#targets.size === 0) return;
    const everyMs = Math.max(10, Math.min(maxSweepMs, Math.floor(this.#intervalMs() / 4)));
    this.#timer = setTimeout(this.#sweep, everyMs).unref();
  }

  readonly #sweep = () => {
    this.#timer = undefined;
    const now = Date.now();
    const intervalMs = this.#intervalMs();
    const position = this.#position();
    for (const target of this.#targets) target.beatIfQuiet(now, intervalMs, position);
    this.#schedule();
  };
}
