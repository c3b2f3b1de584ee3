import type { EntityManager, MikroORM } from '../db/orm.ts';
import { invalidField, notFound } from '../domain-errors.ts';
import type { PgNotifications } from '../events/pg-notifications.ts';
import type { Logger } from '../logger.ts';
import { Listeners, type Unsubscribe } from '../listeners.ts';
import { SettingOverride } from './entities.ts';
import type { SettingDefinition, SettingTypeName } from './setting-types.ts';

const channel = 'yardmaster_settings';

/** Settings by key: each area declares its own (auth-settings.ts, ...), and the composition root joins them. */
// biome-ignore lint/suspicious/noExplicitAny: definitions of every value type are listed together.
export type SettingCatalog = Record<string, SettingDefinition<any>>;
export type SettingValue<D> = D extends SettingDefinition<infer T> ? T : never;

/** What an area reads: the current value of the settings it declares, and their changes. */
export interface SettingsReader<C extends SettingCatalog> {
  get<K extends keyof C & string>(key: K): SettingValue<C[K]>;
  /** Calls `listener` whenever the value of `key` changes on this instance. */
  onChange(key: keyof C & string, listener: () => void): Unsubscribe;
}

/** What admins do with settings: read them all, describe one, change one. */
export type SettingsAdmin = Pick<SettingsStore<SettingCatalog>, 'list' | 'describe' | 'update'>;

/** A setting as admins see it. */
export interface SettingView {
  key: string;
  type: SettingTypeName;
  value: unknown;
  defaultValue: unknown;
  description: string;
  updatedByUsername: string | undefined;
  updatedAt: Date | undefined;
}

interface Override {
  value: unknown;
  json: unknown;
  updatedByUsername: string | undefined;
  updatedAt: Date;
}

export interface SettingsActor {
  id: string;
  username: string;
}

/**
 * The current value of every runtime setting, held in memory and kept in step with the
 * `settings` table on every instance: a change is written with a NOTIFY in the same
 * transaction, and each instance reloads the key it is told about.
 */
export class SettingsStore<C extends SettingCatalog> implements SettingsReader<C> {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  readonly #catalog: C;
  #overrides = new Map<string, Override>();
  readonly #listeners = new Map<string, Listeners>();
  readonly #defaults: Partial<{ [K in keyof C]: SettingValue<C[K]> }>;

  /** `defaults` replaces the catalog's default of some settings (from the environment). */
  constructor(orm: MikroORM, logger: Logger, catalog: C, defaults: Partial<{ [K in keyof C]: SettingValue<C[K]> }> = {}) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'settings' });
    this.#catalog = catalog;
    this.#defaults = defaults;
  }

  #isKey(key: string): key is keyof C & string {
    return Object.hasOwn(this.#catalog, key);
  }

  get #keys(): (keyof C & string)[] {
    return Object.keys(this.#catalog);
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(channel, (key) => {
      if (this.#isKey(key)) void this.#reload([key]);
    });
    notifications.onReconnect(() => void this.#reload(this.#keys));
    await this.#reload(this.#keys);
  }

  get<K extends keyof C & string>(key: K): SettingValue<C[K]> {
    const override = this.#overrides.get(key);
    return (override ? override.value : this.#defaultOf(key)) as SettingValue<C[K]>;
  }

  onChange(key: keyof C & string, listener: () => void): Unsubscribe {
    let listeners = this.#listeners.get(key);
    if (!listeners) {
      listeners = new Listeners();
      this.#listeners.set(key, listeners);
    }
    return listeners.add(listener);
  }

  list(): SettingView[] {
    return this.#keys.sort().map((key) => this.#view(key));
  }

  describe(key: string): SettingView {
    if (!this.#isKey(key)) throw notFound(`setting "${key}"`);
    return this.#view(key);
  }

  /** Sets a setting from its JSON form; `null` restores the default. */
  async update(em: EntityManager, key: string, json: unknown, actor: SettingsActor): Promise<SettingView> {
    if (!this.#isKey(key)) throw notFound(`setting "${key}"`);
    const definition: SettingDefinition<unknown> = this.#catalog[key];
    let canonicalJson: unknown = null;
    if (json !== null && json !== undefined) {
      const parsed = definition.parse(json);
      if ('problem' in parsed) throw invalidField('value', `${key} ${parsed.problem}`);
      canonicalJson = definition.toJson(parsed.value);
    }
    await em.transactional(async (tx) => {
      if (canonicalJson === null) {
        await tx.nativeDelete(SettingOverride, { key });
      } else {
        await tx.upsert(SettingOverride, {
          key,
          value: canonicalJson,
          updatedById: actor.id,
          updatedByUsername: actor.username,
          updatedAt: new Date(),
        });
      }
      await tx.execute('select pg_notify(?, ?)', [channel, key]);
    });
    await this.#reload([key]);
    return this.#view(key);
  }

  #view(key: keyof C & string): SettingView {
    const definition: SettingDefinition<unknown> = this.#catalog[key];
    const override = this.#overrides.get(key);
    return {
      key,
      type: definition.type,
      value: override ? override.json : definition.toJson(this.#defaultOf(key)),
      defaultValue: definition.toJson(this.#defaultOf(key)),
      description: definition.description,
      updatedByUsername: override?.updatedByUsername,
      updatedAt: override?.updatedAt,
    };
  }

  #defaultOf(key: keyof C & string): unknown {
    return Object.hasOwn(this.#defaults, key) ? this.#defaults[key] : this.#catalog[key].defaultValue;
  }

  async #reload(keys: (keyof C & string)[]): Promise<void> {
    const em = this.#orm.em.fork();
    const rows = await em.find(SettingOverride, { key: { $in: keys } });
    const found = new Map(rows.map((row) => [row.key, row]));
    for (const key of keys) {
      const before = JSON.stringify(this.#overrides.get(key)?.json ?? null);
      const row = found.get(key);
      const definition: SettingDefinition<unknown> = this.#catalog[key];
      const parsed = row ? definition.parse(row.value) : undefined;
      if (row && parsed && 'value' in parsed) {
        this.#overrides.set(key, {
          value: parsed.value,
          json: row.value,
          updatedByUsername: row.updatedByUsername ?? undefined,
          updatedAt: row.updatedAt,
        });
      } else {
        if (row) this.#logger.warn({ key }, 'ignoring a stored setting value that is no longer valid');
        this.#overrides.delete(key);
      }
      if (JSON.stringify(this.#overrides.get(key)?.json ?? null) !== before) {
        this.#listeners.get(key)?.notify();
      }
    }
  }
}
