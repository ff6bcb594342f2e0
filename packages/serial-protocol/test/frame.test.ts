import { encode as cborEncode } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  encodeRawFrame,
  type Frame,
  FrameDecoder,
  MAX_FRAME_SIZE,
  SerialFrameError,
} from '../src/index.ts';
import { concat, frame, fromHex, hex, rawWire } from './arbitraries.ts';

function decodeAll(stream: Uint8Array, chunk = stream.length): { frames: Frame[]; d: FrameDecoder } {
  const d = new FrameDecoder();
  const frames: Frame[] = [];
  for (let i = 0; i < stream.length; i += Math.max(1, chunk))
    frames.push(...d.push(stream.subarray(i, i + chunk)));
  return { frames, d };
}

describe('worked example (pinned in docs/serial-protocol.md)', () => {
  const example: Frame = {
    type: 'data',
    seq: 1,
    bootId: 0x12345678,
    readings: [{ sensor: 'temp', value: 21.5, unit: 'Cel' }],
  };
  const rawHex =
    '02 0001 a2 6162 1a12345678 6172 81 a3 6173 6474656d70 6176 fb4035800000000000 6175 6343656c' +
    ' e78bb035';
  const wireHex =
    '02 02 1b 01 a2 61 62 1a 12 34 56 78 61 72 81 a3 61 73 64 74 65 6d 70 61 76 fb 40 35 80 01 01 01 01 0b 61 75 63 43 65 6c e7 8b b0 35 00';

  it('raw frame bytes', () => {
    expect(hex(encodeRawFrame(example))).toBe(hex(fromHex(rawHex)));
  });
  it('wire bytes', () => {
    expect(hex(encodeFrame(example))).toBe(hex(fromHex(wireHex)));
  });
  it('decodes back', () => {
    expect(decodeAll(fromHex(wireHex)).frames).toEqual([example]);
  });
  it('ACK example', () => {
    expect(hex(encodeFrame({ type: 'ack', seq: 1, bootId: 0x12345678 }))).toMatchInlineSnapshot(
      `"02030e01a161621a1234567825aa3fdc00"`,
    );
  });
  it('CMD example', () => {
    expect(
      hex(encodeFrame({ type: 'cmd', seq: 7, id: 42, name: 'set-interval', args: { ms: 500 } })),
    ).toMatchInlineSnapshot(`"02042307a36169182a61636c7365742d696e74657276616c6161a1626d731901f4bf35884600"`);
  });
});

