/**
 * Issue 12 limits in the codec: user properties per packet (12.2) and topic levels (12.3),
 * and the parser's maximum packet size following the connection's state.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_USER_PROPERTIES,
  decode,
  encode,
  MqttError,
  type Packet,
  PacketParser,
  type PublishPacket,
} from '../src/index.ts';
import { connectWithUserProperties } from './hostile-packets.ts';

function parseAll(parser: PacketParser, bytes: Uint8Array): Packet[] {
  const out: Packet[] = [];
  parser.push(bytes, (p) => out.push(p));
  return out;
}

function errorOf(f: () => unknown): MqttError {
  try {
    f();
  } catch (err) {
    if (err instanceof MqttError) return err;
    throw err;
  }
  throw new Error('no error thrown');
}

const pairs = (n: number): Array<[string, string]> => Array.from({ length: n }, (_, i) => [`k${i}`, '']);

describe('issue 12.2: user properties per packet are bounded', () => {
  it('the default bound is 1,024 per packet', () => {
    expect(DEFAULT_MAX_USER_PROPERTIES).toBe(1024);
  });

  it('a CONNECT with more user properties than the bound is PACKET_TOO_LARGE-like 0x95, not decoded', () => {
    const err = errorOf(() => decode(connectWithUserProperties(DEFAULT_MAX_USER_PROPERTIES + 1)));
    expect(err.code).toBe('USER_PROPERTIES_TOO_MANY');
    expect(err.reasonCode).toBe(0x95);
    // the offending property's offset: 2-byte fixed header, 10 bytes, 2-byte property length
    expect(err.offset).toBe(3 + 10 + 2 + 5 * DEFAULT_MAX_USER_PROPERTIES);
    const ok = decode(connectWithUserProperties(DEFAULT_MAX_USER_PROPERTIES));
    expect(ok.type === 'connect' && ok.properties?.userProperties?.length).toBe(DEFAULT_MAX_USER_PROPERTIES);
  });

  it('the bound counts the CONNECT and its will properties together', () => {
    const connect = (a: number, b: number): Uint8Array =>
      encode(
        {
          type: 'connect',
          protocolVersion: 5,
          clientId: 'c',
          clean: true,
          keepalive: 0,
          properties: { userProperties: pairs(a) },
          will: {
            topic: 'w',
            payload: new Uint8Array(0),
            qos: 0,
            retain: false,
            properties: { userProperties: pairs(b) },
          },
        },
        5,
      );
    expect(() => decode(connect(512, 512))).not.toThrow();
    expect(errorOf(() => decode(connect(512, 513))).code).toBe('USER_PROPERTIES_TOO_MANY');
  });

  it('each packet gets the whole bound again, and maxUserProperties sets it', () => {
    const pub = (n: number): Uint8Array =>
      encode(
        {
          type: 'publish',
          topic: 't',
          payload: new Uint8Array(0),
          qos: 0,
          retain: false,
          dup: false,
          properties: { userProperties: pairs(n) },
        },
        5,
      );
    const parser = new PacketParser({ protocolVersion: 5, maxUserProperties: 3 });
    const two = new Uint8Array([...pub(3), ...pub(3)]);
    expect(parseAll(parser, two)).toHaveLength(2);
    expect(errorOf(() => parser.push(pub(4), () => {})).reasonCode).toBe(0x95);
    const roomy = new PacketParser({ protocolVersion: 5, maxUserProperties: 5000 });
    expect(parseAll(roomy, pub(5000))).toHaveLength(1);
    // decode() takes the same options (stored data the caller trusts)
    expect(decode(pub(2000), 5, { maxUserProperties: Number.POSITIVE_INFINITY }).type).toBe('publish');
  });

  it('rejects a negative or non-numeric bound', () => {
    expect(() => new PacketParser({ maxUserProperties: -1 })).toThrow(RangeError);
  });

  const child = fileURLToPath(new URL('./limits.child.ts', import.meta.url));
  const measure = (...args: string[]): Record<string, number | string> => {
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', child, ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string);
  };

  it('a 16 MB CONNECT of empty user properties is refused, the JS heap growing by under 2 MB', () => {
    // before the bound: +364 MB of heap (3.4 million [key, value] pairs) for 16 MB on the wire
    const r = measure('hostile', '16');
    expect(r.error).toBe('USER_PROPERTIES_TOO_MANY 0x95');
    expect(r.kept).toBe(0);
    const wire = r.wireBytes as number;
    // decoded objects: bounded by the count of user properties, not by the packet's size
    expect(r.peakHeapBytes as number).toBeLessThan(2 * 1024 * 1024);
    // the parser buffers the packet whole before decoding it, growing by doubling (old buffers
    // are garbage until a GC runs, measured 2-3x): maxPacketSize bounds that, before a byte is
    // buffered. Before the bound this was 17x (285 MB), the decoded pairs on top of the buffer.
    expect(r.peakBytes as number).toBeLessThan(4 * wire);
    expect(r.heldBytes as number).toBeLessThan(1024 * 1024);
  });

  it('decoded packets at the bound cost a bounded multiple of their wire size', () => {
    // 1,024 empty user properties (5 wire bytes each) per CONNECT, 500 CONNECTs kept alive
    const r = measure('legit', String(DEFAULT_MAX_USER_PROPERTIES), '500');
    expect(r.packets).toBe(500);
    const perWireByte = (r.heldBytes as number) / (r.wireBytes as number);
    // a [key, value] pair is two V8 objects (about 72 bytes with its slot) for 5 wire bytes:
    // at most ~15x for the worst (empty) pairs; the bound keeps that to ~74 KB per packet
    expect(perWireByte).toBeLessThan(16);
  });
});

describe('issue 12.3: topic levels', () => {
  const deep = (levels: number): string => Array.from({ length: levels }, () => 'a').join('/');
  const publish = (topic: string): PublishPacket => ({
    type: 'publish',
    topic,
    payload: new Uint8Array(0),
    qos: 0,
    retain: false,
    dup: false,
  });

  it('no limit by default: a 32,768-level topic name decodes', () => {
    const p = decode(encode(publish(deep(32_768)), 4), 4);
    expect(p.type === 'publish' && p.topic.length).toBe(65_535);
  });

  it('maxTopicLevels refuses a deeper PUBLISH topic name with 0x90, while scanning it', () => {
    for (const v of [4, 5] as const) {
      const parser = new PacketParser({ protocolVersion: v, maxTopicLevels: 200 });
      expect(parseAll(parser, encode(publish(deep(200)), v))).toHaveLength(1);
      const err = errorOf(() => parser.push(encode(publish(deep(201)), v), () => {}));
      expect(err.code).toBe('TOPIC_TOO_DEEP');
      expect(err.reasonCode).toBe(0x90);
      const big = new PacketParser({ protocolVersion: v, maxTopicLevels: 200 });
      expect(errorOf(() => big.push(encode(publish(deep(32_768)), v), () => {})).code).toBe('TOPIC_TOO_DEEP');
    }
  });

  it('maxTopicLevels applies to a will topic in CONNECT', () => {
    const connect = (levels: number): Uint8Array =>
      encode(
        {
          type: 'connect',
          protocolVersion: 4,
          clientId: 'c',
          clean: true,
          keepalive: 0,
          will: { topic: deep(levels), payload: new Uint8Array(0), qos: 0, retain: false },
        },
        4,
      );
    expect(parseAll(new PacketParser({ maxTopicLevels: 3 }), connect(3))).toHaveLength(1);
    expect(errorOf(() => new PacketParser({ maxTopicLevels: 3 }).push(connect(4), () => {})).code).toBe(
      'TOPIC_TOO_DEEP',
    );
  });

  it('filters are left to the caller (a SUBSCRIBE refuses them one by one)', () => {
    const sub = encode(
      { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: deep(300), qos: 0 }] },
      4,
    );
    expect(parseAll(new PacketParser({ protocolVersion: 4, maxTopicLevels: 200 }), sub)).toHaveLength(1);
  });
});

describe('issue 12.2: the maximum packet size can change with the connection state', () => {
  const big = (): Uint8Array =>
    encode(
      { type: 'publish', topic: 't', payload: new Uint8Array(200), qos: 0, retain: false, dup: false },
      4,
    );
  const ping = [0xc0, 0];

  it('maxPacketSize is writable between pushes', () => {
    const parser = new PacketParser({ protocolVersion: 4, maxPacketSize: 100 });
    expect(parser.maxPacketSize).toBe(100);
    parser.maxPacketSize = 1000;
    expect(parseAll(parser, big())).toHaveLength(1);
    parser.maxPacketSize = 100;
    expect(errorOf(() => parser.push(big(), () => {})).code).toBe('PACKET_TOO_LARGE');
  });

  it('raised by the handler of one packet, it applies to the next one in the same chunk', () => {
    const parser = new PacketParser({ protocolVersion: 4, maxPacketSize: 100 });
    const out: Packet[] = [];
    parser.push(new Uint8Array([...ping, ...big()]), (p) => {
      out.push(p);
      parser.maxPacketSize = 1000;
    });
    expect(out.map((p) => p.type)).toEqual(['pingreq', 'publish']);
  });

  it('raised while a packet is half-buffered, the packet completes', () => {
    const parser = new PacketParser({ protocolVersion: 4, maxPacketSize: 300 });
    const bytes = big();
    parser.push(bytes.subarray(0, 10), () => {});
    parser.maxPacketSize = 100_000;
    expect(parseAll(parser, bytes.subarray(10))).toHaveLength(1);
  });
});
