/**
 * Byte-exact vectors, worked out by hand from the MQTT 3.1.1 (OASIS, 2014) and 5.0 (OASIS,
 * 2019) specifications: fixed header (type << 4 | flags, remaining length), variable header,
 * properties (length, then identifier + value), payload. Each is decoded and re-encoded.
 */
import { describe, expect, it } from 'vitest';
import { decode, encode, type Packet } from '../src/index.ts';
import { hex, toHex } from './arbitraries.ts';
import { SPEC_VECTORS as vectors } from './spec-vectors.ts';

describe('byte-exact vectors from the specification', () => {
  for (const vec of vectors) {
    it(`${vec.name}: decodes`, () => {
      expect(decode(hex(vec.bytes), vec.v)).toEqual(vec.packet);
    });
    if (!vec.decodeOnly)
      it(`${vec.name}: encodes to the same bytes`, () => {
        expect(toHex(encode(vec.packet, vec.v))).toBe(toHex(hex(vec.bytes)));
      });
  }

  it('covers all 15 packet types and the three protocol versions', () => {
    const types = new Set(vectors.map((x) => x.packet.type));
    expect(types.size).toBe(15);
    expect(new Set(vectors.map((x) => x.v))).toEqual(new Set([3, 4, 5]));
  });

  it('remaining length uses 1..4 bytes at the spec boundaries (127/128, 16383/16384, 2097151/2097152)', () => {
    for (const [rem, header] of [
      [127, '30 7f'],
      [128, '30 80 01'],
      [16_383, '30 ff 7f'],
      [16_384, '30 80 80 01'],
      [2_097_151, '30 ff ff 7f'],
      [2_097_152, '30 80 80 80 01'],
    ] as const) {
      const payload = new Uint8Array(rem - 3);
      const packet: Packet = { type: 'publish', topic: 'a', payload, qos: 0, retain: false, dup: false };
      const bytes = encode(packet, 4);
      const h = hex(header);
      expect(toHex(bytes.subarray(0, h.length))).toBe(toHex(h));
      expect(bytes.length).toBe(h.length + rem);
      expect((decode(bytes, 4) as { payload: Uint8Array }).payload.length).toBe(rem - 3);
    }
  });
});
