/**
 * Issue 18.4: HELD (0x06, agent -> device), "received, in RAM, not yet durable: keep it, do not
 * resend before t ms", and HELLO's `h` (ring entries; the device understands HELD). Exact bytes in
 * docs/serial-protocol.md (the hex example there is checked by doc-examples.test.ts).
 */
import { encode as cborEncode } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DataFrame,
  encodeFrame,
  encodeRawFrame,
  type Frame,
  FrameDecoder,
  FrameType,
  type HeldFrame,
  type HelloFrame,
  MAX_FRAME_SIZE,
  MAX_HOLD_MS,
  SerialFrameError,
  TYPE_KIND,
} from '../src/index.ts';
import { concat, fromHex, hex, rawWire } from './arbitraries.ts';

const held: HeldFrame = { type: 'held', seq: 1, bootId: 0x12345678, holdMs: 9000 };
const good: DataFrame = { type: 'data', seq: 7, bootId: 1, readings: [{ sensor: 't', value: 1 }] };

describe('issue 18.4: HELD frame', () => {
  it('issue 18.4: HELD encodes to the documented bytes and decodes back', () => {
    expect(hex(encodeRawFrame(held))).toBe(hex(fromHex('060001 a2 6162 1a12345678 6174 192328 71e209ec')));
    const d = new FrameDecoder();
    expect(d.push(encodeFrame(held))).toEqual([held]);
    expect(FrameType.Held).toBe(0x06);
    // never an ACK: a receiver that switches on the type byte cannot take one for the other
    expect(encodeRawFrame(held)[0]).not.toBe(FrameType.Ack);
  });

  it('issue 18.4: any HELD round-trips, whole and one byte at a time', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffff }),
        fc.nat({ max: 0xffffffff }),
        fc.integer({ min: 1, max: MAX_HOLD_MS }),
        (seq, bootId, holdMs) => {
          const f: Frame = { type: 'held', seq, bootId, holdMs };
          const wire = encodeFrame(f);
          const d = new FrameDecoder();
          const out: Frame[] = [];
          for (const b of wire) out.push(...d.push(Uint8Array.of(b)));
          expect(out).toEqual([f]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('issue 18.4: a receiver that knows types 0x01..0x05 only (old firmware) counts HELD as unknown and skips it', () => {
    const kinds = TYPE_KIND as Record<number, string>;
    const saved = kinds[FrameType.Held];
    delete kinds[FrameType.Held];
    try {
      const d = new FrameDecoder();
      const ack: Frame = { type: 'ack', seq: 1, bootId: 0x12345678 };
      expect(d.push(concat([encodeFrame(held), encodeFrame(ack)]))).toEqual([ack]);
      expect(d.stats.unknownTypes).toBe(1);
      expect(d.stats.framesOk).toBe(1);
    } finally {
      kinds[FrameType.Held] = saved;
    }
  });

  const bad: Array<[string, unknown]> = [
    ['without a boot id', { t: 1000 }],
    ['without a hold', { b: 1 }],
    ['hold 0', { b: 1, t: 0 }],
    ['negative hold', { b: 1, t: -1 }],
    ['fractional hold', { b: 1, t: 1.5 }],
    ['hold as text', { b: 1, t: '1000' }],
    ['hold over an hour', { b: 1, t: MAX_HOLD_MS + 1 }],
    ['hold a bigint', { b: 1, t: 2n ** 60n }],
    ['boot id over uint32', { b: 2 ** 32, t: 1000 }],
    ['boot id as text', { b: '1', t: 1000 }],
    ['hold a Date (CBOR tag)', { b: 1, t: new Date(0) }],
    ['body an array', [1, 1000]],
    ['body a number', 1000],
  ];
  for (const [what, body] of bad) {
    it(`issue 18.4: HELD ${what} is a body error, counted, and the next frame is decoded`, () => {
      const reported: SerialFrameError[] = [];
      const d = new FrameDecoder({ onError: (e) => reported.push(e) });
      expect(d.push(concat([rawWire(0x06, 3, cborEncode(body)), encodeFrame(good)]))).toEqual([good]);
      expect(d.stats.bodyErrors).toBe(1);
      expect(reported[0]?.kind).toBe('body');
      expect(reported[0]?.header?.typeCode).toBe(0x06);
      expect(reported[0]?.header?.seq).toBe(3);
    });
  }

  it('issue 18.4: HELD truncated anywhere costs that frame only', () => {
    const wire = encodeFrame(held);
    for (let cut = 1; cut < wire.length - 1; cut++) {
      const d = new FrameDecoder();
      const stream = concat([wire.subarray(0, cut), Uint8Array.of(0), encodeFrame(good)]);
      expect(d.push(stream)).toEqual([good]);
      const s = d.stats;
      expect(s.framesOk).toBe(1);
      expect(s.cobsErrors + s.shortFrames + s.crcErrors + s.bodyErrors).toBe(1);
    }
  });

  it('issue 18.4: an oversized HELD (unknown keys to the frame limit and past it) is bounded', () => {
    // unknown keys are ignored, so a HELD padded to the 1024-byte limit is still a HELD
    const padFor = (bodyLen: number) => {
      // the string's length header is 3 bytes from 256 characters on
      const base = cborEncode({ b: 1, t: 1000, pad: 'x'.repeat(300) }).length - 300;
      return { b: 1, t: 1000, pad: 'x'.repeat(bodyLen - base) };
    };
    const maxBody = MAX_FRAME_SIZE - 7;
    const atLimit = cborEncode(padFor(maxBody));
    expect(atLimit.length).toBe(maxBody);
    const d = new FrameDecoder();
    expect(d.push(rawWire(0x06, 2, atLimit))).toEqual([{ type: 'held', seq: 2, bootId: 1, holdMs: 1000 }]);
    // one byte more: discarded up to the next delimiter, the frame after it decoded
    const over = cborEncode(padFor(maxBody + 1));
    expect(d.push(concat([rawWire(0x06, 2, over), encodeFrame(good)]))).toEqual([good]);
    expect(d.stats.oversize).toBe(1);
    // hostile CBOR lengths in a HELD body
    for (const c of ['a2 6162 01 6174 1b ffffffffffffffff', 'ba 7fffffff', 'a1 6174 7a 05f5e100']) {
      expect(d.push(rawWire(0x06, 2, fromHex(c)))).toEqual([]);
    }
    expect(d.stats.bodyErrors).toBe(3);
  });

  it('issue 18.4: encodeFrame refuses a HELD a decoder would reject', () => {
    expect(() => encodeFrame({ ...held, holdMs: 0 })).toThrow(SerialFrameError);
    expect(() => encodeFrame({ ...held, holdMs: MAX_HOLD_MS + 1 })).toThrow(/held\.t/);
    expect(() => encodeFrame({ ...held, holdMs: 1.5 })).toThrow(/held\.t/);
    expect(() => encodeFrame({ ...held, bootId: -1 })).toThrow(/held\.b/);
  });
});

describe('issue 18.4: HELLO h (ring entries: the device understands HELD)', () => {
  const hello: HelloFrame = {
    type: 'hello',
    seq: 0,
    deviceId: 'dev-1',
    firmware: '1.2.0',
    bootId: 0x12345678,
    sensors: [{ name: 'temp', unit: 'Cel' }],
    ringSize: 32,
  };

  it('issue 18.4: h round-trips; a HELLO without it has no ringSize (older firmware)', () => {
    const d = new FrameDecoder();
    expect(d.push(encodeFrame(hello))).toEqual([hello]);
    const { ringSize: _, ...old } = hello;
    const [f] = d.push(encodeFrame(old));
    expect(f).toEqual(old);
    expect((f as HelloFrame).ringSize).toBeUndefined();
  });

  for (const [what, h] of [
    ['0', 0],
    ['65536', 65536],
    ['negative', -1],
    ['fractional', 2.5],
    ['text', '32'],
    ['a map', { n: 32 }],
  ] as Array<[string, unknown]>) {
    it(`issue 18.4: HELLO h ${what} makes the HELLO a body error`, () => {
      const d = new FrameDecoder();
      const body = { d: 'dev-1', f: '1', b: 1, s: [], h };
      expect(d.push(concat([rawWire(0x01, 0, cborEncode(body)), encodeFrame(good)]))).toEqual([good]);
      expect(d.stats.bodyErrors).toBe(1);
    });
  }
});
