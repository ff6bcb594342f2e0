/**
 * Mosquitto's bridge bit: a bridge with `try_private true` sends CONNECT with the protocol
 * level's high bit set (0x83 for 3.1, 0x84 for 3.1.1) so that the remote broker can treat it as
 * a bridge (no echo of its own messages, retain flags kept). MQTT 5 has no such form: Mosquitto
 * bridges speaking 5 send a plain 5, so 0x85 stays an unsupported level here.
 */
import { describe, expect, it } from 'vitest';
import {
  type ConnectPacket,
  decode,
  encode,
  MqttError,
  PacketParser,
  type ProtocolVersion,
} from '../src/index.ts';
import { hex } from './arbitraries.ts';

const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const compact = (s: string): string => s.replace(/\s+/g, '');

// CONNECT, clean, keepalive 60, client id "br"
const V31_BRIDGE = '10 10 0006 4d5149736470 83 02 003c 0002 6272';
const V311_BRIDGE = '10 0e 0004 4d515454 84 02 003c 0002 6272';

function connect(protocolVersion: ProtocolVersion, extra: Partial<ConnectPacket> = {}): ConnectPacket {
  return { type: 'connect', protocolVersion, clientId: 'br', clean: true, keepalive: 60, ...extra };
}

function errorOf(fn: () => unknown): MqttError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MqttError);
    return err as MqttError;
  }
  throw new Error('no error');
}

describe('CONNECT bridge bit (Mosquitto try_private)', () => {
  it('decodes 0x83 as MQTT 3.1 with bridge: true', () => {
    expect(decode(hex(V31_BRIDGE))).toEqual(connect(3, { bridge: true }));
  });

  it('decodes 0x84 as MQTT 3.1.1 with bridge: true', () => {
    const p = decode(hex(V311_BRIDGE)) as ConnectPacket;
    expect(p).toEqual(connect(4, { bridge: true }));
    expect(p.bridge).toBe(true);
  });

  it('leaves bridge absent on a plain CONNECT', () => {
    const p = decode(hex('10 0e 0004 4d515454 04 02 003c 0002 6272')) as ConnectPacket;
    expect(p).toEqual(connect(4));
    expect('bridge' in p).toBe(false);
  });

  it('the streaming parser takes it too and learns version 4 from it', () => {
    const parser = new PacketParser();
    const got: unknown[] = [];
    // one byte at a time, then a PUBLISH that only 3.1.1 framing decodes this way
    const bytes = hex(`${V311_BRIDGE} 30 05 0001 61 7879`);
    for (let i = 0; i < bytes.length; i++) parser.push(bytes.subarray(i, i + 1), (p) => got.push(p));
    expect(got[0]).toEqual(connect(4, { bridge: true }));
    expect(parser.protocolVersion).toBe(4);
    expect(got[1]).toMatchObject({ type: 'publish', topic: 'a', payload: hex('7879') });
  });

  it('encodes bridge: true as the level with its high bit set', () => {
    expect(toHex(encode(connect(3, { bridge: true }), 3))).toBe(compact(V31_BRIDGE));
    expect(toHex(encode(connect(4, { bridge: true }), 4))).toBe(compact(V311_BRIDGE));
  });

  it('encodes bridge: false (or absent) as the plain level', () => {
    expect(toHex(encode(connect(4, { bridge: false }), 4))).toBe(
      compact('10 0e 0004 4d515454 04 02 003c 0002 6272'),
    );
    expect(toHex(encode(connect(3), 3))).toBe(compact('10 10 0006 4d5149736470 03 02 003c 0002 6272'));
  });

  it('round-trips with a will, user name and password', () => {
    for (const v of [3, 4] as const) {
      const p = connect(v, {
        bridge: true,
        clean: false,
        username: 'u',
        password: hex('0102'),
        will: { topic: 'w/t', payload: hex('ff'), qos: 1, retain: true },
      });
      expect(decode(encode(p, v))).toEqual(p);
    }
  });

  it('refuses to encode bridge with MQTT 5 (typed, nothing written)', () => {
    const err = errorOf(() => encode(connect(5, { bridge: true }), 5));
    expect(err.code).toBe('PROTOCOL_VERSION_INVALID');
    expect(err.reasonCode).toBe(0x84);
    expect(err.offset).toBe(-1);
  });

  it.each([
    ['0x85 (MQTT 5 has no bridge form)', '10 0d 0004 4d515454 85 02 003c 0001 61'],
    ['0x82', '10 0d 0004 4d515454 82 02 003c 0001 61'],
    ['0x80', '10 0d 0004 4d515454 80 02 003c 0001 61'],
    ['0x86', '10 0d 0004 4d515454 86 02 003c 0001 61'],
    ['0xff', '10 0d 0004 4d515454 ff 02 003c 0001 61'],
    ['0x83 under the name MQTT', '10 0d 0004 4d515454 83 02 003c 0001 61'],
    ['0x84 under the name MQIsdp', '10 0f 0006 4d5149736470 84 02 003c 0001 61'],
    ['0xc4 (another high bit)', '10 0d 0004 4d515454 c4 02 003c 0001 61'],
  ])('rejects level %s with PROTOCOL_VERSION_UNSUPPORTED at the level byte', (_what, bytes) => {
    const b = hex(bytes);
    const levelAt = 4 + b[3]; // after the fixed header and the name
    for (const err of [errorOf(() => decode(b)), errorOf(() => new PacketParser().push(b, () => {}))]) {
      expect(err.code).toBe('PROTOCOL_VERSION_UNSUPPORTED');
      expect(err.reasonCode).toBe(0x84);
      expect(err.offset).toBe(levelAt);
    }
  });

  it('rejects a truncated bridge CONNECT as truncated, not as a version error', () => {
    const b = hex(V311_BRIDGE);
    const cut = b.slice(0, 9);
    cut[1] = 7;
    const err = errorOf(() => decode(cut));
    expect(err.code).not.toBe('PROTOCOL_VERSION_UNSUPPORTED');
    expect(err.reasonCode).toBe(0x81);
  });
});
