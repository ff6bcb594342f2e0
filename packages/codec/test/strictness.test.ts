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

// [what, version, bytes, code, reason code, offset]
type Case = [string, ProtocolVersion | undefined, string, string, number, number?];

const decodeCases: Case[] = [
  // UTF-8 [MQTT-1.5.4-1..3]
  ['ill-formed UTF-8 in a topic (bad continuation)', 4, '30 04 0002 c328', 'UTF8_INVALID', 0x81, 4],
  ['U+0000 in a topic', 4, '30 04 0002 6100', 'UTF8_INVALID', 0x81, 4],
  ['overlong encoding in a client id', 4, '10 0e 0004 4d515454 04 02 003c 0002 c0af', 'UTF8_INVALID', 0x81],
  [
    'encoded surrogate (ED A0 80) in a user name',
    4,
    '10 12 0004 4d515454 04 82 003c 0001 61 0003 eda080',
    'UTF8_INVALID',
    0x81,
  ],
  ['code point past U+10FFFF', 4, '30 06 0004 f4908080', 'UTF8_INVALID', 0x81],
  ['truncated multi-byte sequence', 4, '30 04 0002 61e2', 'UTF8_INVALID', 0x81],
  [
    'ill-formed UTF-8 in a user property value',
    5,
    '30 0c 0001 61 08 26 0001 61 0002 ff61',
    'UTF8_INVALID',
    0x81,
  ],
  // topics
  ['wildcard # in a PUBLISH topic', 4, '30 05 0003 612f23', 'TOPIC_NAME_INVALID', 0x90, 6],
  ['wildcard + in a PUBLISH topic', 5, '30 06 0003 2b2f61 00', 'TOPIC_NAME_INVALID', 0x90, 4],
  ['empty PUBLISH topic in 3.1.1', 4, '30 02 0000', 'TOPIC_NAME_INVALID', 0x90, 2],
  ['empty PUBLISH topic in 5.0 without a topic alias', 5, '30 03 0000 00', 'TOPIC_NAME_INVALID', 0x82, 2],
  [
    'wildcard in a will topic',
    4,
    '10 13 0004 4d515454 04 06 003c 0001 61 0001 23 0001 78',
    'TOPIC_NAME_INVALID',
    0x90,
  ],
  ['wildcard in a response topic', 5, '30 08 0001 61 04 08 0001 23', 'TOPIC_NAME_INVALID', 0x82],
  // packet ids
  ['packet id 0 in PUBLISH QoS 1', 4, '32 05 0001 61 0000', 'PACKET_ID_INVALID', 0x81, 5],
  ['packet id 0 in PUBACK', 4, '40 02 0000', 'PACKET_ID_INVALID', 0x81, 2],
  ['packet id 0 in PUBREL', 5, '62 02 0000', 'PACKET_ID_INVALID', 0x81],
  ['packet id 0 in SUBSCRIBE', 4, '82 06 0000 0001 61 00', 'PACKET_ID_INVALID', 0x81],
  ['packet id 0 in SUBACK', 4, '90 03 0000 00', 'PACKET_ID_INVALID', 0x81],
  ['packet id 0 in UNSUBSCRIBE', 4, 'a2 05 0000 0001 61', 'PACKET_ID_INVALID', 0x81],
  ['packet id 0 in UNSUBACK', 4, 'b0 02 0000', 'PACKET_ID_INVALID', 0x81],
  // fixed header
  ['DUP on QoS 0', 4, '38 03 0001 61', 'DUP_ON_QOS0', 0x81, 0],
  ['QoS 3', 4, '36 05 0001 61 0001', 'QOS_INVALID', 0x81, 0],
  ['reserved packet type 0', 4, '00 00', 'PACKET_TYPE_INVALID', 0x81, 0],
  ['AUTH in 3.1.1', 4, 'f0 00', 'PACKET_TYPE_INVALID', 0x81, 0],
  ['PUBREL flags 0000 (must be 0010)', 4, '60 02 0001', 'FLAGS_INVALID', 0x81, 0],
  ['SUBSCRIBE flags 0000', 4, '80 06 0001 0001 61 00', 'FLAGS_INVALID', 0x81, 0],
  ['UNSUBSCRIBE flags 0000', 4, 'a0 05 0001 0001 61', 'FLAGS_INVALID', 0x81, 0],
  ['PUBACK flags 0001', 4, '41 02 0001', 'FLAGS_INVALID', 0x81, 0],
  ['CONNECT flags 0001', 4, '11 0d 0004 4d515454 04 02 003c 0001 61', 'FLAGS_INVALID', 0x81, 0],
  ['PINGREQ flags 0001', 4, 'c1 00', 'FLAGS_INVALID', 0x81, 0],
  ['DISCONNECT flags 0010', 5, 'e2 00', 'FLAGS_INVALID', 0x81, 0],
  // remaining length
  ['non-minimal remaining length (80 00)', 4, 'c0 80 00', 'VARINT_NOT_MINIMAL', 0x81, 2],
  ['remaining length past 268,435,455 (5 bytes)', 4, 'c0 ff ff ff ff 01', 'VARINT_INVALID', 0x81],
  ['non-minimal property length', 5, '30 05 0001 61 80 00', 'VARINT_NOT_MINIMAL', 0x81],
  ['non-minimal subscription identifier', 5, '30 07 0001 61 03 0b 81 00', 'VARINT_NOT_MINIMAL', 0x81],
  // SUBSCRIBE / UNSUBSCRIBE payloads
  ['SUBSCRIBE with no filter (3.1.1)', 4, '82 02 0001', 'SUBSCRIBE_EMPTY', 0x82],
  ['SUBSCRIBE with no filter (5.0)', 5, '82 03 0001 00', 'SUBSCRIBE_EMPTY', 0x82],
  ['UNSUBSCRIBE with no filter', 4, 'a2 02 0001', 'UNSUBSCRIBE_EMPTY', 0x82],
  ['filter a/#/b', 4, '82 0a 0001 0005 612f232f62 00', 'TOPIC_FILTER_INVALID', 0x8f, 4],
  ['filter a/b#', 4, '82 09 0001 0004 612f6223 00', 'TOPIC_FILTER_INVALID', 0x8f, 4],
  ['filter a+', 4, '82 07 0001 0002 612b 00', 'TOPIC_FILTER_INVALID', 0x8f, 4],
  ['filter +a', 4, 'a2 06 0001 0002 2b61', 'TOPIC_FILTER_INVALID', 0x8f, 4],
  ['empty filter', 4, '82 05 0001 0000 00', 'TOPIC_FILTER_INVALID', 0x8f, 4],
  [
    'shared subscription without a filter',
    5,
    '82 0e 0001 00 0008 2473686172652f67 00',
    'TOPIC_FILTER_INVALID',
    0x8f,
  ],
  [
    '3.1.1 subscription options with reserved bits',
    4,
    '82 06 0001 0001 61 04',
    'SUBSCRIPTION_OPTIONS_INVALID',
    0x81,
    7,
  ],
  [
    '5.0 subscription options with reserved bits 6..7',
    5,
    '82 07 0001 00 0001 61 40',
    'SUBSCRIPTION_OPTIONS_INVALID',
    0x81,
  ],
  ['5.0 retain handling 3', 5, '82 07 0001 00 0001 61 30', 'SUBSCRIPTION_OPTIONS_INVALID', 0x81],
  ['subscription QoS 3', 4, '82 06 0001 0001 61 03', 'SUBSCRIPTION_OPTIONS_INVALID', 0x81],
  [
    'no local on a shared subscription',
    5,
    '82 10 0001 00 000a 2473686172652f672f61 04',
    'SUBSCRIPTION_OPTIONS_INVALID',
    0x82,
  ],
  ['SUBACK with no return code', 4, '90 02 0001', 'ACK_EMPTY', 0x82],
  ['3.1.1 SUBACK return code 3', 4, '90 03 0001 03', 'REASON_CODE_INVALID', 0x81],
  // CONNECT
  [
    'password without user name in 3.1.1',
    4,
    '10 10 0004 4d515454 04 42 003c 0001 61 0001 70',
    'CONNECT_FLAGS_INVALID',
    0x81,
    9,
  ],
  [
    'password without user name in 3.1',
    3,
    '10 12 0006 4d5149736470 03 42 003c 0001 61 0001 70',
    'CONNECT_FLAGS_INVALID',
    0x81,
  ],
  ['reserved CONNECT flag bit 0', 4, '10 0d 0004 4d515454 04 03 003c 0001 61', 'CONNECT_FLAGS_INVALID', 0x81],
  ['will QoS 3', 4, '10 13 0004 4d515454 04 1e 003c 0001 61 0001 77 0001 78', 'CONNECT_FLAGS_INVALID', 0x81],
  ['will retain without a will', 4, '10 0d 0004 4d515454 04 22 003c 0001 61', 'CONNECT_FLAGS_INVALID', 0x81],
  ['unknown protocol name', 4, '10 0d 0004 4d515458 04 02 003c 0001 61', 'PROTOCOL_NAME_INVALID', 0x84],
  [
    'unknown protocol level',
    undefined,
    '10 0d 0004 4d515454 06 02 003c 0001 61',
    'PROTOCOL_VERSION_UNSUPPORTED',
    0x84,
    8,
  ],
  [
    'MQIsdp with level 4',
    undefined,
    '10 0f 0006 4d5149736470 04 02 003c 0001 61',
    'PROTOCOL_VERSION_UNSUPPORTED',
    0x84,
  ],
  ['CONNECT with trailing bytes', 4, '10 0e 0004 4d515454 04 02 003c 0001 61 00', 'TRAILING_BYTES', 0x81],
  // CONNACK
  ['CONNACK reserved acknowledge flags', 4, '20 02 02 00', 'FLAGS_INVALID', 0x81, 2],
  ['3.1.1 CONNACK return code 6', 4, '20 02 00 06', 'REASON_CODE_INVALID', 0x81],
  ['CONNACK session present on a refusal', 5, '20 03 01 87 00', 'SESSION_PRESENT_INVALID', 0x81],
  [
    '5.0 CONNACK reason code not defined for CONNACK (0x04)',
    5,
    '20 03 00 04 00',
    'REASON_CODE_INVALID',
    0x82,
    3,
  ],
  // properties
  [
    'property not allowed in the packet (session expiry in PUBLISH)',
    5,
    '30 09 0001 61 05 11 00000001',
    'PROPERTY_NOT_ALLOWED',
    0x82,
    6,
  ],
  [
    'will delay in CONNECT properties',
    5,
    '10 13 0004 4d515454 05 02 003c 05 18 00000001 0001 61',
    'PROPERTY_NOT_ALLOWED',
    0x82,
  ],
  [
    'topic alias in a will',
    5,
    '10 18 0004 4d515454 05 06 003c 00 0001 61 03 23 0001 0001 77 0001 78',
    'PROPERTY_NOT_ALLOWED',
    0x82,
  ],
  ['duplicated content type', 5, '30 0a 0001 61 06 03 0000 03 0000', 'PROPERTY_DUPLICATE', 0x82, 9],
  [
    'duplicated session expiry in DISCONNECT',
    5,
    'e0 0c 00 0a 11 00000001 11 00000002',
    'PROPERTY_DUPLICATE',
    0x82,
  ],
  ['topic alias 0', 5, '30 07 0001 61 03 23 0000', 'PROPERTY_INVALID', 0x94, 6],
  ['subscription identifier 0', 5, '82 09 0001 02 0b 00 0001 61 00', 'PROPERTY_INVALID', 0x82],
  ['receive maximum 0', 5, '20 06 00 00 03 21 0000', 'PROPERTY_INVALID', 0x82],
  ['maximum packet size 0', 5, '20 08 00 00 05 27 00000000', 'PROPERTY_INVALID', 0x82],
  ['payload format indicator 2', 5, '30 06 0001 61 02 01 02', 'PROPERTY_INVALID', 0x82],
  ['maximum QoS 2', 5, '20 05 00 00 02 24 02', 'PROPERTY_INVALID', 0x82],
  ['unknown property id', 5, '30 06 0001 61 02 7f 00', 'PROPERTY_UNKNOWN', 0x81],
  ['property running past its length', 5, '30 08 0001 61 02 02 0000 00', 'PROPERTY_TRUNCATED', 0x81],
  ['property length past the packet', 5, '30 04 0001 61 09', 'TRUNCATED', 0x81],
  // acknowledgements and the rest
  [
    '5.0 PUBACK reason code not defined for PUBACK (0x05)',
    5,
    '40 03 0001 05',
    'REASON_CODE_INVALID',
    0x82,
    4,
  ],
  ['5.0 PUBREL reason code 0x10', 5, '62 03 0001 10', 'REASON_CODE_INVALID', 0x82],
  ['5.0 SUBACK reason code 0x03', 5, '90 04 0001 00 03', 'REASON_CODE_INVALID', 0x82],
  ['5.0 UNSUBACK with no reason code', 5, 'b0 03 0001 00', 'ACK_EMPTY', 0x82],
  ['5.0 DISCONNECT reason code 0x10', 5, 'e0 01 10', 'REASON_CODE_INVALID', 0x82],
  ['5.0 AUTH reason code 0x80', 5, 'f0 01 80', 'REASON_CODE_INVALID', 0x82],
  ['3.1.1 PUBACK with a reason code', 4, '40 03 0001 00', 'TRAILING_BYTES', 0x81, 4],
  ['3.1.1 UNSUBACK with a reason code', 4, 'b0 03 0001 00', 'TRAILING_BYTES', 0x81],
  ['3.1.1 DISCONNECT with a body', 4, 'e0 01 00', 'TRAILING_BYTES', 0x81],
  ['PINGREQ with a body', 4, 'c0 01 00', 'TRAILING_BYTES', 0x81, 2],
  ['string length past the packet', 4, '30 03 0005 61', 'TRUNCATED', 0x81],
  ['PUBLISH QoS 1 without room for the packet id', 4, '32 04 0001 61 00', 'TRUNCATED', 0x81],
];

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
