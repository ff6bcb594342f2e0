/**
 * Field rules shared by the native bodies and the text modes. Names end up as MQTT topic levels,
 * so they exclude `/`, `+`, `#`, NUL and anything a shell or a log line would trip on.
 */
import type { Value } from './frames.ts';

export const MAX_NAME_LENGTH = 64;
export const MAX_TEXT_LENGTH = 256;
export const MAX_VALUE_DEPTH = 8;
export const MAX_SENSORS = 64;
/** Command descriptors in a HELLO, and options of a select. */
export const MAX_COMMANDS = 32;
export const MAX_OPTIONS = 16;

const NAME_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/**
 * Device ids and sensor names: 1..64 of `A-Z a-z 0-9 _ . : -`, and not `__proto__` (consumers
 * use names as object keys).
 */
export function isName(x: unknown): x is string {
  return typeof x === 'string' && NAME_RE.test(x) && x !== '__proto__';
}

/** Free text (firmware version, unit, error message): no control characters, bounded. */
export function isText(x: unknown, max = MAX_TEXT_LENGTH): x is string {
  return typeof x === 'string' && x.length <= max && !CONTROL_RE.test(x);
}

export function isUint(x: unknown, max: number): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= max;
}

export function isFiniteNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Plain data only: a CBOR tag (Date, shared reference, record...) decodes to something else. */
export function isValue(x: unknown, depth = 0): x is Value {
  if (x === null || typeof x === 'boolean' || typeof x === 'string') return true;
  if (typeof x === 'number') return !Number.isNaN(x);
  if (x instanceof Uint8Array) return true;
  if (depth >= MAX_VALUE_DEPTH) return false;
  if (Array.isArray(x)) return x.every((v) => isValue(v, depth + 1));
  if (isPlainObject(x)) return Object.values(x).every((v) => isValue(v, depth + 1));
  return false;
}
