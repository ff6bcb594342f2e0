/** Structured one-line logs: JSON lines when piped, `time LEVEL event k=v` on a terminal. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  log(level: Level, event: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  level?: Level;
  json?: boolean;
  /** Where lines go (default process.stderr, keeping stdout for machine-readable output). */
  write?: (line: string) => void;
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info'];
  const json = options.json ?? !process.stderr.isTTY;
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const base = options.base ?? {};
  return {
    log(level, event, fields = {}) {
      if (ORDER[level] < min) return;
      const time = new Date().toISOString();
      if (json) {
        write(JSON.stringify({ time, level, event, ...base, ...fields }));
        return;
      }
      const kv = Object.entries({ ...base, ...fields })
        .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${event}${kv ? ` ${kv}` : ''}`);
    },
  };
}

export const silentLogger: Logger = { log() {} };
