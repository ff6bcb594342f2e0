/**
 * Decoding of one whole packet held in a buffer. The reader's cursor lives in module state
 * (decoding is synchronous and never calls out), so no reader object or closure is made per
 * packet. Binary fields and payloads are views into the buffer, not copies.
 */
import { MqttError } from './errors.ts';
import type {
  ConnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  QoS,
  Subscription,
  Will,
} from './packets.ts';
import { readProperties, setPairBudget, WILL } from './properties.ts';
import { isReasonCodeAllowed } from './reason-codes.ts';
import { readString, sawSlashes, sawWildcard } from './string-cache.ts';
import { isShared, topicFilterProblem } from './topic.ts';

const PUBACK_TYPES = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const;

const NONE = new Uint8Array(0);
let B: Uint8Array = NONE;
let P = 0;
let E = 0;
let S = 0;
/** The packet's limit on topic name levels (DecodeLimits.maxTopicLevels). */
let LEVELS = 0;

/** What a decoded packet may hold beyond the spec's rules (the PacketParser's options). */
export interface DecodeLimits {
  readonly maxUserProperties: number;
  readonly maxTopicLevels: number;
}

/**
 * Drops the module's hold on the last input: a packet assembled in a buffer of its own (up to
 * 256 MB) must not stay alive through the cursor once the packet is gone or refused.
 */
export function releaseInput(): void {
  B = NONE;
}

function fail(code: string, message: string, reason: number = 0x81): never {
  throw new MqttError(code, message, reason, P - S);
}

function truncated(): never {
  return fail('TRUNCATED', '');
}

function u8(): number {
  if (P >= E) truncated();
  return B[P++];
}

function u16(): number {
  if (P + 2 > E) truncated();
  const v = (B[P] << 8) | B[P + 1];
  P += 2;
  return v;
}

function packetId(): number {
  const id = u16();
  if (id === 0) {
    P -= 2;
    fail('PACKET_ID_INVALID', '');
  }
  return id;
}

/**
 * A string; with `name` set, a topic name: a wildcard in it (0x90), or more levels than the
 * limit (0x90: well formed, but not accepted here), is an error.
 */
function str(name?: boolean): string {
  const n = u16();
  if (P + n > E) truncated();
  const s = readString(B, P, P + n, name);
  if (s === null) fail('UTF8_INVALID', '');
  if (s === undefined) {
    while (B[P] !== 0x23 && B[P] !== 0x2b) P++;
    fail('TOPIC_NAME_INVALID', '', 0x90);
  }
  if (name && sawSlashes >= LEVELS) fail('TOPIC_TOO_DEEP', `topic name has over ${LEVELS} levels`, 0x90);
  P += n;
  return s;
}

function bin(): Uint8Array {
  const n = u16();
  if (P + n > E) truncated();
  const v = B.subarray(P, P + n);
  P += n;
  return v;
}

/** Reads a property length then the properties it covers; undefined when there are none. */
function props(mask: number): Properties | undefined {
  let n = 0;
  let mul = 1;
  for (let i = 0; ; i++) {
    if (i === 4) fail('VARINT_INVALID', '');
    const b = u8();
    if (b === 0 && i > 0) fail('VARINT_NOT_MINIMAL', '');
    n += (b & 0x7f) * mul;
    mul *= 128;
    if (b < 0x80) break;
  }
  if (n === 0) return undefined;
  if (P + n > E) truncated();
  const start = P;
  P += n;
  return readProperties(B, start, P, S, mask);
}

/**
 * A topic filter. Its bytes are checked where wildcards sit (UTF-8 continuation bytes never
 * equal '/', '+' or '#'); the string rules run only on a bad placement (for the message) or a
 * shared subscription.
 */
function filter(): string {
  const at = P;
  const f = str();
  const start = at + 2;
  let bad = P === start;
  for (let i = start; sawWildcard && i < P; i++) {
    const c = B[i];
    if (
      (c === 0x2b || c === 0x23) &&
      ((i > start && B[i - 1] !== 0x2f) || (i + 1 < P && (c === 0x23 || B[i + 1] !== 0x2f)))
    )
      bad = true;
  }
  const problem = bad || isShared(f) ? topicFilterProblem(f) : null;
  if (problem !== null) {
    P = at;
    fail('TOPIC_FILTER_INVALID', problem, 0x8f);
  }
  return f;
}

/** Adds `properties` only when the packet has some: no key at all otherwise. */
function withProps<T extends Packet>(packet: T, properties: Properties | undefined): T {
  if (properties !== undefined) (packet as { properties?: Properties }).properties = properties;
  return packet;
}

