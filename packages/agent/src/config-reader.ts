/**
 * The config reader's toolkit: a `Reader` that collects every problem with its key path while
 * reading a raw document (unknown keys with a "did you mean", typed values, durations, sizes,
 * paths), and the parsers and formatters of durations and sizes. `config.ts` reads the agent's
 * document with it, `modbus-config.ts` a Modbus port's devices and registers.
 */
import path from 'node:path';
import { nearest } from '@mqtt-edge/log';

export interface ConfigProblem {
  /** Key path: `mqtt.url`, `serial[0].baud`; '' for the document itself. */
  path: string;
  message: string;
  /** 1-based line in the file, when known. */
  line?: number;
}

export type Obj = Record<string, unknown>;

/** Collects problems while reading the raw document. */
export class Reader {
  readonly problems: ConfigProblem[] = [];
  constructor(readonly baseDir: string) {}

  problem(p: string, message: string): undefined {
    this.problems.push({ path: p, message });
    return undefined;
  }

  /** The object at `p`, with unknown keys reported. */
  object(p: string, v: unknown, keys: readonly string[], optional = true): Obj | undefined {
    if (v === undefined || v === null) {
      if (!optional) this.problem(p, 'missing (a mapping is required)');
      return v === null && !optional ? undefined : {};
    }
    if (typeof v !== 'object' || Array.isArray(v))
      return this.problem(p, `must be a mapping, got ${kind(v)}`);
    for (const k of Object.keys(v)) {
      if (!keys.includes(k)) {
        const near = closest(k, keys);
        this.problem(join(p, k), `unknown key${near ? `; did you mean ${near}?` : ''}`);
      }
    }
    return v as Obj;
  }

  string(
    p: string,
    v: unknown,
    options: { required?: boolean; nonEmpty?: boolean } = {},
  ): string | undefined {
    if (v === undefined || v === null) {
      if (options.required) this.problem(p, 'missing');
      return undefined;
    }
    if (typeof v !== 'string') return this.problem(p, `must be a string, got ${kind(v)}`);
    if (options.nonEmpty !== false && v === '') return this.problem(p, 'must not be empty');
    return v;
  }

  oneOf<T extends string>(p: string, v: unknown, allowed: readonly T[], dflt: T): T {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.problem(p, `must be one of ${allowed.join(', ')}; got ${show(v)}`);
      return dflt;
    }
    return v as T;
  }

  int(p: string, v: unknown, min: number, max: number, dflt: number): number;
  int(p: string, v: unknown, min: number, max: number, dflt?: number): number | undefined;
  int(p: string, v: unknown, min: number, max: number, dflt?: number): number | undefined {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.problem(p, `must be an integer in ${min}..${max}; got ${show(v)}`);
      return dflt;
    }
    return v;
  }

  bool(p: string, v: unknown, dflt: boolean): boolean {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') {
      this.problem(p, `must be true or false; got ${show(v)}`);
      return dflt;
    }
    return v;
  }

  /** `500ms`, `5s`, `2m`, `1h`, `7d`, or a number of seconds. Milliseconds out. */
  duration(p: string, v: unknown, min: number, max: number, dflt: number): number;
  duration(p: string, v: unknown, min: number, max: number, dflt?: number): number | undefined;
  duration(p: string, v: unknown, min: number, max: number, dflt?: number): number | undefined {
    if (v === undefined || v === null) return dflt;
    const ms = parseDuration(v);
    if (ms === undefined) {
      this.problem(
        p,
        `must be a duration such as 500ms, 5s, 2m, 1h, 7d (a bare number is seconds); got ${show(v)}`,
      );
      return dflt;
    }
    if (ms < min || ms > max) {
      this.problem(p, `must be between ${fmtMs(min)} and ${fmtMs(max)}; got ${show(v)}`);
      return dflt;
    }
    return ms;
  }

  /** A device's reporting interval: 0 (off), or 100ms..1d. */
  interval(p: string, v: unknown): number | undefined {
    const ms = this.duration(p, v, 0, 86_400_000);
    if (ms !== undefined && ms > 0 && ms < 100) {
      this.problem(p, `must be 0 (off) or at least 100ms; got ${show(v)}`);
      return undefined;
    }
    return ms;
  }

  /** `64MiB`, `1GB`, `512KiB`, or a number of bytes. */
  size(p: string, v: unknown, min: number, max: number): number | undefined {
    if (v === undefined || v === null) return undefined;
    const n = parseSize(v);
    if (n === undefined)
      return this.problem(p, `must be a size such as 64MiB, 1GB or a number of bytes; got ${show(v)}`);
    if (n < min || n > max) return this.problem(p, `must be between ${min} and ${max} bytes; got ${show(v)}`);
    return n;
  }

  /** A path, resolved against the config file's directory. */
  filePath(p: string, v: unknown): string | undefined {
    const s = this.string(p, v);
    if (s === undefined) return undefined;
    if (s.includes('\0')) return this.problem(p, 'must not contain NUL');
    return path.resolve(this.baseDir, s);
  }
}

export function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${show(v)}`;
}

export function show(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v));
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function join(p: string, k: string | number): string {
  if (typeof k === 'number') return `${p}[${k}]`;
  return p === '' ? k : `${p}.${k}`;
}

export function fmtMs(ms: number): string {
  if (ms === 0) return '0';
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** `64MiB` for whole binary units, else the number of bytes: what `parseSize` reads back. */
export function fmtSize(n: number): string | number {
  for (const [unit, size] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 1024],
  ] as const)
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  return n;
}

/** A key within two edits (or a prefix either way), for "did you mean". */
export function closest(word: string, options: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  // `baudrate` for `baud`, `dir` for `directory`: a prefix either way is the likeliest mistake.
  const prefix = options.find(
    (o) => o.length >= 3 && (w.startsWith(o.toLowerCase()) || o.toLowerCase().startsWith(w)),
  );
  if (prefix !== undefined && w.length >= 3) return prefix;
  return nearest(word, options, (s) => s.toLowerCase());
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(v);
  if (m === null) return undefined;
  const n = Number(m[1]) * DURATION_UNITS[m[2] ?? 's'];
  return Number.isFinite(n) ? Math.round(n) : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
};

export function parseSize(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (m === null) return undefined;
  const unit = SIZE_UNITS[m[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}
