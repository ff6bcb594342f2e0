/**
 * broker-lite's log: Mosquitto's `log_type` selection in front of the one line format every
 * mqtt-edge process writes (`@mqtt-edge/log`): `{"time","level","msg",...}` JSON lines, text on
 * a terminal, syslog priority prefixes where stderr or stdout is journald's stream. Levels are
 * written with the shared names: Mosquitto's `information` is `info`.
 *
 * `log_dest syslog` and `log_dest topic` get Mosquitto's line instead: `TIMESTAMP: text` (the
 * timestamp Unix seconds, or `log_timestamp_format`; none with `log_timestamp false`), the
 * level in the syslog priority or the topic. The same `log_type` selection applies to all.
 */
import {
  createSink,
  escapeControl,
  fileDestination,
  formatFields,
  type LogDestination,
  type LogFormat,
  levelOf,
  stdDestination,
} from '@mqtt-edge/log';
import { type SyslogOptions, SyslogWriter } from './log-syslog.ts';
import { type LogPublisher, LogTopic, type LogTopicStats } from './log-topic.ts';
import type { LogSink } from './options.ts';
import { compileStrftime } from './strftime.ts';

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
  /** Mosquitto `log_timestamp_format` (strftime, local time): text lines, syslog and topic lines. */
  timestampFormat?: string;
  /** `log_dest syslog`. */
  syslog?: SyslogOptions;
  /** `log_dest topic`: lines on `$SYS/broker/log/...` once a broker is attached. */
  topic?: boolean;
  /** For tests: the clock. */
  now?: () => Date;
}

export interface Logger extends LogSink {
  /** Reopens `log_dest file` destinations (SIGHUP). */
  reopen(): void;
  close(): void;
  enabled(type: LogType): boolean;
  /** `log_dest topic`: the broker to publish lines into (null: none, while closing). */
  attachBroker(broker: LogPublisher | null): void;
  /** `log_dest topic`: lines published, dropped over the rate, suppressed (no loops). */
  topicStats(): LogTopicStats;
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

/**
 * Mosquitto's line: `TIMESTAMP: text`, the timestamp Unix seconds or `timeText`'s, none
 * without `timestamp`. Control characters are escaped, so a client id cannot forge a line.
 */
export function mosquittoLine(
  time: Date | undefined,
  message: string,
  fields: Record<string, unknown> | undefined,
  timeText?: (d: Date) => string,
): string {
  // The log_type is the topic or the priority here, not a field.
  let rest = fields;
  if (fields?.logType !== undefined) {
    const { logType: _t, ...others } = fields;
    rest = others;
  }
  const text = `${escapeControl(message)}${formatFields(rest)}`;
  if (time === undefined) return text;
  return `${timeText === undefined ? Math.floor(time.getTime() / 1000) : timeText(time)}: ${text}`;
}

export function createLogger(options: LoggerOptions): Logger {
  const types = new Set(options.types);
  const now = options.now ?? (() => new Date());
  const timeText =
    options.timestampFormat === undefined ? undefined : compileStrftime(options.timestampFormat);
  const stamp = options.timestamp;
  const sink = createSink({
    destinations: options.destinations,
    format: options.format,
    timestamp: stamp,
    now,
    timeText,
  });
  const line = (message: string, fields?: Record<string, unknown>): string =>
    mosquittoLine(stamp ? now() : undefined, message, fields, timeText);
  const topic = options.topic === true ? new LogTopic((m) => line(m)) : null;
  const syslog = options.syslog === undefined ? null : new SyslogWriter(options.syslog);
  return {
    log(level, message, fields) {
      const type = typeOf(level, fields);
      if (!types.has(type)) return;
      sink.write(levelOf(level) ?? 'info', message, fields);
      if (syslog === null && topic === null) return;
      const l = line(message, fields);
      syslog?.write(type, l);
      topic?.write(type, l);
    },
    enabled(type) {
      return types.has(type);
    },
    attachBroker(broker) {
      topic?.attach(broker);
    },
    topicStats() {
      return topic === null ? { published: 0, dropped: 0, suppressed: 0 } : { ...topic.stats };
    },
    reopen: () => sink.reopen(),
    close: () => {
      topic?.attach(null);
      syslog?.close();
      sink.close();
    },
  };
}

/** A sink that drops everything (library use, tests). */
export const silentLogger: Logger = {
  log() {},
  reopen() {},
  close() {},
  enabled: () => false,
  attachBroker() {},
  topicStats: () => ({ published: 0, dropped: 0, suppressed: 0 }),
};
