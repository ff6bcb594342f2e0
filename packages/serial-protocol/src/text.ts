/**
 * Text modes for off-the-shelf boards that print lines instead of speaking native frames:
 *   json-lines: {"sensor":"temp","value":21.5,"unit":"Cel"}  or  {"temp":21.5,"hum":40}
 *   key-value:  temp=21.5 hum=40   (separators: spaces, tabs, commas, semicolons)
 * Lines end with LF (a CR before it is dropped). Empty lines and lines starting with `#` are
 * skipped (boards print banners and debug text). No sequence numbers, no acknowledgement.
 */
import { type FrameErrorKind, SerialFrameError } from './errors.ts';
import type { Reading } from './frames.ts';
import { isFiniteNumber, isName, isPlainObject, isText, isUint, MAX_NAME_LENGTH } from './validate.ts';

export type TextMode = 'json-lines' | 'key-value';

export const DEFAULT_MAX_LINE = 512;
const MAX_READINGS_PER_LINE = 64;

export type LineResult =
  | { ok: true; readings: Reading[] }
  | { ok: false; kind: FrameErrorKind; error: string };

function bad(kind: FrameErrorKind, error: string): LineResult {
  return { ok: false, kind, error };
}

/** Parses one JSON line (without its newline). */
export function parseJsonLine(line: string): LineResult {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return bad('line-syntax', 'not JSON');
  }
  if (!isPlainObject(raw)) return bad('line-syntax', 'not a JSON object');
  if ('sensor' in raw) {
    if (!isName(raw.sensor)) return bad('line-value', 'sensor is not a name');
    if (!isFiniteNumber(raw.value)) return bad('line-value', `value of ${raw.sensor} is not a finite number`);
    const r: Reading = { sensor: raw.sensor, value: raw.value };
    if (raw.unit !== undefined) {
      if (!isText(raw.unit, MAX_NAME_LENGTH)) return bad('line-value', 'unit is not text');
      r.unit = raw.unit;
    }
    if (raw.ts !== undefined) {
      if (!isUint(raw.ts, Number.MAX_SAFE_INTEGER))
        return bad('line-value', 'ts is not a non-negative integer');
      r.ts = raw.ts;
    }
    return { ok: true, readings: [r] };
  }
  const readings: Reading[] = [];
  for (const [k, v] of Object.entries(raw)) {
    if (!isName(k as unknown))
      return bad('line-value', `key ${JSON.stringify(k.slice(0, 70))} is not a sensor name`);
    if (!isFiniteNumber(v)) return bad('line-value', `value of ${k} is not a finite number`);
    readings.push({ sensor: k, value: v });
  }
  if (readings.length === 0) return bad('line-value', 'no readings');
  if (readings.length > MAX_READINGS_PER_LINE) return bad('line-value', 'too many readings');
  return { ok: true, readings };
}

const NUMBER_RE = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;
const SEPARATOR_RE = /[\s,;]+/;

/** Parses one `key=value` line (without its newline). */
export function parseKeyValueLine(line: string): LineResult {
  const readings: Reading[] = [];
  for (const tok of line.split(SEPARATOR_RE)) {
    if (tok === '') continue;
    const eq = tok.indexOf('=');
    if (eq <= 0) return bad('line-syntax', `token ${JSON.stringify(tok.slice(0, 70))} is not key=value`);
    const k = tok.slice(0, eq);
    const v = tok.slice(eq + 1);
    if (!isName(k as unknown))
      return bad('line-value', `key ${JSON.stringify(k.slice(0, 70))} is not a sensor name`);
    if (!NUMBER_RE.test(v)) return bad('line-value', `value of ${k} is not a number`);
    const n = Number(v);
    if (!Number.isFinite(n)) return bad('line-value', `value of ${k} is not finite`);
    readings.push({ sensor: k, value: n });
    if (readings.length > MAX_READINGS_PER_LINE) return bad('line-value', 'too many readings');
  }
  if (readings.length === 0) return bad('line-syntax', 'no key=value pairs');
  return { ok: true, readings };
}

export interface TextLineDecoderStats {
  bytes: number;
  lines: number;
  readings: number;
  tooLong: number;
  syntaxErrors: number;
  valueErrors: number;
  /** Lines skipped as blank or `#` comments. */
  skipped: number;
}

