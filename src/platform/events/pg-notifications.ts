import pg from 'pg';
import type { Logger } from '../logger.ts';
import { Listeners, type Unsubscribe } from '../listeners.ts';

/**
 * The one LISTEN connection of this instance. Every part of the server that reacts to
 * changes made by other instances (settings, signing keys, job events...) subscribes
 * here, so an instance holds a single extra connection however many streams it serves.
 *
 * NOTIFY is not durable: a notification sent while the connection is down is lost.
 * Subscribers therefore also get `onReconnect`, to reload what they cache.
 */
export class PgNotifications {
  readonly #url: string;
  readonly #logger: Logger;
  readonly #handlers = new Map<string, Listeners<string>>();
  readonly #reconnectHandlers = new Listeners();
  #client: pg.Client | undefined;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;
  #connected: Promise<void> | undefined;

  constructor(url: string, logger: Logger) {
    this.#url = url;
    this.#logger = logger.child({ component: 'notifications' });
  }

  /** Connects and listens to every channel subscribed so far; later subscriptions listen at once. */
  start(): Promise<void> {
    this.#connected ??= this.#connect(false);
    return this.#connected;
  }

  async subscribe(channel: string, handler: (payload: string) => void): Promise<Unsubscribe> {
    let handlers = this.#handlers.get(channel);
    if (!handlers) {
      handlers = new Listeners();
      this.#handlers.set(channel, handlers);
      await this.#client?.query(`listen ${pg.escapeIdentifier(channel)}`);
    }
    return handlers.add(handler);
  }

  /** Called after the connection came back: anything sent meanwhile was missed. */
  onReconnect(handler: () => void): Unsubscribe {
    return this.#reconnectHandlers.add(handler);
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  async #connect(isReconnect: boolean): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url, keepAlive: true });
    client.on('notification', (message) => {
      this.#handlers
        .get(message.channel)
        ?.notify(message.payload ?? '', (error) =>
          this.#logger.error({ err: error, channel: message.channel }, 'notification handler failed'),
        );
    });
    client.on('error', (error) => {
      this.#logger.warn({ err: error }, 'notification connection failed');
      this.#scheduleReconnect(client);
    });
    client.on('end', () => this.#scheduleReconnect(client));
    await client.connect();
    for (const channel of this.#handlers.keys()) await client.query(`listen ${pg.escapeIdentifier(channel)}`);
    if (this.#closed) {
      await client.end();
      return;
    }
    this.#client = client;
    if (isReconnect) {
      this.#logger.info('notification connection restored');
      this.#reconnectHandlers.notify();
    }
  }

  #scheduleReconnect(failed: pg.Client): void {
    if (this.#closed || this.#client !== failed) return;
    this.#client = undefined;
    failed.end().catch(() => {});
    const attempt = (delayMs: number) => {
      this.#retryTimer = setTimeout(() => {
        this.#connect(true).catch((error: unknown) => {
          this.#logger.warn({ err: error }, 'notification connection still down');
          attempt(Math.min(delayMs * 2, 5_000));
        });
      }, delayMs);
    };
    attempt(100);
  }
}