function end(): void {
  if (P !== E) fail('TRAILING_BYTES', '');
}

function reasonCode(typeCode: number): number {
  const rc = u8();
  if (!isReasonCodeAllowed(typeCode, rc)) {
    P--;
    fail('REASON_CODE_INVALID', '', 0x82);
  }
  return rc;
}

/**
 * Throws unless the first byte of a fixed header is acceptable for `version`: a known type,
 * the reserved flag bits the spec demands, QoS 0..2, no DUP on QoS 0. Checked before any body
 * byte is buffered, so garbage fails at once.
 */
export function checkFirstByte(first: number, version: ProtocolVersion | undefined): void {
  const type = first >> 4;
  const flags = first & 0x0f;
  let code = '';
  if (type === 3) {
    const qos = (flags >> 1) & 3;
    if (qos === 3) code = 'QOS_INVALID';
    else if (qos === 0 && (flags & 8) !== 0) code = 'DUP_ON_QOS0';
  } else if (type === 0 || (type === 15 && version !== undefined && version < 5))
    code = 'PACKET_TYPE_INVALID';
  else if (flags !== (type === 6 || type === 8 || type === 10 ? 2 : 0)) code = 'FLAGS_INVALID';
  if (code) throw new MqttError(code, '', 0x81, 0);
}

/**
 * Decodes the packet in `buf[start, end)` whose body starts at `bodyStart` (after the fixed
 * header, which the caller parsed and checked with checkFirstByte).
 */
export function decodeBody(
  buf: Uint8Array,
  start: number,
  bodyStart: number,
  stop: number,
  version: ProtocolVersion | undefined,
  limits: DecodeLimits,
): Packet {
  B = buf;
  S = start;
  P = bodyStart;
  E = stop;
  LEVELS = limits.maxTopicLevels;
  setPairBudget(limits.maxUserProperties);
  const first = buf[start];
  const type = first >> 4;
  const v5 = version === 5;
  switch (type) {
    case 3: {
      const qos = ((first >> 1) & 3) as QoS;
      const topicAt = P;
      const topic = str(true);
      let id = 0;
      if (qos > 0) id = packetId();
      let properties: Properties | undefined;
      if (v5) properties = props(1 << 3);
      if (topic.length === 0 && properties?.topicAlias === undefined) {
        P = topicAt;
        fail('TOPIC_NAME_INVALID', '', v5 ? 0x82 : 0x90);
      }
      const packet: PublishPacket = {
        type: 'publish',
        topic,
        payload: B.subarray(P, E),
        qos,
        retain: (first & 1) === 1,
        dup: (first & 8) === 8,
      };
      if (qos > 0) packet.packetId = id;
      if (properties !== undefined) packet.properties = properties;
      return packet;
    }
    case 4:
    case 5:
    case 6:
    case 7: {
      const id = packetId();
      const t = PUBACK_TYPES[type - 4];
      if (!v5) {
        end();
        return { type: t, packetId: id };
      }
      // MQTT 5 short forms: length 2 means success and no properties, 3 means no properties
      const rc = P < E ? reasonCode(type) : 0;
      const properties = P < E ? props(1 << type) : undefined;
      end();
      return withProps({ type: t, packetId: id, reasonCode: rc }, properties);
    }
    case 1:
      return connect();
    case 2: {
      const flags = u8();
      if (flags > 1) {
        P--;
        fail('FLAGS_INVALID', '');
      }
      let rc: number;
      if (v5) rc = reasonCode(2);
      else {
        rc = u8();
        if (rc > 5) {
          P--;
          fail('REASON_CODE_INVALID', '');
        }
      }
      if (flags === 1 && rc !== 0) fail('SESSION_PRESENT_INVALID', '');
      // Accept the 2-byte short form some MQTT 5 servers send when there are no properties
      const properties = v5 && P < E ? props(1 << 2) : undefined;
      end();
      return withProps({ type: 'connack', sessionPresent: flags === 1, reasonCode: rc }, properties);
    }
    case 8: {
      const id = packetId();
      const properties = v5 ? props(1 << 8) : undefined;
      const subscriptions: Subscription[] = [];
      while (P < E) {
        const topicFilter = filter();
        const opts = u8();
        const qos = opts & 3;
        if (qos === 3 || (opts & (v5 ? 0xc0 : 0xfc)) !== 0 || (opts & 0x30) === 0x30) {
          P--;
          fail('SUBSCRIPTION_OPTIONS_INVALID', '');
        }
        if (v5) {
          const noLocal = (opts & 4) !== 0;
          if (noLocal && isShared(topicFilter)) {
            P--;
            fail('SUBSCRIPTION_OPTIONS_INVALID', '', 0x82);
          }
          subscriptions.push({
            topicFilter,
            qos: qos as QoS,
            noLocal,
            retainAsPublished: (opts & 8) !== 0,
            retainHandling: ((opts >> 4) & 3) as 0 | 1 | 2,
          });
        } else subscriptions.push({ topicFilter, qos: qos as QoS });
      }
      if (subscriptions.length === 0) fail('SUBSCRIBE_EMPTY', '', 0x82);
      return withProps({ type: 'subscribe', packetId: id, subscriptions }, properties);
    }
    case 9:
    case 11: {
      const id = packetId();
      if (type === 11 && !v5) {
        end();
        return { type: 'unsuback', packetId: id };
      }
      const properties = v5 ? props(1 << type) : undefined;
      const reasonCodes: number[] = [];
      while (P < E) {
        if (v5) reasonCodes.push(reasonCode(type));
        else {
          const c = B[P];
          if (c > 2 && c !== 0x80) fail('REASON_CODE_INVALID', '');
          reasonCodes.push(c);
          P++;
        }
      }
      if (reasonCodes.length === 0) fail('ACK_EMPTY', '', 0x82);
      const t = type === 9 ? 'suback' : 'unsuback';
      return withProps({ type: t, packetId: id, reasonCodes }, properties);
    }
    case 10: {
      const id = packetId();
      const properties = v5 ? props(1 << 10) : undefined;
      const topicFilters: string[] = [];
      while (P < E) {
        topicFilters.push(filter());
      }
      if (topicFilters.length === 0) fail('UNSUBSCRIBE_EMPTY', '', 0x82);
      return withProps({ type: 'unsubscribe', packetId: id, topicFilters }, properties);
    }
    case 12:
    case 13:
      end();
      return { type: type === 12 ? 'pingreq' : 'pingresp' };
    default: {
      // 14 DISCONNECT, 15 AUTH (checkFirstByte let AUTH through only for MQTT 5 or unknown)
      if (!v5) {
        if (type === 15) fail('PACKET_TYPE_INVALID', '');
        end();
        return { type: 'disconnect' };
      }
      const rc = P < E ? reasonCode(type) : 0;
      const properties = P < E ? props(1 << type) : undefined;
      end();
      const t = type === 14 ? 'disconnect' : 'auth';
      return withProps({ type: t, reasonCode: rc }, properties);
    }
  }
}

