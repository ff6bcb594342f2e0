import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cobsDecode,
  cobsDecodeInto,
  cobsEncode,
  cobsEncodedLength,
  cobsMaxEncodedLength,
  crc32c,
  crc32cUpdate,
} from '../src/index.ts';

const hex = (u: Uint8Array) => Array.from(u, (b) => b.toString(16).padStart(2, '0')).join('');
const bytes = (h: string) => new Uint8Array(h.match(/../g)?.map((x) => Number.parseInt(x, 16)) ?? []);
const range = (from: number, to: number) =>
  Uint8Array.from({ length: to - from + 1 }, (_, i) => (from + i) & 0xff);
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

describe('COBS, the published examples (Cheshire & Baker; the Wikipedia table)', () => {
  const cases: Array<[string, Uint8Array, Uint8Array]> = [
    ['empty', bytes(''), bytes('01')],
    ['00', bytes('00'), bytes('0101')],
    ['00 00', bytes('0000'), bytes('010101')],
    ['00 11 00', bytes('001100'), bytes('01021101')],
    ['11 22 00 33', bytes('11220033'), bytes('03112202 33'.replace(' ', ''))],
    ['11 22 33 44', bytes('11223344'), bytes('0511223344')],
    ['11 00 00 00', bytes('11000000'), bytes('0211010101')],
    ['01..FE (254 bytes)', range(1, 254), cat(bytes('ff'), range(1, 254))],
    ['00..FE (255 bytes)', range(0, 254), cat(bytes('01ff'), range(1, 254))],
    ['01..FF (255 bytes)', range(1, 255), cat(bytes('ff'), range(1, 254), bytes('02ff'))],
    [
      '02..FF 00 (255 bytes)',
      cat(range(2, 255), bytes('00')),
      cat(bytes('ff'), range(2, 255), bytes('0101')),
    ],
    [
      '03..FF 00 01 (255 bytes)',
      cat(range(3, 255), bytes('0001')),
      cat(bytes('fe'), range(3, 255), bytes('0201')),
    ],
  ];
  for (const [name, raw, enc] of cases) {
    it(`encodes and decodes ${name}`, () => {
      expect(hex(cobsEncode(raw))).toBe(hex(enc));
      expect(cobsEncodedLength(raw)).toBe(enc.length);
      const dec = cobsDecode(enc);
      expect(dec).toBeInstanceOf(Uint8Array);
      expect(hex(dec as Uint8Array)).toBe(hex(raw));
    });
  }

  it('508 bytes without zeros: two full blocks, no trailing code byte', () => {
    const raw = new Uint8Array(508).fill(0x41);
    const enc = cobsEncode(raw);
    expect(enc.length).toBe(510);
    expect(enc[0]).toBe(0xff);
    expect(enc[255]).toBe(0xff);
  });

  it('rejects malformed runs with a fault, not a throw', () => {
    expect(cobsDecode(bytes('05112233'))).toBe('truncated-block');
    expect(cobsDecode(bytes('031100'))).toBe('zero-in-run');
    expect(cobsDecode(bytes('00'))).toBe('zero-in-run');
    expect(cobsDecodeInto(bytes('0511223344'), new Uint8Array(3))).toBe('too-long');
    expect(cobsDecodeInto(bytes('02110211'), new Uint8Array(2))).toBe('too-long');
  });

  it('round-trips any bytes, output has no zero, length within the bound', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1200 }), (raw) => {
        const enc = cobsEncode(raw);
        expect(enc.includes(0)).toBe(false);
        expect(enc.length).toBe(cobsEncodedLength(raw));
        expect(enc.length).toBeLessThanOrEqual(cobsMaxEncodedLength(raw.length));
        expect(hex(cobsDecode(enc) as Uint8Array)).toBe(hex(raw));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes in place (dst === src)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (raw) => {
        const enc = cobsEncode(raw);
        const n = cobsDecodeInto(enc, enc);
        expect(n).toBe(raw.length);
        expect(hex(enc.subarray(0, n as number))).toBe(hex(raw));
      }),
      { numRuns: 100 },
    );
  });

  it('decoding arbitrary bytes never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (junk) => {
        const r = cobsDecode(junk);
        expect(r instanceof Uint8Array || typeof r === 'string').toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe('CRC-32C', () => {
  const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  it('check value over "123456789" is 0xE3069283', () => {
    expect(crc32c(ascii('123456789'))).toBe(0xe3069283);
  });
  it('RFC 3720 (iSCSI) B.4 vectors', () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(range(0, 31))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
  });
  it('empty input is 0', () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });
  it('running form equals one pass, for any split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (data, cut) => {
        const k = data.length === 0 ? 0 : cut % (data.length + 1);
        const run = crc32cUpdate(crc32cUpdate(0xffffffff, data, 0, k), data, k);
        expect(~run >>> 0).toBe(crc32c(data));
      }),
      { numRuns: 200 },
    );
  });
  it('detects every single-bit flip in a 1 KiB frame', () => {
    const data = Uint8Array.from({ length: 1020 }, (_, i) => (i * 7 + 3) & 0xff);
    const good = crc32c(data);
    for (let bit = 0; bit < data.length * 8; bit += 13) {
      data[bit >> 3] ^= 1 << (bit & 7);
      expect(crc32c(data)).not.toBe(good);
      data[bit >> 3] ^= 1 << (bit & 7);
    }
  });
});
