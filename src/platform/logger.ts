import { pino, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type LogFormat = 'auto' | 'json' | 'pretty';

export type { Logger };

/**
 * Logs on stdout: JSON lines for log collectors, or readable lines for a person at a
 * terminal (`auto` picks by whether stdout is one). Credentials never reach a log line:
 * the paths below are removed wherever they appear in a logged object.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream, format: LogFormat = 'json'): Logger {
  const pretty = format === 'pretty' || (format === 'auto' && destination === undefined && process.stdout.isTTY);
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['password', '*.password', 'authorization', '*.authorization', 'secret', '*.secret', 'token', '*.token'],
        remove: true,
      },
    },
    // In-process and synchronous (no transport worker thread): a line is out before a
    // crash or process.exit, and start-up does not wait for a worker.
    pretty
      ? pinoPretty({
          destination: 1,
          sync: true,
          colorize: process.stdout.isTTY,
          ignore: 'pid',
          translateTime: 'SYS:HH:MM:ss.l',
          singleLine: true,
        })
      : destination,
  );
}
