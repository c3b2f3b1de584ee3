import type { EntityManager, MikroORM } from '../db/orm.ts';
import { invalidField, notFound } from '../domain-errors.ts';
import type { PgNotifications } from '../events/pg-notifications.ts';
import type { Logger } from '../logger.ts';
import { SettingOverride } from './entities.ts';
import { isSettingKey, settingsCatalog, type SettingKey, type SettingValue } from './settings-catalog.ts';
import type { SettingDefinition, SettingTypeName } from './setting-types.ts';

const channel = 'yardmaster_settings';

/** A setting as admins see it. */
export interface SettingView {
  key: SettingKey;
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
export class SettingsStore {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  #overrides = new Map<SettingKey, Override>();
  readonly #listeners = new Map<SettingKey, Set<() => void>>();
  readonly #defaults: Partial<Record<SettingKey, unknown>>;

  /** `defaults` replaces the catalog's default of some settings (from the environment). */
  constructor(orm: MikroORM, logger: Logger, defaults: Partial<Record<SettingKey, unknown>> = {}) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'settings' });
    this.#defaults = defaults;
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(channel, (key) => {
      if (isSettingKey(key)) void this.#reload([key]);
    });
    notifications.onReconnect(() => void this.#reload(Object.keys(settingsCatalog) as SettingKey[]));
    await this.#reload(Object.keys(settingsCatalog) as SettingKey[]);
  }

  get<K extends SettingKey>(key: K): SettingValue<K> {
    const override = this.#overrides.get(key);
    return (override ? override.value : this.#defaultOf(key)) as SettingValue<K>;
  }

  /** Calls `listener` whenever the value of `key` changes on this instance. */
  onChange(key: SettingKey, listener: () => void): () => void {
    let listeners = this.#listeners.get(key);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(key, listeners);
    }
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  list(): SettingView[] {
    return (Object.keys(settingsCatalog) as SettingKey[]).sort().map((key) => this.#view(key));
  }

  describe(key: string): SettingView {
    if (!isSettingKey(key)) throw notFound(`setting "${key}"`);
    return this.#view(key);
  }

  /** Sets a setting from its JSON form; `null` restores the default. */
  async update(em: EntityManager, key: string, json: unknown, actor: SettingsActor): Promise<SettingView> {
    if (!isSettingKey(key)) throw notFound(`setting "${key}"`);
    const definition: SettingDefinition<unknown> = settingsCatalog[key];
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

  #view(key: SettingKey): SettingView {
    const definition: SettingDefinition<unknown> = settingsCatalog[key];
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

  #defaultOf(key: SettingKey): unknown {
    return Object.hasOwn(this.#defaults, key) ? this.#defaults[key] : settingsCatalog[key].defaultValue;
  }

  async #reload(keys: SettingKey[]): Promise<void> {
    const em = this.#orm.em.fork();
    const rows = await em.find(SettingOverride, { key: { $in: keys } });
    const found = new Map(rows.map((row) => [row.key, row]));
    for (const key of keys) {
      const before = JSON.stringify(this.#overrides.get(key)?.json ?? null);
      const row = found.get(key as string);
      const definition: SettingDefinition<unknown> = settingsCatalog[key];
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
        for (const listener of this.#listeners.get(key) ?? []) listener();
      }
    }
  }
}