describe('round trip and stream splitting', () => {
  it('any frame round-trips', () => {
    fc.assert(
      fc.property(frame, (f) => {
        const wire = encodeFrame(f);
        expect(wire[wire.length - 1]).toBe(0);
        expect(wire.subarray(0, -1).includes(0)).toBe(false);
        const { frames, d } = decodeAll(wire);
        expect(frames).toEqual([f]);
        expect(d.stats.framesOk).toBe(1);
      }),
      { numRuns: 300 },
    );
  });

  it('any split of a stream of frames gives the same frames', () => {
    fc.assert(
      fc.property(
        fc.array(frame, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (fs, cuts) => {
          const stream = concat(fs.map(encodeFrame));
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const d = new FrameDecoder();
          const out: Frame[] = [];
          let prev = 0;
          for (const p of [...points, stream.length]) {
            out.push(...d.push(stream.subarray(prev, p)));
            prev = p;
          }
          expect(out).toEqual(fs);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('one byte at a time', () => {
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 4 }), (fs) => {
        expect(decodeAll(concat(fs.map(encodeFrame)), 1).frames).toEqual(fs);
      }),
      { numRuns: 50 },
    );
  });

  it('extra delimiters between frames are idle fill, not errors', () => {
    const f: Frame = { type: 'ack', seq: 9, bootId: 1 };
    const wire = concat([new Uint8Array(3), encodeFrame(f), new Uint8Array(5), encodeFrame(f)]);
    const { frames, d } = decodeAll(wire);
    expect(frames).toEqual([f, f]);
    expect(d.stats).toMatchObject({ framesOk: 2, cobsErrors: 0, shortFrames: 0, discardedBytes: 0 });
  });

  it('a frame of exactly MAX_FRAME_SIZE decoded bytes is accepted; one more byte is not encodable', () => {
    const base: Frame = { type: 'result', seq: 1, id: 1, ok: true, value: '' };
    const overhead = encodeRawFrame(base).length;
    // a text string of length n > 255 and < 65536 has a 3-byte header instead of 1
    const big: Frame = { ...base, value: 'x'.repeat(MAX_FRAME_SIZE - overhead - 2) };
    expect(encodeRawFrame(big).length).toBe(MAX_FRAME_SIZE);
    expect(decodeAll(encodeFrame(big)).frames).toEqual([big]);
    expect(() => encodeFrame({ ...base, value: 'x'.repeat(MAX_FRAME_SIZE - overhead - 1) })).toThrow(
      SerialFrameError,
    );
  });
});

describe('hostile input: counted, skipped, never thrown, never losing a later valid frame', () => {
  const good: Frame = { type: 'data', seq: 3, bootId: 7, readings: [{ sensor: 'temp', value: 20 }] };

  it('arbitrary garbage, then a delimiter, then valid frames', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.array(frame, { minLength: 1, maxLength: 3 }),
        fc.nat(),
        (junk, fs, c) => {
          const stream = concat([junk, new Uint8Array([0]), ...fs.map(encodeFrame)]);
          const chunk = 1 + (c % 64);
          const { frames, d } = decodeAll(stream, chunk);
          expect(frames.slice(-fs.length)).toEqual(fs);
          expect(d.stats.framesOk).toBe(frames.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('bit flips lose only the frames they touch', () => {
    fc.assert(
      fc.property(
        fc.array(frame, { minLength: 2, maxLength: 8 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 4 }),
        (fs, flips) => {
          const wires = fs.map(encodeFrame);
          const stream = concat(wires);
          const hit = new Set<number>();
          for (const f of flips) {
            const pos = f % (stream.length * 8);
            stream[pos >> 3] ^= 1 << (pos & 7);
            hit.add(pos >> 3);
          }
          // A frame survives when none of its bytes nor the delimiter before it was flipped.
          const expected: Frame[] = [];
          let start = 0;
          for (let i = 0; i < fs.length; i++) {
            const end = start + wires[i].length;
            let touched = false;
            for (let b = Math.max(0, start - 1); b < end; b++) if (hit.has(b)) touched = true;
            if (!touched) expected.push(fs[i]);
            start = end;
          }
          const { frames } = decodeAll(stream);
          // Everything decoded is one of the originals (CRC-32C), and every untouched one is there, in order.
          for (const f of frames) expect(fs).toContainEqual(f);
          let j = 0;
          for (const f of frames)
            if (j < expected.length && JSON.stringify(f) === JSON.stringify(expected[j])) j++;
          expect(j).toBe(expected.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('truncation: a frame cut anywhere then a delimiter costs only that frame (reset mid-frame)', () => {
    fc.assert(
      fc.property(frame, frame, fc.nat(), (a, b, cut) => {
        const wa = encodeFrame(a);
        const k = cut % (wa.length - 1); // at least one byte short of the whole frame
        const { frames } = decodeAll(concat([wa.subarray(0, k), new Uint8Array([0]), encodeFrame(b)]));
        expect(frames).toEqual([b]);
      }),
      { numRuns: 200 },
    );
  });

  it('dropped bytes: decoded frames are a subsequence of the originals', () => {
    fc.assert(
      fc.property(
        fc.array(frame, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (fs, drops) => {
          const stream = Array.from(concat(fs.map(encodeFrame)));
          for (const x of drops) if (stream.length > 0) stream.splice(x % stream.length, 1);
          const { frames } = decodeAll(Uint8Array.from(stream));
          for (const f of frames) expect(fs).toContainEqual(f);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('an over-long run is discarded and counted with bounded memory; the next frame is decoded', () => {
    const errors: SerialFrameError[] = [];
    const d = new FrameDecoder({ onError: (e) => errors.push(e) });
    const junk = new Uint8Array(64 * 1024).fill(0x55);
    for (let i = 0; i < 16; i++) expect(d.push(junk)).toEqual([]);
    expect(d.push(concat([new Uint8Array([0]), encodeFrame(good)]))).toEqual([good]);
    expect(d.stats.oversize).toBe(1);
    expect(d.stats.discardedBytes).toBe(16 * 64 * 1024 + 1);
    expect(errors.map((e) => e.kind)).toEqual(['oversize']);
    expect(errors[0].offset).toBe(0);
  });

  it('a smaller maxFrameSize is enforced', () => {
    const d = new FrameDecoder({ maxFrameSize: 16 });
    const big: Frame = { ...good, readings: [{ sensor: 'temperature', value: 20.25 }] };
    expect(d.push(encodeFrame(big))).toEqual([]);
    expect(d.stats.oversize).toBe(1);
    expect(d.push(encodeFrame({ type: 'ack', seq: 1, bootId: 1 }))).toEqual([
      { type: 'ack', seq: 1, bootId: 1 },
    ]);
    expect(() => new FrameDecoder({ maxFrameSize: 5000 })).toThrow(RangeError);
  });

  it('each error kind is counted and reported with its offset', () => {
    const errors: SerialFrameError[] = [];
    const d = new FrameDecoder({ onError: (e) => errors.push(e) });
    const wire = encodeFrame(good);
    const badCrc = wire.slice();
    badCrc[5] ^= 0x01;
    const chunks = [
      fromHex('05 11 22 00'), // COBS block cut short
      fromHex('03 11 22 00'), // valid COBS, 2 bytes: short
      badCrc,
      rawWire(0x7f, 1, fromHex('a0')), // unknown type
      rawWire(0x02, 1, fromHex('ff')), // CBOR break outside indefinite item
      rawWire(0x02, 1, cborEncode({ b: 1, r: [{ s: 'temp', v: 'hot' }] })), // non-number value
      rawWire(0x01, 1, cborEncode({ f: '1.0', b: 1, s: [] })), // HELLO without device id
      wire,
    ];
    const frames = chunks.flatMap((c) => d.push(c));
    expect(frames).toEqual([good]);
    expect(d.stats).toMatchObject({
      framesOk: 1,
      cobsErrors: 1,
      shortFrames: 1,
      crcErrors: 1,
      unknownTypes: 1,
      bodyErrors: 3,
    });
    expect(errors.map((e) => e.kind)).toEqual([
      'cobs',
      'short',
      'crc',
      'unknown-type',
      'body',
      'body',
      'body',
    ]);
    expect(errors[1].offset).toBe(4);
    expect(errors[6].message).toMatch(/device id/);
    // Intact frames with a bad body or type carry their header, so a DATA can be retired by ACK.
    expect(errors[0].header).toBeUndefined();
    expect(errors[2].header).toBeUndefined();
    expect(errors[3].header).toEqual({ typeCode: 0x7f, seq: 1 });
    expect(errors[4].header).toEqual({ typeCode: 0x02, seq: 1 });
    expect(errors[5].header).toEqual({ typeCode: 0x02, seq: 1, bootId: 1 });
  });

  it('a throwing onError does not stop the decoder', () => {
    const d = new FrameDecoder({
      onError: () => {
        throw new Error('logger down');
      },
    });
    expect(d.push(concat([fromHex('0511 00'), encodeFrame(good)]))).toEqual([good]);
  });

  const bodies: Array<[string, number, unknown]> = [
    ['DATA empty readings', 0x02, { b: 1, r: [] }],
    ['DATA NaN value', 0x02, { b: 1, r: [{ s: 't', v: Number.NaN }] }],
    ['DATA Infinity value', 0x02, { b: 1, r: [{ s: 't', v: Number.POSITIVE_INFINITY }] }],
    ['DATA sensor with slash', 0x02, { b: 1, r: [{ s: 'a/b', v: 1 }] }],
    ['DATA sensor with wildcard', 0x02, { b: 1, r: [{ s: '#', v: 1 }] }],
    ['DATA negative ts', 0x02, { b: 1, r: [{ s: 't', v: 1, t: -5 }] }],
    ['DATA boot id over uint32', 0x02, { b: 2 ** 32, r: [{ s: 't', v: 1 }] }],
    ['DATA body is an array', 0x02, [1, 2]],
    ['DATA Date value (CBOR tag 1)', 0x02, { b: 1, r: [{ s: 't', v: new Date(0) }] }],
    ['HELLO device id too long', 0x01, { d: 'x'.repeat(65), f: '1', b: 1, s: [] }],
    ['HELLO sensors not an array', 0x01, { d: 'x', f: '1', b: 1, s: 'temp' }],
    ['ACK without boot id', 0x03, {}],
    ['CMD without id', 0x04, { c: 'ping' }],
    ['CMD args with a Date', 0x04, { i: 1, c: 'ping', a: { at: new Date(0) } }],
    ['RESULT ok not boolean', 0x05, { i: 1, ok: 1 }],
    ['RESULT error with control chars', 0x05, { i: 1, ok: false, e: 'a\u0007b' }],
    ['a bigint', 0x02, { b: 2n ** 60n, r: [{ s: 't', v: 1 }] }],
  ];
  for (const [what, type, body] of bodies) {
    it(`body error: ${what}`, () => {
      const d = new FrameDecoder();
      expect(d.push(concat([rawWire(type, 1, cborEncode(body)), encodeFrame(good)]))).toEqual([good]);
      expect(d.stats.bodyErrors).toBe(1);
    });
  }

  it('hostile CBOR (huge declared lengths, deep nesting, trailing bytes, tags) is a body error', () => {
    const nested = new Uint8Array(900).fill(0x81);
    const cases = [
      fromHex('9b ffffffffffffffff'),
      fromHex('ba 7fffffff'),
      fromHex('7a 05f5e100'),
      fromHex('a1 6162 01 ff'),
      fromHex('d81d00'),
      fromHex('d8698101'),
      concat([fromHex('a2 6162 01 6172'), nested, fromHex('00')]),
      fromHex('a1 a1616101 01'),
    ];
    const d = new FrameDecoder();
    const frames = cases.flatMap((c) => d.push(rawWire(0x02, 1, c)));
    expect(frames).toEqual([]);
    expect(d.stats.bodyErrors).toBe(cases.length);
    expect(d.push(encodeFrame(good))).toEqual([good]);
  });

  it('random bodies with a valid CRC never throw', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        (t, body) => {
          const d = new FrameDecoder();
          d.push(rawWire(t, 0, body));
          expect(d.stats.framesOk + d.stats.bodyErrors).toBe(1);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('encodeFrame refuses frames a decoder would reject', () => {
    expect(() => encodeFrame({ ...good, seq: 70000 })).toThrow(/seq/);
    expect(() => encodeFrame({ ...good, readings: [] })).toThrow(SerialFrameError);
    expect(() => encodeFrame({ ...good, readings: [{ sensor: 'a+b', value: 1 }] })).toThrow(/sensor/);
    expect(() =>
      encodeFrame({ type: 'hello', seq: 0, deviceId: '', firmware: '1', bootId: 1, sensors: [] }),
    ).toThrow(/device id/);
  });
});