function connect(): ConnectPacket {
  const at = P;
  const name = P + 2 <= E && B[P] === 0 && B[P + 1] <= 6 ? str() : '';
  if (name !== 'MQTT' && name !== 'MQIsdp') {
    P = at;
    fail('PROTOCOL_NAME_INVALID', '', 0x84);
  }
  const byte = u8();
  // Mosquitto's bridges (try_private) set the level's high bit: 0x83, 0x84; MQTT 5 has no such form
  const level = byte & 0x7f;
  if ((name === 'MQTT' ? level !== 4 && level !== 5 : level !== 3) || byte === 0x85) {
    P--;
    fail('PROTOCOL_VERSION_UNSUPPORTED', '', 0x84);
  }
  const version = level as ProtocolVersion;
  const flags = u8();
  const willFlag = (flags & 4) !== 0;
  const willQoS = (flags >> 3) & 3;
  if (
    (flags & 1) !== 0 ||
    willQoS === 3 ||
    (!willFlag && (flags & 0x38) !== 0) ||
    (version < 5 && (flags & 0xc0) === 0x40)
  ) {
    // reserved bit, will QoS 3, will QoS/retain without a will, 3.x password without user name
    P--;
    fail('CONNECT_FLAGS_INVALID', '');
  }
  const keepalive = u16();
  const properties = version === 5 ? props(1 << 1) : undefined;
  const clientId = str();
  const packet: ConnectPacket = {
    type: 'connect',
    protocolVersion: version,
    clientId,
    clean: (flags & 2) !== 0,
    keepalive,
  };
  if (willFlag) {
    const willProps = version === 5 ? props(WILL) : undefined;
    const at = P;
    const topic = str(true);
    if (topic.length === 0) {
      P = at;
      fail('TOPIC_NAME_INVALID', '', 0x90);
    }
    const will: Will = { topic, payload: bin(), qos: willQoS as QoS, retain: (flags & 0x20) !== 0 };
    if (willProps !== undefined) will.properties = willProps;
    packet.will = will;
  }
  if (byte > 0x80) packet.bridge = true;
  if ((flags & 0x80) !== 0) packet.username = str();
  if ((flags & 0x40) !== 0) packet.password = bin();
  if (properties !== undefined) packet.properties = properties;
  end();
  return packet;
}
