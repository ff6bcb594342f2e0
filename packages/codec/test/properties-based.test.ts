import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decode,
  encode,
  encodedLength,
  MqttError,
  type Packet,
  PacketParser,
  PacketWriter,
} from '../src/index.ts';
import { concat, packetOf, version, versionAndPackets } from './arbitraries.ts';

const RUNS = Number(process.env.CODEC_FC_RUNS ?? 400);

describe('property: round trip', () => {
  it('decode(encode(p)) equals p for any valid packet of any version', () => {
    fc.assert(
      fc.property(
        version.chain((v) => fc.tuple(fc.constant(v), packetOf(v))),
        ([v, p]) => {
          const bytes = encode(p, v);
          expect(bytes.length).toBe(encodedLength(p, v));
          expect(decode(bytes, v)).toEqual(p);
        },
      ),
      { numRuns: RUNS * 3 },
    );
  });

  it('the reusable writer, encodeInto and encode give the same bytes', () => {
    const writer = new PacketWriter(8);
    fc.assert(
      fc.property(
        version.chain((v) => fc.tuple(fc.constant(v), packetOf(v))),
        fc.nat(7),
        ([v, p], offset) => {
          const fresh = encode(p, v);
          expect(writer.encode(p, v)).toEqual(fresh);
          const target = new Uint8Array(offset + fresh.length);
          expect(writer.encodeInto(p, v, target, offset)).toBe(offset + fresh.length);
          expect(target.subarray(offset)).toEqual(fresh);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('property: streaming', () => {
  it('splitting the byte stream at any points gives the same packets', () => {
    fc.assert(
      fc.property(versionAndPackets(6), fc.array(fc.nat(), { maxLength: 20 }), ([v, packets], cutsRaw) => {
        const stream = concat(packets.map((p) => encode(p, v)));
        const cuts = [...new Set(cutsRaw.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const parser = new PacketParser({ protocolVersion: v });
        const out: Packet[] = [];
        let at = 0;
        for (const c of [...cuts, stream.length]) {
          // copies, so the parser cannot lean on the whole stream being one buffer
          parser.push(stream.slice(at, c), (p) => out.push(p));
          at = c;
        }
        expect(out).toEqual(packets);
        expect(parser.bufferedBytes).toBe(0);
      }),
      { numRuns: RUNS },
    );
  });

  it('one byte at a time gives the same packets', () => {
    fc.assert(
      fc.property(versionAndPackets(4), ([v, packets]) => {
        const stream = concat(packets.map((p) => encode(p, v)));
        const parser = new PacketParser({ protocolVersion: v });
        const out: Packet[] = [];
        for (let i = 0; i < stream.length; i++) parser.push(stream.slice(i, i + 1), (p) => out.push(p));
        expect(out).toEqual(packets);
      }),
      { numRuns: RUNS / 2 },
    );
  });
});

describe('property: hostile bytes', () => {
  const MAX = 300;

  function feed(v: 3 | 4 | 5, bytes: Uint8Array, cuts: number[]): void {
    const parser = new PacketParser({ protocolVersion: v, maxPacketSize: MAX });
    let at = 0;
    try {
      for (const c of [...cuts.map((x) => x % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
        parser.push(bytes.subarray(at, c), (p) => {
          // whatever the parser accepts is a valid packet: it encodes, and round-trips
          const again = encode(p, v);
          expect(decode(again, v)).toEqual(p);
        });
        expect(parser.bufferedBytes).toBeLessThanOrEqual(MAX);
        at = Math.max(at, c);
      }
    } catch (err) {
      if (!(err instanceof MqttError)) throw err;
      expect(err.reasonCode).toBeGreaterThanOrEqual(0x80);
      expect(err.offset).toBeGreaterThanOrEqual(0);
      // failed stays failed
      expect(() => parser.push(new Uint8Array([0xc0, 0]), () => {})).toThrow(err);
    }
  }

  it('byte mutations of valid streams give packets or an MqttError, nothing else', () => {
    fc.assert(
      fc.property(
        versionAndPackets(4),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        ([v, packets], mutations, cuts) => {
          const stream = concat(packets.map((p) => encode(p, v)));
          for (const [pos, value] of mutations) stream[pos % stream.length] = value;
          feed(v, stream, cuts);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('truncated and extended streams, and random bytes, give packets or an MqttError', () => {
    fc.assert(
      fc.property(
        versionAndPackets(3),
        fc.nat(),
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        ([v, packets], cut, tail, cuts) => {
          const stream = concat(packets.map((p) => encode(p, v)));
          feed(v, concat([stream.subarray(0, cut % (stream.length + 1)), tail]), cuts);
          feed(v, tail, cuts);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });
});
