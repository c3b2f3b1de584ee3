import { authSettings } from '../auth/auth-settings.ts';
import { filesSettings } from '../files/files-settings.ts';
import { jobsSettings } from '../jobs/jobs-settings.ts';
import { serverSettings } from '../server/server-settings.ts';
import type { SettingDefinition } from './setting-types.ts';

/** Every runtime setting, by key. Each area declares its own; this is where they meet. */
export const settingsCatalog = {
  ...authSettings,
  ...jobsSettings,
  ...filesSettings,
  ...serverSettings,
};

export type SettingsCatalog = typeof settingsCatalog;
export type SettingKey = keyof SettingsCatalog;
export type SettingValue<K extends SettingKey> = SettingsCatalog[K] extends SettingDefinition<infer T> ? T : never;

export function isSettingKey(key: string): key is SettingKey {
  return Object.hasOwn(settingsCatalog, key);
}
