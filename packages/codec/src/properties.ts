/**
 * MQTT 5 properties (spec 2.2.2.2): the one table of identifiers, wire types and the packets
 * each may appear in, with the measuring, writing and reading built on it.
 */
import { MqttError } from './errors.ts';
import type { Properties } from './packets.ts';
import { readString } from './string-cache.ts';
import { topicNameProblem } from './topic.ts';
import { utf8Write } from './utf8.ts';
import { stringLength } from './wire.ts';

/** Bit for the Will Properties of CONNECT; packet type codes 1..15 use their own bit. */
export const WILL = 1;
const CONNECT = 1 << 1;
const CONNACK = 1 << 2;
const PUBLISH = 1 << 3;
const PUBACK = 1 << 4;
const PUBREC = 1 << 5;
const PUBREL = 1 << 6;
const PUBCOMP = 1 << 7;
const SUBSCRIBE = 1 << 8;
const SUBACK = 1 << 9;
const UNSUBACK = 1 << 11;
const DISCONNECT = 1 << 14;
const AUTH = 1 << 15;

// wire types
const BOOL = 0;
const BYTE = 1;
const U16 = 2;
const U32 = 3;
const VARINT = 4;
const STRING = 5;
const BINARY = 6;
const PAIR = 7;

type PropertyName = keyof Properties;

const NAME: Array<PropertyName | undefined> = [];
const TYPE: number[] = [];
const MASK: number[] = [];
const ID: Record<string, number> = {};

function def(id: number, name: PropertyName, type: number, mask: number): void {
  NAME[id] = name;
  TYPE[id] = type;
  MASK[id] = mask;
  ID[name] = id;
}

const ACKS = PUBACK | PUBREC | PUBREL | PUBCOMP | SUBACK | UNSUBACK;
def(0x01, 'payloadFormatIndicator', BOOL, PUBLISH | WILL);
def(0x02, 'messageExpiryInterval', U32, PUBLISH | WILL);
def(0x03, 'contentType', STRING, PUBLISH | WILL);
def(0x08, 'responseTopic', STRING, PUBLISH | WILL);
def(0x09, 'correlationData', BINARY, PUBLISH | WILL);
def(0x0b, 'subscriptionIdentifier', VARINT, PUBLISH | SUBSCRIBE);
def(0x11, 'sessionExpiryInterval', U32, CONNECT | CONNACK | DISCONNECT);
def(0x12, 'assignedClientIdentifier', STRING, CONNACK);
def(0x13, 'serverKeepAlive', U16, CONNACK);
def(0x15, 'authenticationMethod', STRING, CONNECT | CONNACK | AUTH);
def(0x16, 'authenticationData', BINARY, CONNECT | CONNACK | AUTH);
def(0x17, 'requestProblemInformation', BOOL, CONNECT);
def(0x18, 'willDelayInterval', U32, WILL);
def(0x19, 'requestResponseInformation', BOOL, CONNECT);
def(0x1a, 'responseInformation', STRING, CONNACK);
def(0x1c, 'serverReference', STRING, CONNACK | DISCONNECT);
def(0x1f, 'reasonString', STRING, CONNACK | ACKS | DISCONNECT | AUTH);
def(0x21, 'receiveMaximum', U16, CONNECT | CONNACK);
def(0x22, 'topicAliasMaximum', U16, CONNECT | CONNACK);
def(0x23, 'topicAlias', U16, PUBLISH);
def(0x24, 'maximumQoS', BYTE, CONNACK);
def(0x25, 'retainAvailable', BOOL, CONNACK);
def(0x26, 'userProperties', PAIR, ~0 & ~(1 << 12) & ~(1 << 13));
def(0x27, 'maximumPacketSize', U32, CONNECT | CONNACK);
def(0x28, 'wildcardSubscriptionAvailable', BOOL, CONNACK);
def(0x29, 'subscriptionIdentifiersAvailable', BOOL, CONNACK);
def(0x2a, 'sharedSubscriptionAvailable', BOOL, CONNACK);
// PUBLISH carries one identifier per matching subscription: a list in the model, same wire id.
ID.subscriptionIdentifiers = 0x0b;

const MAX_VARINT = 268_435_455;

/**
 * User properties the packet being decoded may still carry. Each costs two objects (about 72
 * bytes) for as little as 5 wire bytes, so their count, not the packet size, bounds the memory
 * a decoded packet takes beyond its bytes. The decoder sets it per packet (setPairBudget).
 */
let pairsLeft = 0;

export function setPairBudget(n: number): void {
  pairsLeft = n;
}

