/**
 * The agent's log: one line per event, in the shape every mqtt-edge process writes
 * (`@mqtt-edge/log`): JSON lines when stderr is not a terminal (`{"time","level","msg",...}`,
 * the event name in `msg`), text on a terminal, and syslog priority prefixes under systemd so
 * that `journalctl -p warning` selects by level. Call sites name levels `warn` or `warning`
 * alike; lines say `warning`.
 */
import {
  createSink,
  functionDestination,
  type Level,
  levelOf,
  PRIORITY,
  stdDestination,
} from '@mqtt-edge/log';

/** What call sites and `agent.log.level` may say (`warn` is `warning`). */
export type LogLevel = 'debug' | 'info' | 'notice' | 'warn' | 'warning' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'notice', 'warn', 'warning', 'error'];

export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
  /** True when `level` lines are written (to skip building fields for nothing). */
  enabled(level: LogLevel): boolean;
  /** Changes the threshold (a reload); loggers that cannot leave it out. */
  setLevel?(level: LogLevel): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** 'auto' (default): JSON unless stderr is a TTY. */
  format?: 'auto' | 'json' | 'text';
  /** Where lines go (each without its newline); default stderr. */
  write?: (line: string) => void;
  base?: Record<string, unknown>;
}

const priority = (l: LogLevel): number => PRIORITY[levelOf(l) as Level];

export function createLogger(options: LoggerOptions = {}): Logger {
  let max = priority(options.level ?? 'info');
  const sink = createSink({
    destinations: [options.write ? functionDestination(options.write) : stdDestination('stderr')],
    format: options.format ?? 'auto',
    base: options.base,
  });
  return {
    enabled: (level) => priority(level) <= max,
    setLevel(level) {
      max = priority(level);
    },
    log(level, event, fields) {
      if (priority(level) > max) return;
      sink.write(levelOf(level) as Level, event, fields);
    },
  };
}

export const silentLogger: Logger = { log() {}, enabled: () => false };
