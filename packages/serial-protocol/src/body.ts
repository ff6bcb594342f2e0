/**
 * CBOR bodies: one CBOR map per frame with short text keys (the table is in
 * docs/serial-protocol.md). Decoding is strict about types and bounds and lenient about
 * unknown keys, so newer firmware can add fields without breaking older agents.
 */
import { Decoder, Encoder } from 'cbor-x';
import {
  type CommandInfo,
  type Frame,
  type FrameKind,
  type HelloFrame,
  MAX_HOLD_MS,
  MAX_RING_SIZE,
  type Reading,
  type SensorInfo,
} from './frames.ts';
import {
  isFiniteNumber,
  isName,
  isPlainObject,
  isText,
  isUint,
  isValue,
  MAX_COMMANDS,
  MAX_NAME_LENGTH,
  MAX_OPTIONS,
  MAX_SENSORS,
} from './validate.ts';

const UINT32 = 0xffff_ffff;

// Plain maps with text keys, minimal map headers, no cbor-x record/structure extensions: the
// bytes are what a C CBOR library (tinycbor, QCBOR, nanocbor) writes.
const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  tagUint8Array: false,
  pack: false,
});
// copyBuffers: byte strings must not alias the decoder's reused frame buffer.
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, copyBuffers: true });

/** CBOR-encodes a body object made by `bodyObject`. */
export function encodeBodyObject(body: Record<string, unknown>): Uint8Array {
  return encoder.encode(body);
}

/** The body map of `frame` (everything but `type` and `seq`), with its wire keys. */
export function bodyObject(f: Frame): Record<string, unknown> {
  switch (f.type) {
    case 'hello': {
      const o: Record<string, unknown> = {
        d: f.deviceId,
        f: f.firmware,
        b: f.bootId,
        s: f.sensors.map((s) => (s.unit === undefined ? { s: s.name } : { s: s.name, u: s.unit })),
      };
      if (f.model !== undefined) o.m = f.model;
      if (f.commands !== undefined) o.c = f.commands.map(commandObject);
      if (f.intervalMs !== undefined) o.p = f.intervalMs;
      if (f.ringSize !== undefined) o.h = f.ringSize;
      return o;
    }
    case 'data':
      return { b: f.bootId, r: f.readings.map(readingObject) };
    case 'ack':
      return { b: f.bootId };
    case 'held':
      return { b: f.bootId, t: f.holdMs };
    case 'cmd':
      return f.args === undefined ? { i: f.id, c: f.name } : { i: f.id, c: f.name, a: f.args };
    case 'result': {
      const o: Record<string, unknown> = { i: f.id, ok: f.ok };
      if (f.value !== undefined) o.v = f.value;
      if (f.error !== undefined) o.e = f.error;
      return o;
    }
  }
}

function commandObject(c: CommandInfo): Record<string, unknown> {
  const o: Record<string, unknown> = { c: c.name, k: c.kind };
  if (c.kind === 'button') return o;
  if (c.arg !== undefined) o.a = c.arg;
  if (c.kind === 'number') {
    o.lo = c.min;
    o.hi = c.max;
    if (c.step !== undefined) o.st = c.step;
    if (c.unit !== undefined) o.u = c.unit;
  } else if (c.kind === 'select') o.o = c.options;
  return o;
}

/**
 * HELLO `c`: the command descriptors. A descriptor of an unknown kind is skipped (newer firmware,
 * older agent); one of a known kind must be whole. Returns the error text, or the list.
 */
