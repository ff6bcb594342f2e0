/**
 * Every rule the codec enforces, one case each: decoding rejects the bytes with the right code,
 * MQTT 5 reason code and offset; encoding refuses the packet instead of writing a bad one.
 */
import { describe, expect, it } from 'vitest';
import {
  decode,
  encode,
  encodeInto,
  MqttError,
  type Packet,
  PacketParser,
  PacketWriter,
  type ProtocolVersion,
} from '../src/index.ts';
import { hex } from './arbitraries.ts';

function decodeError(bytes: string, v: ProtocolVersion | undefined): MqttError {
  try {
    decode(hex(bytes), v);
  } catch (err) {
    expect(err).toBeInstanceOf(MqttError);
    return err as MqttError;
  }
  throw new Error(`decoded without error: ${bytes}`);
}

function parserError(bytes: string, v: ProtocolVersion | undefined): MqttError {
  const parser = new PacketParser({ protocolVersion: v });
  try {
    parser.push(hex(bytes), () => {});
  } catch (err) {
    expect(err).toBeInstanceOf(MqttError);
    return err as MqttError;
  }
  throw new Error(`parsed without error: ${bytes}`);
}

import { MALFORMED_VECTORS as decodeCases } from './malformed-vectors.ts';

describe('decoding rejects', () => {
  for (const [what, v, bytes, code, reason, offset] of decodeCases) {
    it(`${what} -> ${code} (0x${reason.toString(16)})`, () => {
      for (const err of [decodeError(bytes, v), parserError(bytes, v)]) {
        expect(err.code).toBe(code);
        expect(err.reasonCode).toBe(reason);
        if (offset !== undefined) expect(err.offset).toBe(offset);
        else expect(err.offset).toBeGreaterThanOrEqual(0);
      }
    });
  }

  it('decode() wants exactly one whole packet', () => {
    expect(() => decode(hex('c0'), 4)).toThrow(MqttError);
    expect(() => decode(hex('c0 00 c0 00'), 4)).toThrowError(
      expect.objectContaining({ code: 'TRAILING_BYTES' }),
    );
    expect(() => decode(hex('30 05 0001 61'), 4)).toThrowError(
      expect.objectContaining({ code: 'TRUNCATED' }),
    );
  });
});

const pub = (extra: Partial<Extract<Packet, { type: 'publish' }>> = {}): Packet => ({
  type: 'publish',
  topic: 'a/b',
  payload: new Uint8Array([1]),
  qos: 0,
  retain: false,
  dup: false,
  ...extra,
});

