import type { EntityManager } from '../platform/db/orm.ts';
import { jobViewColumnsAsJson } from './job-view.ts';

/** At most this many ids in one statement; a larger gathering is sent as several. */
const maxIdsPerRead = 500;

/** The ORM's own pg pool (`getNativeClient`). */
type OrmPool = Awaited<ReturnType<ReturnType<EntityManager['getConnection']>['getNativeClient']>>;

interface Waiter {
  resolve: (values: readonly unknown[] | undefined) => void;
  reject: (error: unknown) => void;
}

/**
 * Reads single jobs by id (GetJob's read), gathered: every read asked for during one turn
 * of the event loop goes out as one statement (`id = any($1)`) when the turn ends. Under
 * load a call then pays a share of one round trip (pg's write, its pool, the reply's
 * parsing, and PostgreSQL's own per-statement work) instead of a whole one.
 *
 * A read is sent only after it was asked for, so it sees everything committed before its
 * call arrived (no answer is shared with a read that started earlier). Visibility stays
 * with the caller: the row's owner is compared by `JobsService`.
 */
export class JobReads {
  readonly #pool: () => Promise<OrmPool>;
  #gathered = new Map<string, Waiter[]>();
  #sendScheduled = false;

  constructor(pool: () => Promise<OrmPool>) {
    this.#pool = pool;
  }

  /** The job's `jobViewColumnsAsJson` values, or undefined when no job has this id (a UUID). */
  read(id: string): Promise<readonly unknown[] | undefined> {
    // PostgreSQL writes uuids in lower case; a client may send upper case.
    const key = id.toLowerCase();
    return new Promise((resolve, reject) => {
      const waiters = this.#gathered.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else this.#gathered.set(key, [{ resolve, reject }]);
      if (!this.#sendScheduled) {
        this.#sendScheduled = true;
        setImmediate(() => this.#send());
      }
    });
  }

  #send(): void {
    const gathered = this.#gathered;
    this.#gathered = new Map();
    this.#sendScheduled = false;
    const ids = [...gathered.keys()];
    for (let start = 0; start < ids.length; start += maxIdsPerRead) {
      const batch = ids.slice(start, start + maxIdsPerRead);
      this.#read(batch).then(
        (rows) => {
          for (const id of batch) for (const waiter of gathered.get(id)!) waiter.resolve(rows.get(id));
        },
        (error: unknown) => {
          for (const id of batch) for (const waiter of gathered.get(id)!) waiter.reject(error);
        },
      );
    }
  }

  async #read(ids: string[]): Promise<Map<string, readonly unknown[]>> {
    const pool = await this.#pool();
    const { rows } = await pool.query<[unknown[]]>({
      name: 'jobs.get_any',
      text: `select ${jobViewColumnsAsJson} from jobs where id = any($1::uuid[])`,
      values: [ids],
      rowMode: 'array',
    });
    const byId = new Map<string, readonly unknown[]>();
    for (const [values] of rows) byId.set(values[0] as string, values);
    return byId;
  }
}