function fail(code: string, name: string, reason: number, at: number, base: number): never {
  throw new MqttError(code, name && `${code.toLowerCase().replace(/_/g, ' ')}: ${name}`, reason, at - base);
}

function encodeError(name: string): never {
  throw new MqttError('PROPERTY_INVALID', `property ${name}`, 0x82);
}

function rangeCheck(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || Math.floor(v) !== v || v < min || v > max) encodeError(name);
  return v;
}

export function varintSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}

export function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n > 0x7f) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

/**
 * Bytes the properties take on the wire, without their length prefix; validates every value
 * and that each property is allowed where `mask` says (a packet type bit, or WILL).
 */
export function propertiesLength(props: Properties | undefined, mask: number): number {
  if (props === undefined) return 0;
  let len = 0;
  const rec = props as Record<string, unknown>;
  for (const key in rec) {
    const v = rec[key];
    if (v === undefined) continue;
    const id = ID[key];
    if (typeof id !== 'number') encodeError(key);
    if ((MASK[id] & mask) === 0 || (key === 'subscriptionIdentifiers' && mask !== PUBLISH)) encodeError(key);
    switch (TYPE[id]) {
      case BOOL:
        if (typeof v !== 'boolean') encodeError(key);
        len += 2;
        break;
      case BYTE:
        rangeCheck(key, v, 0, 1);
        len += 2;
        break;
      case U16:
        rangeCheck(key, v, id === 0x23 || id === 0x21 ? 1 : 0, 0xffff);
        len += 3;
        break;
      case U32:
        rangeCheck(key, v, id === 0x27 ? 1 : 0, 0xffffffff);
        len += 5;
        break;
      case VARINT:
        if (key === 'subscriptionIdentifiers') {
          if (!Array.isArray(v)) encodeError(key);
          for (const n of v) len += 1 + varintSize(rangeCheck(key, n, 1, MAX_VARINT));
        } else {
          len += 1 + varintSize(rangeCheck(key, v, 1, MAX_VARINT));
        }
        break;
      case STRING:
        if (typeof v !== 'string') encodeError(key);
        if (id === 0x08) {
          const problem = topicNameProblem(v);
          if (problem !== null) encodeError(key);
        }
        len += 3 + stringLength(v, key);
        break;
      case BINARY:
        if (!(v instanceof Uint8Array)) encodeError(key);
        if (v.length > 0xffff) encodeError(key);
        len += 3 + v.length;
        break;
      default: {
        if (!Array.isArray(v)) encodeError(key);
        for (const pair of v as unknown[]) {
          if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'string')
            encodeError(key);
          len += 5 + stringLength(pair[0], key) + stringLength(pair[1], key);
        }
      }
    }
  }
  return len;
}

function writeString(buf: Uint8Array, pos: number, s: string): number {
  const end = utf8Write(buf, pos + 2, s);
  const n = end - pos - 2;
  buf[pos] = n >> 8;
  buf[pos + 1] = n;
  return end;
}

/** Writes properties measured (and validated) by propertiesLength; returns the end position. */
export function writeProperties(buf: Uint8Array, pos: number, props: Properties): number {
  const rec = props as Record<string, unknown>;
  for (const key in rec) {
    const v = rec[key];
    if (v === undefined) continue;
    const id = ID[key];
    if (id === 0x26) {
      for (const [k, val] of v as Array<[string, string]>) {
        buf[pos++] = 0x26;
        pos = writeString(buf, pos, k);
        pos = writeString(buf, pos, val);
      }
      continue;
    }
    if (key === 'subscriptionIdentifiers') {
      for (const n of v as number[]) {
        buf[pos++] = 0x0b;
        pos = writeVarint(buf, pos, n);
      }
      continue;
    }
    buf[pos++] = id;
    switch (TYPE[id]) {
      case BOOL:
        buf[pos++] = v ? 1 : 0;
        break;
      case BYTE:
        buf[pos++] = v as number;
        break;
      case U16:
        buf[pos++] = (v as number) >> 8;
        buf[pos++] = v as number;
        break;
      case U32: {
        const n = v as number;
        buf[pos++] = n >>> 24;
        buf[pos++] = n >>> 16;
        buf[pos++] = n >>> 8;
        buf[pos++] = n;
        break;
      }
      case VARINT:
        pos = writeVarint(buf, pos, v as number);
        break;
      case STRING:
        pos = writeString(buf, pos, v as string);
        break;
      default: {
        const b = v as Uint8Array;
        buf[pos++] = b.length >> 8;
        buf[pos++] = b.length;
        buf.set(b, pos);
        pos += b.length;
      }
    }
  }
  return pos;
}

