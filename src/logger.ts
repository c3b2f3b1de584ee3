import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

export type { Logger };

/**
 * Structured JSON logs on stdout. Credentials never reach a log line: the paths below
 * are removed wherever they appear in a logged object.
 */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
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
    destination,
  );
}
