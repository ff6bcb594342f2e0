import { closeSync, openSync, writeSync } from 'node:fs';
import type { LogSink } from './options.ts';

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

export type LogFormat = 'text' | 'json';

/** Where lines go: a file descriptor we write to synchronously (a log line must survive a crash). */
export interface LogDestination {
  fd: number;
  /** Human-readable lines when the format is `auto`. */
  isTty: boolean;
  /** For `log_dest file PATH`: closed and reopened on SIGHUP like Mosquitto, so logrotate works. */
  path?: string;
}

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

// Client ids, user names and topics end up in log lines: a newline or an escape sequence in
// one of them must not forge a line or drive the terminal.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
function escapeControl(s: string): string {
  return s.replace(CONTROL, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

function textValue(v: unknown): string {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (v instanceof Error) s = v.message;
  else if (typeof v === 'bigint') s = v.toString();
  else if (typeof v === 'object' && v !== null) s = safeJson(v);
  else s = String(v);
  s = escapeControl(s);
  return s === '' || /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)) ?? 'undefined';
  } catch {
    return '[unserialisable]';
  }
}

export function formatText(
  time: Date | undefined,
  level: LogLevel,
  message: string,
  fields: Record<string, unknown> | undefined,
): string {
  let line = time ? `${time.toISOString()} ` : '';
  line += `${level.padEnd(11)} ${escapeControl(message)}`;
  if (fields) {
    for (const k of Object.keys(fields)) {
      const v = fields[k];
      if (v === undefined || k === 'logType') continue;
      line += ` ${escapeControl(k)}=${textValue(v)}`;
    }
  }
  return `${line}\n`;
}

export function formatJson(
  time: Date | undefined,
  level: LogLevel,
  message: string,
  fields: Record<string, unknown> | undefined,
): string {
  const record: Record<string, unknown> = {};
  if (time) record.time = time.toISOString();
  record.level = level;
  record.msg = message;
  if (fields) {
    for (const k of Object.keys(fields)) {
      if (k === 'time' || k === 'level' || k === 'msg') record[`field.${k}`] = fields[k];
      else record[k] = fields[k] instanceof Error ? (fields[k] as Error).message : fields[k];
    }
  }
  let text = safeJson(record);
  if (text === '[unserialisable]') {
    // Keep the event even when a field cannot be serialised (a cycle, a throwing getter).
    text = safeJson({ time: record.time, level, msg: message, fields: '[unserialisable]' });
  }
  return `${text}\n`;
}

export function createLogger(options: LoggerOptions): Logger {
  const types = new Set(options.types);
  const now = options.now ?? (() => new Date());
  const dests = options.destinations.map((d) => ({ ...d }));
  const write = (d: LogDestination, s: string): void => {
    try {
      writeSync(d.fd, s);
    } catch {
      // A full disk or a closed pipe must not take the broker down with it.
    }
  };
  return {
    log(level, message, fields) {
      if (!types.has(typeOf(level, fields))) return;
      const time = options.timestamp ? now() : undefined;
      let text: string | undefined;
      let json: string | undefined;
      for (const d of dests) {
        const useText = options.format === 'text' || (options.format === 'auto' && d.isTty);
        if (useText) write(d, (text ??= formatText(time, level, message, fields)));
        else write(d, (json ??= formatJson(time, level, message, fields)));
      }
    },
    enabled(type) {
      return types.has(type);
    },
    reopen() {
      for (const d of dests) {
        if (d.path === undefined) continue;
        try {
          const fd = openSync(d.path, 'a', 0o640);
          const old = d.fd;
          d.fd = fd;
          closeSync(old);
        } catch {
          // Keep writing to the old descriptor: losing the log is worse than a stale file.
        }
      }
    },
    close() {
      for (const d of dests) if (d.path !== undefined) closeSync(d.fd);
    },
  };
}

/** Opens `log_dest file PATH` for appending. */
export function fileDestination(path: string): LogDestination {
  return { fd: openSync(path, 'a', 0o640), isTty: false, path };
}

export function stdDestination(which: 'stdout' | 'stderr'): LogDestination {
  const stream = which === 'stdout' ? process.stdout : process.stderr;
  return { fd: which === 'stdout' ? 1 : 2, isTty: stream.isTTY === true };
}

/** A sink that drops everything (library use, tests). */
export const silentLogger: Logger = {
  log() {},
  reopen() {},
  close() {},
  enabled: () => false,
};
