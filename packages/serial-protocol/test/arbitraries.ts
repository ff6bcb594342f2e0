import fc from 'fast-check';
import { cobsEncode, crc32c, type Frame, MAX_HOLD_MS, type Reading, type Value } from '../src/index.ts';

export const name = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,12}$/).filter((s) => s !== '__proto__');
const text = fc.stringMatching(/^[ -~]{0,16}$/);
const finite = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x));
const uint32 = fc.nat({ max: 0xffffffff });
const seq = fc.nat({ max: 0xffff });

export const reading: fc.Arbitrary<Reading> = fc.record(
  { sensor: name, value: fc.oneof(finite, fc.integer()), unit: text, ts: fc.nat() },
  { requiredKeys: ['sensor', 'value'] },
);

export const value: fc.Arbitrary<Value> = fc.letrec<{ v: Value }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    finite,
    text,
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(name, tie('v'), { maxKeys: 3 }),
  ),
})).v;

export const frame: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    type: fc.constant('hello' as const),
    seq,
    deviceId: name,
    firmware: text,
    bootId: uint32,
    sensors: fc.array(fc.record({ name, unit: text }, { requiredKeys: ['name'] }), { maxLength: 5 }),
    ringSize: fc.option(fc.integer({ min: 1, max: 0xffff }), { nil: undefined }),
  }),
  fc.record({
    type: fc.constant('data' as const),
    seq,
    bootId: uint32,
    readings: fc.array(reading, { minLength: 1, maxLength: 8 }),
  }),
  fc.record({ type: fc.constant('ack' as const), seq, bootId: uint32 }),
  fc.record({
    type: fc.constant('held' as const),
    seq,
    bootId: uint32,
    holdMs: fc.integer({ min: 1, max: MAX_HOLD_MS }),
  }),
  fc.record(
    { type: fc.constant('cmd' as const), seq, id: uint32, name, args: value },
    { requiredKeys: ['type', 'seq', 'id', 'name'] },
  ),
  fc.record(
    { type: fc.constant('result' as const), seq, id: uint32, ok: fc.boolean(), value, error: text },
    { requiredKeys: ['type', 'seq', 'id', 'ok'] },
  ),
);

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export const hex = (u: Uint8Array) => Array.from(u, (b) => b.toString(16).padStart(2, '0')).join('');
export const fromHex = (h: string) =>
  new Uint8Array(
    h
      .replace(/\s+/g, '')
      .match(/../g)
      ?.map((x) => Number.parseInt(x, 16)) ?? [],
  );

/** Builds a wire frame around arbitrary body bytes, bypassing encodeFrame's validation. */
export function rawWire(type: number, seq: number, body: Uint8Array): Uint8Array {
  const raw = new Uint8Array(3 + body.length + 4);
  raw[0] = type;
  raw[1] = seq >> 8;
  raw[2] = seq & 0xff;
  raw.set(body, 3);
  const crc = crc32c(raw, 0, 3 + body.length);
  new DataView(raw.buffer).setUint32(3 + body.length, crc, true);
  return concat([cobsEncode(raw), new Uint8Array([0])]);
}
