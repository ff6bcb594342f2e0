/**
 * CBOR bodies: one CBOR map per frame with short text keys (the table is in
 * docs/serial-protocol.md). Decoding is strict about types and bounds and lenient about
 * unknown keys, so newer firmware can add fields without breaking older agents.
 */
import { Decoder, Encoder } from 'cbor-x';
import type { Frame, FrameKind, Reading, SensorInfo } from './frames.ts';
import {
  isFiniteNumber,
  isName,
  isPlainObject,
  isText,
  isUint,
  isValue,
  MAX_NAME_LENGTH,
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
    case 'hello':
      return {
        d: f.deviceId,
        f: f.firmware,
        b: f.bootId,
        s: f.sensors.map((s) => (s.unit === undefined ? { s: s.name } : { s: s.name, u: s.unit })),
      };
    case 'data':
      return { b: f.bootId, r: f.readings.map(readingObject) };
    case 'ack':
      return { b: f.bootId };
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
      return {
        ok: true,
        frame: { type: 'hello', seq, deviceId: raw.d, firmware: raw.f, bootId: raw.b, sensors },
      };
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