export interface TextLineDecoderOptions {
  mode: TextMode;
  /** Longest line accepted in bytes, without the newline. Default 512. */
  maxLine?: number;
  onError?: (error: SerialFrameError) => void;
}

export interface TextRecord {
  readings: Reading[];
  /** Stream byte offset of the line's first byte. */
  offset: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Streaming line splitter + parser with the same never-throw, bounded-memory contract as FrameDecoder. */
export class TextLineDecoder {
  readonly stats: TextLineDecoderStats = {
    bytes: 0,
    lines: 0,
    readings: 0,
    tooLong: 0,
    syntaxErrors: 0,
    valueErrors: 0,
    skipped: 0,
  };
  private readonly buf: Uint8Array;
  private readonly parse: (line: string) => LineResult;
  private readonly onError: ((error: SerialFrameError) => void) | undefined;
  private len = 0;
  private skipping = false;
  private lineStart = 0;

  constructor(options: TextLineDecoderOptions) {
    const max = options.maxLine ?? DEFAULT_MAX_LINE;
    if (!Number.isInteger(max) || max < 1 || max > 65536) throw new RangeError('maxLine must be in 1..65536');
    this.buf = new Uint8Array(max + 1); // +1 for a CR that may precede the LF
    this.parse = options.mode === 'json-lines' ? parseJsonLine : parseKeyValueLine;
    this.onError = options.onError;
  }

  push(chunk: Uint8Array): TextRecord[] {
    const out: TextRecord[] = [];
    const base = this.stats.bytes;
    this.stats.bytes += chunk.length;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0a) {
        const r = this.endLine();
        if (r !== undefined) out.push(r);
        this.lineStart = base + i + 1;
        continue;
      }
      if (this.skipping) continue;
      if (this.len === this.buf.length) {
        this.skipping = true;
        this.stats.tooLong++;
        this.report('line-too-long', `line longer than ${this.buf.length - 1} bytes`);
        continue;
      }
      this.buf[this.len++] = b;
    }
    return out;
  }

  private endLine(): TextRecord | undefined {
    const len = this.buf[this.len - 1] === 0x0d ? this.len - 1 : this.len;
    const wasSkipping = this.skipping;
    this.len = 0;
    this.skipping = false;
    if (wasSkipping) return undefined;
    if (len === this.buf.length) {
      // Exactly one byte over the limit and no CR: still too long.
      this.stats.tooLong++;
      this.report('line-too-long', `line longer than ${this.buf.length - 1} bytes`);
      return undefined;
    }
    let line: string;
    try {
      line = utf8.decode(this.buf.subarray(0, len)).trim();
    } catch {
      this.stats.syntaxErrors++;
      this.report('line-syntax', 'not UTF-8');
      return undefined;
    }
    if (line === '' || line.startsWith('#')) {
      this.stats.skipped++;
      return undefined;
    }
    const r = this.parse(line);
    if (!r.ok) {
      if (r.kind === 'line-syntax') this.stats.syntaxErrors++;
      else this.stats.valueErrors++;
      this.report(r.kind, r.error);
      return undefined;
    }
    this.stats.lines++;
    this.stats.readings += r.readings.length;
    return { readings: r.readings, offset: this.lineStart };
  }

  private report(kind: FrameErrorKind, message: string): void {
    if (this.onError === undefined) return;
    try {
      this.onError(new SerialFrameError(kind, message, this.lineStart));
    } catch {
      // A throwing logger must not take the reader down with it.
    }
  }
}

/** Formats readings as one line of the given text mode (what a simple board would print), with LF. */
export function formatTextLine(mode: TextMode, readings: readonly Reading[]): string {
  if (mode === 'json-lines') {
    if (readings.length === 1) {
      const r = readings[0];
      const o: Record<string, unknown> = { sensor: r.sensor, value: r.value };
      if (r.unit !== undefined) o.unit = r.unit;
      if (r.ts !== undefined) o.ts = r.ts;
      return `${JSON.stringify(o)}\n`;
    }
    const o: Record<string, number> = {};
    for (const r of readings) o[r.sensor] = r.value;
    return `${JSON.stringify(o)}\n`;
  }
  return `${readings.map((r) => `${r.sensor}=${r.value}`).join(' ')}\n`;
}
