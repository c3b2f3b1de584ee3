import { formatDuration, parseDuration } from '../durations.ts';

/**
 * A runtime setting: its type fixes both the JSON form admins read and write and the
 * value the code reads. Durations are written "15m" in JSON and read as milliseconds.
 */
export interface SettingDefinition<T> {
  type: SettingTypeName;
  defaultValue: T;
  description: string;
  /** JSON form -> value, or a sentence saying why the JSON is not acceptable. */
  parse(json: unknown): { value: T } | { problem: string };
  toJson(value: T): unknown;
}

export type SettingTypeName = 'bool' | 'integer' | 'duration' | 'string' | 'string_list' | 'bytes';

export function boolSetting(defaultValue: boolean, description: string): SettingDefinition<boolean> {
  return {
    type: 'bool',
    defaultValue,
    description,
    parse: (json) => (typeof json === 'boolean' ? { value: json } : { problem: 'must be true or false' }),
    toJson: (value) => value,
  };
}

export function integerSetting(defaultValue: number, description: string, range: { min: number; max: number }): SettingDefinition<number> {
  return {
    type: 'integer',
    defaultValue,
    description: `${description} (${range.min} to ${range.max})`,
    parse: (json) =>
      typeof json === 'number' && Number.isInteger(json) && json >= range.min && json <= range.max
        ? { value: json }
        : { problem: `must be a whole number from ${range.min} to ${range.max}` },
    toJson: (value) => value,
  };
}

export function bytesSetting(defaultValue: number, description: string, range: { min: number; max: number }): SettingDefinition<number> {
  return { ...integerSetting(defaultValue, description, range), type: 'bytes' };
}

export function durationSetting(
  defaultMs: number,
  description: string,
  range: { minMs: number; maxMs: number },
): SettingDefinition<number> {
  const bounds = `${formatDuration(range.minMs)} to ${formatDuration(range.maxMs)}`;
  return {
    type: 'duration',
    defaultValue: defaultMs,
    description: `${description} (${bounds})`,
    parse: (json) => {
      const ms = typeof json === 'string' ? parseDuration(json) : undefined;
      return ms !== undefined && ms >= range.minMs && ms <= range.maxMs
        ? { value: ms }
        : { problem: `must be a duration such as "10s" or "15m", from ${bounds}` };
    },
    toJson: (value) => formatDuration(value),
  };
}

export function stringListSetting(
  defaultValue: string[],
  description: string,
  isValidItem: (item: string) => boolean,
): SettingDefinition<string[]> {
  return {
    type: 'string_list',
    defaultValue,
    description,
    parse: (json) =>
      Array.isArray(json) && json.every((item) => typeof item === 'string' && isValidItem(item))
        ? { value: json as string[] }
        : { problem: 'must be a list of valid strings' },
    toJson: (value) => value,
  };
}
