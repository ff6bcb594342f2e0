/**
 * One event, two renderings: a JSON object per line (`time`, `level`, `msg`, then the fields),
 * and a text line for a terminal (`time level msg k=v ...`).
 */
import type { Level } from './levels.ts';

/** Keys of the record itself: a field of that name is written as `field.NAME`. */
const RESERVED = new Set(['time', 'level', 'msg']);

// Client ids, user names and topics end up in log lines: a newline or an escape sequence in
// one of them must not forge a line or drive the terminal.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export function escapeControl(s: string): string {
  return s.replace(CONTROL, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

function replacer(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) return v.message;
  return v;
}

function safeJson(v: unknown): string | undefined {
  try {
    return JSON.stringify(v, replacer);
  } catch {
    return undefined;
  }
}

/** A JSON line, without the newline. `time` undefined: no timestamp (Mosquitto's log_timestamp false). */
export function formatJson(
  time: Date | undefined,
  level: Level,
  msg: string,
  fields: Record<string, unknown> | undefined,
): string {
  const record: Record<string, unknown> = {};
  if (time !== undefined) record.time = time.toISOString();
  record.level = level;
  record.msg = msg;
  if (fields !== undefined) {
    for (const k of Object.keys(fields)) record[RESERVED.has(k) ? `field.${k}` : k] = fields[k];
  }
  // A field that cannot be serialised (a cycle, a throwing getter) must not cost the event.
  return (
    safeJson(record) ?? (safeJson({ time: record.time, level, msg, fields: '[unserialisable]' }) as string)
  );
}

function textValue(v: unknown): string {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (v instanceof Error) s = v.message;
  else if (typeof v === 'bigint') s = v.toString();
  else if (typeof v === 'object' && v !== null) s = safeJson(v) ?? '[unserialisable]';
  else s = String(v);
  s = escapeControl(s);
  return s === '' || /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

/** The ` k=v` tail of a text line (undefined fields left out), escaped as text lines are. */
export function formatFields(fields: Record<string, unknown> | undefined): string {
  let out = '';
  if (fields !== undefined) {
    for (const k of Object.keys(fields)) {
      const v = fields[k];
      if (v === undefined) continue;
      out += ` ${escapeControl(k)}=${textValue(v)}`;
    }
  }
  return out;
}

/**
 * A text line, without the newline: `2026-11-25T18:00:00.000Z warning msg k=v`. `timeText`
 * writes the time (default ISO 8601 in UTC).
 */
export function formatText(
  time: Date | undefined,
  level: Level,
  msg: string,
  fields: Record<string, unknown> | undefined,
  timeText?: (d: Date) => string,
): string {
  const stamp = time === undefined ? '' : `${timeText === undefined ? time.toISOString() : timeText(time)} `;
  return `${stamp}${level.padEnd(7)} ${escapeControl(msg)}${formatFields(fields)}`;
}