function validateCommands(raw: unknown): CommandInfo[] | string {
  if (!Array.isArray(raw) || raw.length > MAX_COMMANDS)
    return `hello.c (commands) not an array of at most ${MAX_COMMANDS}`;
  const out: CommandInfo[] = [];
  const names = new Set<string>();
  for (const d of raw as unknown[]) {
    if (!isPlainObject(d)) return 'hello.c[] not a map';
    if (!isName(d.c)) return 'hello.c[].c (command name) not a name';
    if (typeof d.k !== 'string' || !isText(d.k, MAX_NAME_LENGTH))
      return `hello.c[].k (kind) of ${d.c} not text`;
    if (names.has(d.c)) return `hello.c[] describes ${d.c} twice`;
    names.add(d.c);
    if (d.a !== undefined && !isName(d.a)) return `hello.c[].a (argument key) of ${d.c} not a name`;
    const arg = d.a === undefined ? {} : { arg: d.a as string };
    switch (d.k) {
      case 'button':
        out.push({ name: d.c, kind: 'button' });
        break;
      case 'switch':
        out.push({ name: d.c, kind: 'switch', ...arg });
        break;
      case 'number': {
        if (!isFiniteNumber(d.lo) || !isFiniteNumber(d.hi) || d.lo >= d.hi)
          return `hello.c[].lo/hi of ${d.c} not finite numbers with lo < hi`;
        const n: CommandInfo = { name: d.c, kind: 'number', ...arg, min: d.lo, max: d.hi };
        if (d.st !== undefined) {
          if (!isFiniteNumber(d.st) || d.st <= 0)
            return `hello.c[].st (step) of ${d.c} not a positive number`;
          n.step = d.st;
        }
        if (d.u !== undefined) {
          if (!isText(d.u, MAX_NAME_LENGTH)) return `hello.c[].u (unit) of ${d.c} not text`;
          n.unit = d.u;
        }
        out.push(n);
        break;
      }
      case 'select': {
        const o = d.o;
        if (!Array.isArray(o) || o.length === 0 || o.length > MAX_OPTIONS || !o.every(isName))
          return `hello.c[].o (options) of ${d.c} not 1..${MAX_OPTIONS} names`;
        if (new Set(o).size !== o.length) return `hello.c[].o (options) of ${d.c} repeats an option`;
        out.push({ name: d.c, kind: 'select', ...arg, options: [...(o as string[])] });
        break;
      }
      default:
      // A kind this receiver does not know: skipped, so firmware may describe kinds a later agent learns.
    }
  }
  return out;
}

function readingObject(r: Reading): Record<string, unknown> {
  const o: Record<string, unknown> = { s: r.sensor, v: r.value };
  if (r.unit !== undefined) o.u = r.unit;
  if (r.ts !== undefined) o.t = r.ts;
  return o;
}

/** A body that is not the schema of its type: the message says which field and why. */
export type BodyResult = { ok: true; frame: Frame } | { ok: false; error: string; bootId?: number };

function fail(error: string): BodyResult {
  return { ok: false, error };
}

/** Decodes and validates a body. Never throws. */
export function decodeBody(kind: FrameKind, seq: number, bytes: Uint8Array): BodyResult {
  let raw: unknown;
  try {
    raw = decoder.decode(bytes);
  } catch (e) {
    return fail(`CBOR: ${(e as Error).message}`);
  }
  const r = validateBody(kind, seq, raw);
  if (!r.ok && isPlainObject(raw) && isUint(raw.b, UINT32)) r.bootId = raw.b;
  return r;
}

