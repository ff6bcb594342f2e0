/**
 * Structured logs: one line per event, levelled. JSON lines when stderr is not a terminal (what
 * journald and log shippers want), `HH:MM:SS.mmm LEVEL event k=v` on a terminal.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

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
  write?: (line: string) => void;
  base?: Record<string, unknown>;
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v instanceof Error) return JSON.stringify(v.message);
  return JSON.stringify(v) ?? String(v);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  let min = ORDER[options.level ?? 'info'];
  const format = options.format ?? 'auto';
  const json = format === 'json' || (format === 'auto' && !process.stderr.isTTY);
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const base = options.base ?? {};
  return {
    enabled: (level) => ORDER[level] >= min,
    setLevel(level) {
      min = ORDER[level];
    },
    log(level, event, fields = {}) {
      if (ORDER[level] < min) return;
      const time = new Date().toISOString();
      try {
        if (json) {
          write(
            JSON.stringify({ time, level, event, ...base, ...fields }, (_k, v) =>
              v instanceof Error ? v.message : typeof v === 'bigint' ? String(v) : v,
            ),
          );
          return;
        }
        const kv = Object.entries({ ...base, ...fields })
          .filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${fmt(v)}`)
          .join(' ');
        write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${event}${kv ? ` ${kv}` : ''}`);
      } catch {
        // A log line must never take the agent down (EPIPE on a closed stderr, a cyclic field).
      }
    },
  };
}

export const silentLogger: Logger = { log() {}, enabled: () => false };