/**
 * Reads the properties in `buf[start, end)` of a packet whose first byte is at `base` (for
 * error offsets), allowed where `mask` says. Views, not copies, for binary values.
 */
export function readProperties(
  buf: Uint8Array,
  start: number,
  end: number,
  base: number,
  mask: number,
): Properties {
  const props: Record<string, unknown> = {};
  let p = start;
  while (p < end) {
    const at = p;
    const id = buf[p++];
    const name = NAME[id];
    if (name === undefined) fail('PROPERTY_UNKNOWN', '', 0x81, at, base);
    if ((MASK[id] & mask) === 0) fail('PROPERTY_NOT_ALLOWED', name as string, 0x82, at, base);
    const type = TYPE[id];
    let v: unknown;
    switch (type) {
      case BOOL:
      case BYTE: {
        if (p >= end) fail('PROPERTY_TRUNCATED', name as string, 0x81, at, base);
        const b = buf[p++];
        if (b > 1) fail('PROPERTY_INVALID', name as string, 0x82, at, base);
        v = type === BOOL ? b === 1 : b;
        break;
      }
      case U16: {
        if (p + 2 > end) fail('PROPERTY_TRUNCATED', name as string, 0x81, at, base);
        const n = (buf[p] << 8) | buf[p + 1];
        p += 2;
        if (n === 0 && (id === 0x23 || id === 0x21))
          fail('PROPERTY_INVALID', name as string, id === 0x23 ? 0x94 : 0x82, at, base);
        v = n;
        break;
      }
      case U32: {
        if (p + 4 > end) fail('PROPERTY_TRUNCATED', name as string, 0x81, at, base);
        const n = ((buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3]) >>> 0;
        p += 4;
        if (n === 0 && id === 0x27) fail('PROPERTY_INVALID', name as string, 0x82, at, base);
        v = n;
        break;
      }
      case VARINT: {
        let n = 0;
        let mul = 1;
        for (let i = 0; ; i++) {
          if (p >= end || i === 4) fail('PROPERTY_TRUNCATED', name as string, 0x81, at, base);
          const b = buf[p++];
          n += (b & 0x7f) * mul;
          mul *= 128;
          if ((b & 0x80) === 0) {
            if (b === 0 && i > 0) fail('VARINT_NOT_MINIMAL', '', 0x81, at, base);
            break;
          }
        }
        if (n === 0) fail('PROPERTY_INVALID', '', 0x82, at, base);
        if (mask === PUBLISH) {
          const list = props.subscriptionIdentifiers as number[] | undefined;
          if (list === undefined) props.subscriptionIdentifiers = [n];
          else list.push(n);
          continue;
        }
        v = n;
        break;
      }
      case STRING:
      case BINARY:
      case PAIR: {
        // 0x95: the packet carries more than this receiver takes (it is not malformed)
        if (type === PAIR && --pairsLeft < 0) fail('USER_PROPERTIES_TOO_MANY', '', 0x95, at, base);
        if (p + 2 > end) fail('PROPERTY_TRUNCATED', name as string, 0x81, at, base);
        let n = (buf[p] << 8) | buf[p + 1];
        p += 2;
        if (p + n > end) fail('PROPERTY_TRUNCATED', name as string, 0x81, at, base);
        if (type === BINARY) {
          v = buf.subarray(p, p + n);
          p += n;
          break;
        }
        const s = readString(buf, p, p + n);
        if (s === null) fail('UTF8_INVALID', name as string, 0x81, p, base);
        p += n;
        if (type === STRING) {
          if (id === 0x08 && topicNameProblem(s as string) !== null)
            fail('TOPIC_NAME_INVALID', '', 0x82, at, base);
          v = s;
          break;
        }
        if (p + 2 > end) fail('PROPERTY_TRUNCATED', '', 0x81, at, base);
        n = (buf[p] << 8) | buf[p + 1];
        p += 2;
        if (p + n > end) fail('PROPERTY_TRUNCATED', '', 0x81, at, base);
        const value = readString(buf, p, p + n);
        if (value === null) fail('UTF8_INVALID', '', 0x81, p, base);
        p += n;
        const list = props.userProperties as Array<[string, string]> | undefined;
        if (list === undefined) props.userProperties = [[s as string, value as string]];
        else list.push([s as string, value as string]);
        continue;
      }
    }
    if (props[name] !== undefined) fail('PROPERTY_DUPLICATE', name as string, 0x82, at, base);
    props[name] = v;
  }
  return props as Properties;
}