/** Validates an already-decoded body object (also used on frames built in code before encoding). */
export function validateBody(kind: FrameKind, seq: number, raw: unknown): BodyResult {
  if (!isPlainObject(raw)) return fail('body is not a CBOR map');
  switch (kind) {
    case 'hello': {
      if (!isName(raw.d)) return fail('hello.d (device id) missing or not a name');
      if (!isText(raw.f, MAX_NAME_LENGTH)) return fail('hello.f (firmware) missing or not text');
      if (!isUint(raw.b, UINT32)) return fail('hello.b (boot id) missing or not uint32');
      if (!Array.isArray(raw.s) || raw.s.length > MAX_SENSORS) return fail('hello.s (sensors) not an array');
      const sensors: SensorInfo[] = [];
      for (const s of raw.s as unknown[]) {
        if (!isPlainObject(s) || !isName(s.s)) return fail('hello.s[].s (sensor name) not a name');
        if (s.u !== undefined && !isText(s.u, MAX_NAME_LENGTH)) return fail('hello.s[].u (unit) not text');
        sensors.push(s.u === undefined ? { name: s.s } : { name: s.s, unit: s.u as string });
      }
      const frame: HelloFrame = {
        type: 'hello',
        seq,
        deviceId: raw.d,
        firmware: raw.f,
        bootId: raw.b,
        sensors,
      };
      if (raw.m !== undefined) {
        if (!isText(raw.m, MAX_NAME_LENGTH)) return fail('hello.m (model) not text');
        frame.model = raw.m;
      }
      if (raw.c !== undefined) {
        const commands = validateCommands(raw.c);
        if (typeof commands === 'string') return fail(commands);
        frame.commands = commands;
      }
      if (raw.p !== undefined) {
        if (!isUint(raw.p, UINT32) || raw.p === 0)
          return fail('hello.p (interval, ms) not a uint32 of at least 1');
        frame.intervalMs = raw.p;
      }
      if (raw.h !== undefined) {
        if (!isUint(raw.h, MAX_RING_SIZE) || raw.h === 0)
          return fail(`hello.h (ring entries, HELD understood) not an integer 1..${MAX_RING_SIZE}`);
        frame.ringSize = raw.h;
      }
      return { ok: true, frame };
    }
    case 'data': {
      if (!isUint(raw.b, UINT32)) return fail('data.b (boot id) missing or not uint32');
      if (!Array.isArray(raw.r) || raw.r.length === 0) return fail('data.r (readings) missing or empty');
      const readings: Reading[] = [];
      for (const r of raw.r as unknown[]) {
        if (!isPlainObject(r)) return fail('data.r[] not a map');
        if (!isName(r.s)) return fail('data.r[].s (sensor) missing or not a name');
        if (!isFiniteNumber(r.v)) return fail(`data.r[].v (value) of ${r.s} not a finite number`);
        const reading: Reading = { sensor: r.s, value: r.v };
        if (r.u !== undefined) {
          if (!isText(r.u, MAX_NAME_LENGTH)) return fail('data.r[].u (unit) not text');
          reading.unit = r.u;
        }
        if (r.t !== undefined) {
          if (!isUint(r.t, Number.MAX_SAFE_INTEGER))
            return fail('data.r[].t (ts) not a non-negative integer');
          reading.ts = r.t;
        }
        readings.push(reading);
      }
      return { ok: true, frame: { type: 'data', seq, bootId: raw.b, readings } };
    }
    case 'ack':
      if (!isUint(raw.b, UINT32)) return fail('ack.b (boot id) missing or not uint32');
      return { ok: true, frame: { type: 'ack', seq, bootId: raw.b } };
    case 'held':
      if (!isUint(raw.b, UINT32)) return fail('held.b (boot id) missing or not uint32');
      if (!isUint(raw.t, MAX_HOLD_MS) || raw.t === 0)
        return fail(`held.t (hold, ms) missing or not an integer 1..${MAX_HOLD_MS}`);
      return { ok: true, frame: { type: 'held', seq, bootId: raw.b, holdMs: raw.t } };
    case 'cmd': {
      if (!isUint(raw.i, UINT32)) return fail('cmd.i (command id) missing or not uint32');
      if (!isName(raw.c)) return fail('cmd.c (command name) missing or not a name');
      if (raw.a !== undefined && !isValue(raw.a)) return fail('cmd.a (args) not plain data');
      const frame: Frame = { type: 'cmd', seq, id: raw.i, name: raw.c };
      if (raw.a !== undefined) frame.args = raw.a;
      return { ok: true, frame };
    }
    case 'result': {
      if (!isUint(raw.i, UINT32)) return fail('result.i (command id) missing or not uint32');
      if (typeof raw.ok !== 'boolean') return fail('result.ok missing or not a boolean');
      if (raw.v !== undefined && !isValue(raw.v)) return fail('result.v (value) not plain data');
      if (raw.e !== undefined && !isText(raw.e)) return fail('result.e (error) not text');
      const frame: Frame = { type: 'result', seq, id: raw.i, ok: raw.ok };
      if (raw.v !== undefined) frame.value = raw.v;
      if (raw.e !== undefined) frame.error = raw.e;
      return { ok: true, frame };
    }
  }
}
