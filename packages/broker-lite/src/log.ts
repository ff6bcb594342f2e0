/**
 * broker-lite's log: Mosquitto's `log_type` selection in front of the one line format every
 * mqtt-edge process writes (`@mqtt-edge/log`): `{"time","level","msg",...}` JSON lines, text on
 * a terminal, syslog priority prefixes where stderr or stdout is journald's stream. Levels are
 * written with the shared names: Mosquitto's `information` is `info`.
 */
import {
  createSink,
  fileDestination,
  type LogDestination,
  type LogFormat,
  levelOf,
  stdDestination,
} from '@mqtt-edge/log';
import type { LogSink } from './options.ts';

export { fileDestination, type LogDestination, type LogFormat, stdDestination };

/** Mosquitto's `log_type` values (without `none` and `all`, which are sets, not types). */
export const LOG_TYPES = [
  'error',
  'warning',
  'notice',
  'information',
  'debug',
  'subscribe',
  'unsubscribe',
  'websockets',
] as const;
export type LogType = (typeof LOG_TYPES)[number];
export type LogLevel = Parameters<LogSink['log']>[0];

/** Mosquitto logs these when no `log_type` is given. */
export const DEFAULT_LOG_TYPES: readonly LogType[] = ['error', 'warning', 'notice', 'information'];

export interface LoggerOptions {
  types: Iterable<LogType>;
  destinations: LogDestination[];
  /** `auto`: text on a terminal, JSON lines elsewhere. */
  format: LogFormat | 'auto';
  /** Mosquitto `log_timestamp`. */
  timestamp: boolean;
  /** For tests: the clock. */
  now?: () => Date;
}

export interface Logger extends LogSink {
  /** Reopens `log_dest file` destinations (SIGHUP). */
  reopen(): void;
  close(): void;
  enabled(type: LogType): boolean;
}

/**
 * A field named `logType` with one of `subscribe`, `unsubscribe`, `websockets` files an event
 * under that Mosquitto type instead of its level, so `log_type subscribe` can select it.
 */
function typeOf(level: LogLevel, fields: Record<string, unknown> | undefined): LogType {
  const t = fields?.logType;
  if (t === 'subscribe' || t === 'unsubscribe' || t === 'websockets') return t;
  return level;
}

export function createLogger(options: LoggerOptions): Logger {
  const types = new Set(options.types);
  const sink = createSink({
    destinations: options.destinations,
    format: options.format,
    timestamp: options.timestamp,
    now: options.now,
  });
  return {
    log(level, message, fields) {
      if (!types.has(typeOf(level, fields))) return;
      sink.write(levelOf(level) ?? 'info', message, fields);
    },
    enabled(type) {
      return types.has(type);
    },
    reopen: () => sink.reopen(),
    close: () => sink.close(),
  };
}

/** A sink that drops everything (library use, tests). */
export const silentLogger: Logger = {
  log() {},
  reopen() {},
  close() {},
  enabled: () => false,
};
