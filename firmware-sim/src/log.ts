/**
 * firmware-sim's log, in the shape every mqtt-edge process writes (`@mqtt-edge/log`): JSON
 * lines when piped (`{"time","level","msg",...}`, the event name in `msg`), text on a terminal,
 * syslog priority prefixes under systemd.
 */
import {
  createSink,
  functionDestination,
  type Level as LineLevel,
  levelOf,
  PRIORITY,
  stdDestination,
} from '@mqtt-edge/log';

/** What call sites may say (`warn` is written as `warning`). */
export type Level = 'debug' | 'info' | 'notice' | 'warn' | 'warning' | 'error';

export interface Logger {
  log(level: Level, event: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  level?: Level;
  json?: boolean;
  /** Where lines go, each without its newline (default stderr, keeping stdout for machine-readable output). */
  write?: (line: string) => void;
  base?: Record<string, unknown>;
}

const priority = (l: Level): number => PRIORITY[levelOf(l) as LineLevel];

export function createLogger(options: LoggerOptions = {}): Logger {
  const max = priority(options.level ?? 'info');
  const sink = createSink({
    destinations: [options.write ? functionDestination(options.write) : stdDestination('stderr')],
    format: options.json === undefined ? 'auto' : options.json ? 'json' : 'text',
    base: options.base,
  });
  return {
    log(level, event, fields) {
      if (priority(level) > max) return;
      sink.write(levelOf(level) as LineLevel, event, fields);
    },
  };
}

export const silentLogger: Logger = { log() {} };
