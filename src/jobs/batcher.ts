import type { EntityManager } from '../platform/db/orm.ts';

/** One item's answer from its group's run: its value, or the error that refuses it alone. */
export type Settled<R> = { value: R } | { error: unknown };

interface Pending<T, R> {
  em: EntityManager;
  item: T;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

/**
 * Groups calls that arrive together into one run (one transaction): calls that come
 * while a run is being written wait and go together in the next, so a busy server
 * commits once per group and an idle one adds no delay. A run that fails as a whole is
 * retried one item at a time, so one bad item cannot fail the others.
 */
export class Batcher<T, R> {
  readonly #groupSize: number;
  readonly #run: (em: EntityManager, items: T[]) => Promise<Settled<R>[]>;
  #pending: Pending<T, R>[] = [];
  #flushing = false;

  /** `run` gets the items in arrival order and answers each, in the same order. */
  constructor(groupSize: number, run: (em: EntityManager, items: T[]) => Promise<Settled<R>[]>) {
    this.#groupSize = groupSize;
    this.#run = run;
  }

  /** Runs `item` in the next group; `em` is forked for the run (the first item's of each group). */
  add(em: EntityManager, item: T): Promise<R> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ em, item, resolve, reject });
      if (!this.#flushing) void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    while (this.#pending.length > 0) {
      const group = this.#pending.splice(0, this.#groupSize);
      try {
        settle(
          group,
          await this.#run(
            group[0]!.em.fork(),
            group.map((pending) => pending.item),
          ),
        );
      } catch (error) {
        if (group.length === 1) {
          group[0]!.reject(error);
          continue;
        }
        for (const pending of group) {
          await this.#run(pending.em.fork(), [pending.item]).then(
            (settled) => settle([pending], settled),
            (alone: unknown) => pending.reject(alone),
          );
        }
      }
    }
    this.#flushing = false;
  }
}

function settle<T, R>(group: Pending<T, R>[], settled: Settled<R>[]): void {
  for (const [index, pending] of group.entries()) {
    const answer = settled[index]!;
    if ('value' in answer) pending.resolve(answer.value);
    else pending.reject(answer.error);
  }
}
