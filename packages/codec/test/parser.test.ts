import { describe, expect, it } from 'vitest';
import { encode, MAX_PACKET_SIZE, MqttError, type Packet, PacketParser } from '../src/index.ts';
import { concat, hex } from './arbitraries.ts';

function collect(parser: PacketParser, ...chunks: Uint8Array[]): Packet[] {
  const out: Packet[] = [];
  for (const c of chunks) parser.push(c, (p) => out.push(p));
  return out;
}

type Publish = Extract<Packet, { type: 'publish' }>;
const publish = (topic: string, payload: number[]): Publish => ({
  type: 'publish',
  topic,
  payload: Uint8Array.from(payload),
  qos: 0,
  retain: false,
  dup: false,
});

describe('PacketParser', () => {
  it('reads an MQTT 5 DISCONNECT of length 0 followed by a PINGREQ in the same chunk', () => {
    const out = collect(new PacketParser({ protocolVersion: 5 }), hex('e0 00 c0 00'));
    expect(out).toEqual([{ type: 'disconnect', reasonCode: 0 }, { type: 'pingreq' }]);
  });

  it('reads the MQTT 5 short forms: CONNACK and PUBACK of remaining length 2, then more packets', () => {
    const out = collect(
      new PacketParser({ protocolVersion: 5 }),
      hex('20 02 00 00 40 02 00 07 50 03 00 08 10 d0 00'),
    );
    expect(out).toEqual([
      { type: 'connack', sessionPresent: false, reasonCode: 0 },
      { type: 'puback', packetId: 7, reasonCode: 0 },
      { type: 'pubrec', packetId: 8, reasonCode: 0x10 },
      { type: 'pingresp' },
    ]);
  });

  it('keeps user properties in order with duplicate keys and empty values', () => {
    const packet: Packet = {
      ...publish('t', [1]),
      properties: {
        userProperties: [
          ['k', 'v1'],
          ['', ''],
          ['k', 'v2'],
          ['k', ''],
        ],
      },
    };
    const out = collect(new PacketParser({ protocolVersion: 5 }), encode(packet, 5));
    expect(out).toEqual([packet]);
  });

  it('follows the protocol version of the CONNECT it parses when none is set', () => {
    const parser = new PacketParser();
    expect(parser.protocolVersion).toBeUndefined();
    const connect: Packet = {
      type: 'connect',
      protocolVersion: 5,
      clientId: 'c',
      clean: true,
      keepalive: 10,
    };
    const pub5: Packet = { ...publish('t', [1]), properties: { contentType: 'text/plain' } };
    // CONNECT and an MQTT 5 PUBLISH (with properties) in one chunk
    const out = collect(parser, concat([encode(connect, 5), encode(pub5, 5)]));
    expect(parser.protocolVersion).toBe(5);
    expect(out).toEqual([connect, pub5]);
  });

  it('keeps a version that was set, whatever CONNECT says', () => {
    const parser = new PacketParser({ protocolVersion: 4 });
    collect(
      parser,
      encode({ type: 'connect', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0 }),
    );
    expect(parser.protocolVersion).toBe(4);
  });

  it('hands out payloads as views of the chunk when the packet arrived whole', () => {
    const chunk = concat([encode(publish('a', [1, 2, 3])), encode(publish('b', [4, 5]))]);
    const out = collect(new PacketParser(), chunk) as Array<Extract<Packet, { type: 'publish' }>>;
    expect(out[0].payload.buffer).toBe(chunk.buffer);
    expect(out[1].payload.buffer).toBe(chunk.buffer);
    expect(Array.from(out[1].payload)).toEqual([4, 5]);
  });

  it('never rewrites memory of packets it handed out while assembling later ones', () => {
    const parser = new PacketParser();
    const seen: Array<Extract<Packet, { type: 'publish' }>> = [];
    const stream = concat(
      Array.from({ length: 600 }, (_, i) => encode(publish(`t/${i}`, [i & 0xff, 1, 2, 3]))),
    );
    for (let i = 0; i < stream.length; i += 3)
      parser.push(stream.subarray(i, i + 3), (p) => seen.push(p as (typeof seen)[0]));
    expect(seen.length).toBe(600);
    seen.forEach((p, i) => {
      expect(p.topic).toBe(`t/${i}`);
      expect(Array.from(p.payload)).toEqual([i & 0xff, 1, 2, 3]);
    });
  });

  it('holds only the unfinished packet', () => {
    const parser = new PacketParser();
    const a = encode(publish('abc', [1, 2, 3, 4]));
    const out = collect(parser, concat([a, a.subarray(0, 5)]));
    expect(out.length).toBe(1);
    expect(parser.bufferedBytes).toBe(5);
    collect(parser, a.subarray(5));
    expect(parser.bufferedBytes).toBe(0);
    collect(parser, a.subarray(0, 1));
    expect(parser.bufferedBytes).toBe(1);
  });

  it('enforces maxPacketSize from the fixed header, before buffering a body byte', () => {
    const parser = new PacketParser({ maxPacketSize: 100 });
    // 101 bytes in all: 1 + 1 + 99
    const header = hex('30 63');
    let error: unknown;
    try {
      parser.push(header, () => {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(MqttError);
    expect((error as MqttError).code).toBe('PACKET_TOO_LARGE');
    expect((error as MqttError).reasonCode).toBe(0x95);
    expect(parser.bufferedBytes).toBe(0);
    // exactly the limit passes
    const ok = new PacketParser({ maxPacketSize: 100 });
    const p = encode(publish('a', new Array(95).fill(1)));
    expect(p.length).toBe(100);
    expect(collect(ok, p).length).toBe(1);
  });

  it('rejects a header split across chunks as soon as its size is known', () => {
    const parser = new PacketParser({ maxPacketSize: 1000 });
    parser.push(hex('30'), () => {});
    parser.push(hex('ff'), () => {});
    expect(() => parser.push(hex('7f'), () => {})).toThrowError(
      expect.objectContaining({ code: 'PACKET_TOO_LARGE' }),
    );
  });

  it('holds what arrived, not what a header claims (256 MB claim, 11 bytes sent)', () => {
    const parser = new PacketParser();
    parser.push(hex('30 ff ff ff 7f 0001 61 00 00 00'), () => {});
    expect(parser.bufferedBytes).toBe(11);
    expect(MAX_PACKET_SIZE).toBe(268_435_460);
  });

  it('stays failed after an error until reset()', () => {
    const parser = new PacketParser();
    const bad = hex('38 03 0001 61');
    expect(() => parser.push(bad, () => {})).toThrow(MqttError);
    let again: unknown;
    try {
      parser.push(hex('c0 00'), () => {});
    } catch (err) {
      again = err;
    }
    expect((again as MqttError).code).toBe('DUP_ON_QOS0');
    parser.reset();
    expect(collect(parser, hex('c0 00'))).toEqual([{ type: 'pingreq' }]);
  });

  it('a throw from onPacket propagates and fails the parser (its stream position is lost)', () => {
    const parser = new PacketParser();
    const boom = new Error('consumer failed');
    expect(() =>
      parser.push(hex('c0 00 c0 00'), () => {
        throw boom;
      }),
    ).toThrow(boom);
    expect(() => parser.push(hex('c0 00'), () => {})).toThrow(boom);
  });

  it('fails fast on a bad first byte, before the rest of the packet arrives', () => {
    const parser = new PacketParser();
    expect(() => parser.push(hex('00'), () => {})).toThrowError(
      expect.objectContaining({ code: 'PACKET_TYPE_INVALID' }),
    );
  });

  it('assembles large packets of its own buffer, growing with what arrives', () => {
    const payload = new Uint8Array(200_000).map((_, i) => i & 0xff);
    const bytes = encode({ type: 'publish', topic: 'big', payload, qos: 0, retain: false, dup: false });
    const parser = new PacketParser();
    const out: Packet[] = [];
    for (let i = 0; i < bytes.length; i += 4096) parser.push(bytes.slice(i, i + 4096), (p) => out.push(p));
    expect(out.length).toBe(1);
    expect((out[0] as { payload: Uint8Array }).payload).toEqual(payload);
  });

  it('issue 17.1: push hands its context to the callback with every packet, whole or assembled', () => {
    // A server shares parsers among connections: the context says whose bytes these are,
    // without a module-level "current connection" or a closure per connection.
    const parser = new PacketParser({ protocolVersion: 4 });
    const seen: Array<[string, string]> = [];
    const record = (p: Packet, who: string): void => {
      seen.push([p.type, who]);
    };
    // a PINGREQ whole, then a PUBLISH split over two pushes with different contexts
    const pub = encode(publish('a/b', [1, 2, 3]), 4);
    parser.push(concat([hex('c0 00'), pub.subarray(0, 4)]), record, 'first');
    parser.push(pub.subarray(4), record, 'second');
    expect(seen).toEqual([
      ['pingreq', 'first'],
      ['publish', 'second'],
    ]);
  });

  it('rejects a maxPacketSize under 2', () => {
    expect(() => new PacketParser({ maxPacketSize: 1 })).toThrow(RangeError);
  });
});
