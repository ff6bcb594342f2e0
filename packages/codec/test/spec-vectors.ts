/**
 * Byte-exact vectors, worked out by hand from the MQTT 3.1.1 (OASIS, 2014) and 5.0 (OASIS,
 * 2019) specifications (vectors.test.ts decodes and re-encodes each; the ES5 tests run them in
 * Duktape and QuickJS).
 */
import type { Packet, ProtocolVersion } from '../src/index.ts';

export interface Vector {
  name: string;
  v: ProtocolVersion;
  bytes: string;
  packet: Packet;
  /** A form peers send that we accept but write differently. */
  decodeOnly?: boolean;
}

const b = (...xs: number[]) => Uint8Array.from(xs);
const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

export const SPEC_VECTORS: Vector[] = [
  // CONNECT: protocol name, level, flags, keepalive, [properties], client id, [will], [user], [password]
  {
    name: 'CONNECT 3.1 (MQIsdp, level 3)',
    v: 3,
    bytes: '10 0f 0006 4d5149736470 03 02 003c 0001 61',
    packet: { type: 'connect', protocolVersion: 3, clientId: 'a', clean: true, keepalive: 60 },
  },
  {
    name: 'CONNECT 3.1.1 minimal',
    v: 4,
    bytes: '10 0d 0004 4d515454 04 02 003c 0001 61',
    packet: { type: 'connect', protocolVersion: 4, clientId: 'a', clean: true, keepalive: 60 },
  },
  {
    name: 'CONNECT 3.1.1 empty client id, clean session off, keepalive 0',
    v: 4,
    bytes: '10 0c 0004 4d515454 04 00 0000 0000',
    packet: { type: 'connect', protocolVersion: 4, clientId: '', clean: false, keepalive: 0 },
  },
  {
    name: 'CONNECT 3.1.1 user, password, will QoS 1 retained (flags 0xee)',
    v: 4,
    bytes: '10 19 0004 4d515454 04 ee 003c 0001 61 0001 77 0001 78 0001 75 0001 70',
    packet: {
      type: 'connect',
      protocolVersion: 4,
      clientId: 'a',
      clean: true,
      keepalive: 60,
      will: { topic: 'w', payload: ascii('x'), qos: 1, retain: true },
      username: 'u',
      password: ascii('p'),
    },
  },
  {
    name: 'CONNECT 5.0 session expiry, receive maximum, will delay',
    v: 5,
    bytes: '10 22 0004 4d515454 05 06 003c 08 11 00000078 21 000a 0001 61 05 18 00000005 0001 77 0001 78',
    packet: {
      type: 'connect',
      protocolVersion: 5,
      clientId: 'a',
      clean: true,
      keepalive: 60,
      properties: { sessionExpiryInterval: 120, receiveMaximum: 10 },
      will: { topic: 'w', payload: ascii('x'), qos: 0, retain: false, properties: { willDelayInterval: 5 } },
    },
  },
  {
    name: 'CONNECT 5.0 password without user name (allowed in 5.0)',
    v: 5,
    bytes: '10 11 0004 4d515454 05 40 0000 00 0001 61 0001 70',
    packet: {
      type: 'connect',
      protocolVersion: 5,
      clientId: 'a',
      clean: false,
      keepalive: 0,
      password: ascii('p'),
    },
  },
  // CONNACK
  {
    name: 'CONNACK 3.1.1 session present, accepted',
    v: 4,
    bytes: '20 02 01 00',
    packet: { type: 'connack', sessionPresent: true, reasonCode: 0 },
  },
  {
    name: 'CONNACK 3.1.1 not authorized',
    v: 4,
    bytes: '20 02 00 05',
    packet: { type: 'connack', sessionPresent: false, reasonCode: 5 },
  },
  {
    name: 'CONNACK 5.0 success, no properties',
    v: 5,
    bytes: '20 03 00 00 00',
    packet: { type: 'connack', sessionPresent: false, reasonCode: 0 },
  },
  {
    name: 'CONNACK 5.0 short form (no property length) from some servers',
    v: 5,
    bytes: '20 02 00 00',
    packet: { type: 'connack', sessionPresent: false, reasonCode: 0 },
    decodeOnly: true,
  },
  {
    name: 'CONNACK 5.0 not authorized with reason string, topic alias maximum',
    v: 5,
    bytes: '20 0b 00 87 08 1f 0002 6e6f 22 0005',
    packet: {
      type: 'connack',
      sessionPresent: false,
      reasonCode: 0x87,
      properties: { reasonString: 'no', topicAliasMaximum: 5 },
    },
  },
  // PUBLISH
  {
    name: 'PUBLISH 3.1.1 QoS 0',
    v: 4,
    bytes: '30 07 0003 612f62 6869',
    packet: { type: 'publish', topic: 'a/b', payload: ascii('hi'), qos: 0, retain: false, dup: false },
  },
  {
    name: 'PUBLISH 3.1.1 QoS 1 DUP RETAIN packet id 10',
    v: 4,
    bytes: '3b 09 0003 612f62 000a 6869',
    packet: {
      type: 'publish',
      topic: 'a/b',
      payload: ascii('hi'),
      qos: 1,
      retain: true,
      dup: true,
      packetId: 10,
    },
  },
  {
    name: 'PUBLISH 3.1.1 QoS 2, empty payload, UTF-8 topic',
    v: 4,
    bytes: '34 08 0004 c3a92f61 ffff',
    packet: {
      type: 'publish',
      topic: '\u00e9/a',
      payload: b(),
      qos: 2,
      retain: false,
      dup: false,
      packetId: 65535,
    },
  },
  {
    name: 'PUBLISH 5.0 QoS 0, no properties',
    v: 5,
    bytes: '30 05 0001 61 00 78',
    packet: { type: 'publish', topic: 'a', payload: ascii('x'), qos: 0, retain: false, dup: false },
  },
  {
    name: 'PUBLISH 5.0 QoS 1 empty topic with topic alias',
    v: 5,
    bytes: '32 09 0000 0001 03 23 0005 78',
    packet: {
      type: 'publish',
      topic: '',
      payload: ascii('x'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 1,
      properties: { topicAlias: 5 },
    },
  },
  {
    name: 'PUBLISH 5.0 every PUBLISH property, two subscription ids, duplicate user keys',
    v: 5,
    bytes:
      '30 33 0001 61 2e 01 01 02 00000e10 03 0001 74 08 0001 72 09 0002 0102 0b 01 0b 8002 23 0007 ' +
      '26 0001 6b 0001 31 26 0001 6b 0000 26 0000 0000 00',
    packet: {
      type: 'publish',
      topic: 'a',
      payload: b(0),
      qos: 0,
      retain: false,
      dup: false,
      properties: {
        payloadFormatIndicator: true,
        messageExpiryInterval: 3600,
        contentType: 't',
        responseTopic: 'r',
        correlationData: b(1, 2),
        subscriptionIdentifiers: [1, 256],
        topicAlias: 7,
        userProperties: [
          ['k', '1'],
          ['k', ''],
          ['', ''],
        ],
      },
    },
  },
  // PUBACK, PUBREC, PUBREL, PUBCOMP
  { name: 'PUBACK 3.1.1', v: 4, bytes: '40 02 0001', packet: { type: 'puback', packetId: 1 } },
  { name: 'PUBREC 3.1.1', v: 4, bytes: '50 02 0002', packet: { type: 'pubrec', packetId: 2 } },
  { name: 'PUBREL 3.1.1 (flags 0010)', v: 4, bytes: '62 02 0003', packet: { type: 'pubrel', packetId: 3 } },
  { name: 'PUBCOMP 3.1.1', v: 4, bytes: '70 02 0004', packet: { type: 'pubcomp', packetId: 4 } },
  {
    name: 'PUBACK 5.0 success short form (remaining length 2)',
    v: 5,
    bytes: '40 02 0001',
    packet: { type: 'puback', packetId: 1, reasonCode: 0 },
  },
  {
    name: 'PUBREC 5.0 no matching subscribers (reason, no properties)',
    v: 5,
    bytes: '50 03 0001 10',
    packet: { type: 'pubrec', packetId: 1, reasonCode: 0x10 },
  },
  {
    name: 'PUBACK 5.0 reason and property length 0 (a form some peers send)',
    v: 5,
    bytes: '40 04 0001 80 00',
    packet: { type: 'puback', packetId: 1, reasonCode: 0x80 },
    decodeOnly: true,
  },
  {
    name: 'PUBREL 5.0 packet id not found with empty reason string',
    v: 5,
    bytes: '62 07 0009 92 03 1f 0000',
    packet: { type: 'pubrel', packetId: 9, reasonCode: 0x92, properties: { reasonString: '' } },
  },
  {
    name: 'PUBCOMP 5.0 success with user property',
    v: 5,
    bytes: '70 0b 0009 00 07 26 0001 61 0001 62',
    packet: { type: 'pubcomp', packetId: 9, reasonCode: 0, properties: { userProperties: [['a', 'b']] } },
  },
  // SUBSCRIBE, SUBACK
  {
    name: 'SUBSCRIBE 3.1.1 two filters (flags 0010)',
    v: 4,
    bytes: '82 0c 0001 0003 612f2b 01 0001 23 00',
    packet: {
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: 'a/+', qos: 1 },
        { topicFilter: '#', qos: 0 },
      ],
    },
  },
  {
    name: 'SUBSCRIBE 5.0 subscription identifier, every option bit',
    v: 5,
    bytes: '82 09 0002 02 0b 03 0001 61 2e',
    packet: {
      type: 'subscribe',
      packetId: 2,
      properties: { subscriptionIdentifier: 3 },
      subscriptions: [
        { topicFilter: 'a', qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 },
      ],
    },
  },
  {
    name: 'SUBSCRIBE 5.0 shared subscription',
    v: 5,
    bytes: '82 10 0003 00 000a 2473686172652f672f61 01',
    packet: {
      type: 'subscribe',
      packetId: 3,
      subscriptions: [
        { topicFilter: '$share/g/a', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 },
      ],
    },
  },
  {
    name: 'SUBACK 3.1.1 granted 0, 1 and failure',
    v: 4,
    bytes: '90 05 0001 00 01 80',
    packet: { type: 'suback', packetId: 1, reasonCodes: [0, 1, 0x80] },
  },
  {
    name: 'SUBACK 5.0 granted 2, not authorized',
    v: 5,
    bytes: '90 05 0001 00 02 87',
    packet: { type: 'suback', packetId: 1, reasonCodes: [2, 0x87] },
  },
  // UNSUBSCRIBE, UNSUBACK
  {
    name: 'UNSUBSCRIBE 3.1.1 (flags 0010)',
    v: 4,
    bytes: 'a2 05 0001 0001 61',
    packet: { type: 'unsubscribe', packetId: 1, topicFilters: ['a'] },
  },
  {
    name: 'UNSUBSCRIBE 5.0 two filters',
    v: 5,
    bytes: 'a2 0b 0001 00 0001 61 0003 612f23',
    packet: { type: 'unsubscribe', packetId: 1, topicFilters: ['a', 'a/#'] },
  },
  { name: 'UNSUBACK 3.1.1', v: 4, bytes: 'b0 02 0001', packet: { type: 'unsuback', packetId: 1 } },
  {
    name: 'UNSUBACK 5.0 success, no subscription existed',
    v: 5,
    bytes: 'b0 05 0001 00 00 11',
    packet: { type: 'unsuback', packetId: 1, reasonCodes: [0, 0x11] },
  },
  // PINGREQ, PINGRESP, DISCONNECT, AUTH
  { name: 'PINGREQ', v: 4, bytes: 'c0 00', packet: { type: 'pingreq' } },
  { name: 'PINGRESP', v: 5, bytes: 'd0 00', packet: { type: 'pingresp' } },
  { name: 'DISCONNECT 3.1.1', v: 4, bytes: 'e0 00', packet: { type: 'disconnect' } },
  {
    name: 'DISCONNECT 5.0 normal, remaining length 0',
    v: 5,
    bytes: 'e0 00',
    packet: { type: 'disconnect', reasonCode: 0 },
  },
  {
    name: 'DISCONNECT 5.0 with will message, reason only',
    v: 5,
    bytes: 'e0 01 04',
    packet: { type: 'disconnect', reasonCode: 4 },
  },
  {
    name: 'DISCONNECT 5.0 session taken over with session expiry',
    v: 5,
    bytes: 'e0 07 8e 05 11 00000000',
    packet: { type: 'disconnect', reasonCode: 0x8e, properties: { sessionExpiryInterval: 0 } },
  },
  {
    name: 'AUTH 5.0 success, remaining length 0',
    v: 5,
    bytes: 'f0 00',
    packet: { type: 'auth', reasonCode: 0 },
  },
  {
    name: 'AUTH 5.0 continue with method and data',
    v: 5,
    bytes: 'f0 0f 18 0d 15 0005 5343524d41 16 0002 0102',
    packet: {
      type: 'auth',
      reasonCode: 0x18,
      properties: { authenticationMethod: 'SCRMA', authenticationData: b(1, 2) },
    },
  },
];
