import type { MikroORM } from '../db/orm.ts';
import type { Logger } from '../logger.ts';
import { EventPositions } from './entities.ts';
import { readEvents, type SequencedEvent } from './event-log.ts';
import { eventsChannel } from './event-sequencer.ts';
import type { PgNotifications } from './pg-notifications.ts';
import { Listeners, type Unsubscribe } from '../listeners.ts';

const pageSize = 1000;
const tickMs = 1000;

/**
 * This instance's single reader of the event log. Told by NOTIFY (or, as a fallback, by
 * a periodic tick) that positions advanced, it reads the new events once and hands each
 * to every subscribed stream, however many there are.
 */
export class EventHub {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  readonly #listeners = new Listeners<SequencedEvent>();
  #position = 0;
  #reading: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(orm: MikroORM, logger: Logger) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'event-hub' });
  }

  async start(notifications: PgNotifications): Promise<void> {
    const positions = await this.#orm.em.fork().findOneOrFail(EventPositions, 1);
    this.#position = positions.lastSequence;
    await notifications.subscribe(eventsChannel, () => this.poke());
    notifications.onReconnect(() => this.poke());
    this.#timer = setInterval(() => this.poke(), tickMs).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#reading;
  }

  /**
   * Every event up to this position has been handed to the subscribers: a stream whose
   * own buffer is empty has delivered everything up to here.
   */
  get position(): number {
    return this.#position;
  }

  /** Calls `listener` with every event after the current position, in order. */
  subscribe(listener: (event: SequencedEvent) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** Reads new events soon; concurrent requests merge into one more read. */
  poke(): void {
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = this.#readLoop().finally(() => {
      this.#reading = undefined;
    });
  }

  async #readLoop(): Promise<void> {
    do {
      this.#again = false;
      try {
        let page: SequencedEvent[];
        do {
          page = await readEvents(this.#orm.em.fork(), this.#position, pageSize);
          for (const event of page)
            this.#listeners.notify(event, (error) => this.#logger.error({ err: error }, 'an event listener failed'));
          // Moved only after every listener has the page, so that `position` never runs ahead.
          if (page.length > 0) this.#position = page[page.length - 1]!.sequence;
        } while (page.length === pageSize);
      } catch (error) {
        this.#logger.warn({ err: error }, 'reading events failed; the next tick retries');
      }
    } while (this.#again);
  }
}
