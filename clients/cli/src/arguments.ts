import { durationFromMs, timestampFromDate, type Duration, type Timestamp } from '@bufbuild/protobuf/wkt';
import { InvalidArgumentError, type Command } from 'commander';

/** Option values as commander hands them to its parsers: these turn them into what the requests need. */

export function repeatable(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').filter((part) => part !== '')];
}

/** `key=value`, repeatable, into an object; the value read as JSON when it parses (5, true, [1]), else as text. */
export function keyValueJson(value: string, previous: Record<string, unknown> = {}): Record<string, unknown> {
  const [key, text] = splitPair(value);
  return { ...previous, [key]: parseJsonOrText(text) };
}

/** `key=value`, repeatable, into a map of strings (labels). */
export function keyValueText(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const [key, text] = splitPair(value);
  return { ...previous, [key]: text };
}

function splitPair(value: string): [string, string] {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`expected key=value, got "${value}"`);
  return [value.slice(0, at), value.slice(at + 1)];
}

export function parseJsonOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function integer(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  return Number(value);
}

const unitsMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** `90s`, `15m`, `2h`, `1d` (or a number of seconds) into milliseconds. */
export function milliseconds(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|min|h|d)?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected a duration such as 90s, 15m, 2h or 1d, got "${value}"`);
  return Number(match[1]) * unitsMs[match[2] ?? 's']!;
}

export function duration(value: string): Duration {
  return durationFromMs(milliseconds(value));
}

/** An ISO date/time, or a duration meaning that long ago (`1h`: an hour ago). */
export function pointInTime(value: string): Timestamp {
  if (/^\d+(\.\d+)?(ms|s|m|min|h|d)$/.test(value)) return timestampFromDate(new Date(Date.now() - milliseconds(value)));
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError(`expected an ISO date/time or a duration ago (e.g. 2h), got "${value}"`);
  return timestampFromDate(date);
}

/** Adds an "Examples:" block to a command's --help. */
export function examples(command: Command, lines: string[]): Command {
  return command.addHelpText('after', `\nExamples:\n${lines.map((line) => `  $ ${line}`).join('\n')}\n`);
}