// [what, version, packet, code]
const encodeCases: Array<[string, ProtocolVersion, Packet, string]> = [
  ['packet id 0', 4, pub({ qos: 1, packetId: 0 }), 'PACKET_ID_INVALID'],
  ['packet id 65536', 4, { type: 'puback', packetId: 65536 }, 'PACKET_ID_INVALID'],
  [
    'packet id 1.5',
    4,
    { type: 'subscribe', packetId: 1.5, subscriptions: [{ topicFilter: 'a', qos: 0 }] },
    'PACKET_ID_INVALID',
  ],
  ['missing packet id on QoS 2', 4, pub({ qos: 2 }), 'PACKET_ID_INVALID'],
  [
    'client id over 65,535 bytes',
    4,
    { type: 'connect', protocolVersion: 4, clientId: 'a'.repeat(65_536), clean: true, keepalive: 0 },
    'STRING_TOO_LONG',
  ],
  [
    'topic over 65,535 bytes (2-byte characters)',
    4,
    pub({ topic: '\u00e9'.repeat(32_768) }),
    'TOPIC_NAME_INVALID',
  ],
  [
    'user property over 65,535 bytes',
    5,
    pub({ properties: { userProperties: [['k', 'v'.repeat(70_000)]] } }),
    'STRING_TOO_LONG',
  ],
  [
    'password over 65,535 bytes',
    5,
    {
      type: 'connect',
      protocolVersion: 5,
      clientId: '',
      clean: true,
      keepalive: 0,
      password: new Uint8Array(65_536),
    },
    'BINARY_TOO_LONG',
  ],
  ['wildcard in a PUBLISH topic', 4, pub({ topic: 'a/+' }), 'TOPIC_NAME_INVALID'],
  ['empty PUBLISH topic in 3.1.1', 4, pub({ topic: '' }), 'TOPIC_NAME_INVALID'],
  ['empty PUBLISH topic in 5.0 without an alias', 5, pub({ topic: '' }), 'TOPIC_NAME_INVALID'],
  ['U+0000 in a topic', 4, pub({ topic: 'a\u0000' }), 'TOPIC_NAME_INVALID'],
  ['lone surrogate in a topic', 4, pub({ topic: 'a\ud800' }), 'TOPIC_NAME_INVALID'],
  [
    'lone surrogate in a client id',
    4,
    { type: 'connect', protocolVersion: 4, clientId: '\udc00', clean: true, keepalive: 0 },
    'STRING_INVALID',
  ],
  [
    'U+0000 in a user name',
    4,
    { type: 'connect', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 0, username: '\u0000' },
    'STRING_INVALID',
  ],
  [
    'filter a/#/b',
    4,
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a/#/b', qos: 0 }] },
    'TOPIC_FILTER_INVALID',
  ],
  ['filter a+', 4, { type: 'unsubscribe', packetId: 1, topicFilters: ['a+'] }, 'TOPIC_FILTER_INVALID'],
  ['empty SUBSCRIBE', 4, { type: 'subscribe', packetId: 1, subscriptions: [] }, 'SUBSCRIBE_EMPTY'],
  ['empty UNSUBSCRIBE', 5, { type: 'unsubscribe', packetId: 1, topicFilters: [] }, 'UNSUBSCRIBE_EMPTY'],
  ['DUP on QoS 0', 4, pub({ dup: true }), 'DUP_ON_QOS0'],
  ['QoS 3', 4, pub({ qos: 3 as 0 }), 'QOS_INVALID'],
  ['AUTH in 3.1.1', 4, { type: 'auth' }, 'AUTH_NEEDS_MQTT5'],
  [
    'password without user name in 3.1.1',
    4,
    {
      type: 'connect',
      protocolVersion: 4,
      clientId: 'c',
      clean: true,
      keepalive: 0,
      password: new Uint8Array(1),
    },
    'PASSWORD_WITHOUT_USERNAME',
  ],
  [
    'property not allowed (session expiry in PUBLISH)',
    5,
    pub({ properties: { sessionExpiryInterval: 1 } }),
    'PROPERTY_INVALID',
  ],
  [
    'property not allowed (topic alias in CONNACK)',
    5,
    { type: 'connack', sessionPresent: false, reasonCode: 0, properties: { topicAlias: 1 } },
    'PROPERTY_INVALID',
  ],
  [
    'subscription identifiers list in SUBSCRIBE',
    5,
    {
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: 'a', qos: 0 }],
      properties: { subscriptionIdentifiers: [1] },
    },
    'PROPERTY_INVALID',
  ],
  ['topic alias 0', 5, pub({ properties: { topicAlias: 0 } }), 'PROPERTY_INVALID'],
  [
    'subscription identifier 268,435,456',
    5,
    {
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: 'a', qos: 0 }],
      properties: { subscriptionIdentifier: 268_435_456 },
    },
    'PROPERTY_INVALID',
  ],
  [
    'message expiry not an integer',
    5,
    pub({ properties: { messageExpiryInterval: -1 } }),
    'PROPERTY_INVALID',
  ],
  ['unknown property', 5, pub({ properties: { bogus: 1 } as never }), 'PROPERTY_INVALID'],
  [
    'reason code not defined for PUBACK',
    5,
    { type: 'puback', packetId: 1, reasonCode: 0x05 },
    'REASON_CODE_INVALID',
  ],
  [
    '3.1.1 CONNACK return code 6',
    4,
    { type: 'connack', sessionPresent: false, reasonCode: 6 },
    'REASON_CODE_INVALID',
  ],
  [
    'session present on a refusal',
    4,
    { type: 'connack', sessionPresent: true, reasonCode: 5 },
    'SESSION_PRESENT_INVALID',
  ],
  [
    'no local on a shared subscription',
    5,
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '$share/g/a', qos: 0, noLocal: true }] },
    'SUBSCRIPTION_OPTIONS_INVALID',
  ],
  ['5.0 UNSUBACK without reason codes', 5, { type: 'unsuback', packetId: 1 }, 'UNSUBACK_EMPTY'],
  [
    'keepalive 65536',
    4,
    { type: 'connect', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 65_536 },
    'KEEPALIVE_INVALID',
  ],
  ['payload not a Uint8Array', 4, pub({ payload: 'x' as unknown as Uint8Array }), 'PAYLOAD_INVALID'],
  ['unknown packet type', 4, { type: 'bogus' } as unknown as Packet, 'PACKET_TYPE_INVALID'],
];

describe('encoding refuses', () => {
  for (const [what, v, packet, code] of encodeCases) {
    it(`${what} -> ${code}`, () => {
      const writer = new PacketWriter();
      const before = writer.encode({ type: 'pingreq' }, 4).slice();
      let error: unknown;
      try {
        encode(packet, v);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(MqttError);
      expect((error as MqttError).code).toBe(code);
      expect((error as MqttError).offset).toBe(-1);
      // and writes nothing into a caller's buffer
      const target = new Uint8Array(16).fill(0xaa);
      expect(() => encodeInto(packet, v, target, 0)).toThrow(MqttError);
      expect(target.every((x) => x === 0xaa)).toBe(true);
      // the writer still works afterwards
      expect(() => writer.encode(packet, v)).toThrow(MqttError);
      expect(writer.encode({ type: 'pingreq' }, 4)).toEqual(before);
    });
  }

  it('encodeInto refuses a target too small, writing nothing', () => {
    const target = new Uint8Array(8).fill(7);
    let error: unknown;
    try {
      encodeInto(pub(), 4, target, 2);
    } catch (err) {
      error = err;
    }
    expect((error as MqttError).code).toBe('BUFFER_TOO_SMALL');
    expect(Array.from(target)).toEqual([7, 7, 7, 7, 7, 7, 7, 7]);
  });

  it('maps 3.1.1 details away instead of writing what 3.1.1 cannot carry', () => {
    // 3.1.1 has no properties or ack reason codes: they are left out, not an error
    expect(Array.from(encode({ type: 'puback', packetId: 1, reasonCode: 0x10 }, 4))).toEqual([0x40, 2, 0, 1]);
    expect(Array.from(encode(pub({ properties: { contentType: 'x' } }), 4))).toEqual(
      Array.from(encode(pub(), 4)),
    );
  });
});
