import { createRegistry, toJson, type JsonValue, type Message } from '@bufbuild/protobuf';
import { timestampDate, type Duration, type Timestamp } from '@bufbuild/protobuf/wkt';
import {
  file_yardmaster_v1_admin,
  file_yardmaster_v1_auth,
  file_yardmaster_v1_common,
  file_yardmaster_v1_files,
  file_yardmaster_v1_job_types,
  file_yardmaster_v1_jobs,
  file_yardmaster_v1_queue,
  file_yardmaster_v1_system,
  JobStatus,
} from '@yardmaster/client';
import pc from 'picocolors';

type Colors = ReturnType<typeof pc.createColors>;

const contract = createRegistry(
  file_yardmaster_v1_admin,
  file_yardmaster_v1_auth,
  file_yardmaster_v1_common,
  file_yardmaster_v1_files,
  file_yardmaster_v1_job_types,
  file_yardmaster_v1_jobs,
  file_yardmaster_v1_queue,
  file_yardmaster_v1_system,
);

/**
 * Where a command's results go: human text (aligned tables, colours only on a terminal
 * and without NO_COLOR) or, with --json, JSON on standard output (the protobuf JSON form
 * of the contract's messages, field names in lowerCamelCase).
 */
export class Output {
  readonly json: boolean;
  readonly colors: Colors;
  /** Whether live displays (progress bars, redrawn tables) may draw: standard error is a terminal and no --json. */
  readonly live: boolean;

  constructor(options: { json: boolean; color: boolean }) {
    this.json = options.json;
    const noColor = (process.env.NO_COLOR ?? '') !== '';
    this.colors = pc.createColors(options.color && !noColor && !options.json && process.stdout.isTTY === true);
    this.live = !options.json && process.stderr.isTTY === true;
  }

  line(text = ''): void {
    process.stdout.write(`${text}\n`);
  }

  /** A message for the person at the terminal (standard error), so that standard output stays data. */
  note(text: string): void {
    process.stderr.write(`${text}\n`);
  }

  /** One JSON document (pretty) or, with `compact`, one line (for NDJSON streams). */
  printJson(value: unknown, compact = false): void {
    process.stdout.write(`${JSON.stringify(jsonOf(value), null, compact ? undefined : 2)}\n`);
  }

  table(headers: string[], rows: string[][]): void {
    const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => visibleLength(row[column] ?? ''))));
    const render = (cells: string[]) =>
      cells
        .map((cell, column) => (column === cells.length - 1 ? cell : cell + ' '.repeat(widths[column]! - visibleLength(cell))))
        .join('  ')
        .trimEnd();
    this.line(this.colors.bold(render(headers)));
    for (const row of rows) this.line(render(row));
  }

  /** `key  value` lines, keys aligned. */
  fields(pairs: [string, string][]): void {
    const width = Math.max(...pairs.map(([key]) => key.length));
    for (const [key, value] of pairs) this.line(`${this.colors.dim(key.padEnd(width))}  ${value}`);
  }

  status(status: JobStatus): string {
    const name = enumName(JobStatus, status);
    const paint: Record<string, (text: string) => string> = {
      queued: this.colors.cyan,
      running: this.colors.yellow,
      succeeded: this.colors.green,
      failed: this.colors.red,
      cancelled: this.colors.magenta,
    };
    return (paint[name] ?? ((text: string) => text))(name);
  }
}

function visibleLength(text: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: colour escapes are what is stripped
  return text.replace(/\x1b\[[0-9;]*m/g, '').length;
}

/** Messages of the contract become their protobuf JSON; arrays and plain objects are walked. */
export function jsonOf(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(jsonOf);
  if (value && typeof value === 'object' && '$typeName' in value) {
    const message = value as Message;
    const schema = contract.getMessage(message.$typeName);
    if (schema) return toJson(schema, message) as JsonValue;
  }
  if (typeof value === 'bigint') return value.toString();
  if (value && typeof value === 'object' && value.constructor === Object) {
    return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, jsonOf(entry)]));
  }
  return value;
}

/** An enum value's name without its prefix, lower case: Role.ADMIN -> `admin` (the generated enums are plain objects, name to number). */
export function enumName(values: Record<string, number>, value: number): string {
  return (Object.entries(values).find(([, number]) => number === value)?.[0] ?? 'UNSPECIFIED').toLowerCase();
}

export function formatBytes(bytes: number | bigint): string {
  let value = Number(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Local date and time to the second, e.g. `2026-12-03 14:05:09`. */
export function formatTime(timestamp: Timestamp | undefined): string {
  if (!timestamp) return '-';
  const date = timestampDate(timestamp);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 19).replace('T', ' ');
}

export function formatDuration(duration: Duration | undefined): string {
  if (!duration) return '-';
  return formatMs(Number(duration.seconds) * 1000 + duration.nanos / 1e6);
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** A status key of a count map (`job_status_succeeded`, as the server names them) as a person reads it: `succeeded`. */
export function statusKey(key: string): string {
  return key.replace(/^job_status_/i, '').toLowerCase();
}
