/**
 * Packet encoding. Every packet is measured (and validated) first, then written once into a
 * buffer that is known to be large enough: a bad packet throws before a byte is written.
 */
import { MqttError } from './errors.ts';
import type { Packet, Properties, ProtocolVersion, Subscription } from './packets.ts';
import { propertiesLength, varintSize, WILL, writeProperties, writeVarint } from './properties.ts';
import { isReasonCodeAllowed, ReasonCode } from './reason-codes.ts';
import { utf8Write } from './utf8.ts';
import { stringLength, topicLength } from './wire.ts';

/** Largest remaining length a 4-byte variable byte integer holds. */
export const MAX_REMAINING_LENGTH = 268_435_455;

const TYPE_CODE: Record<string, number> = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15,
};

function invalid(code: string, message: string, reason: number = ReasonCode.ProtocolError): never {
  throw new MqttError(code, message, reason);
}

function checkPacketId(id: unknown): void {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1 || id > 0xffff)
    invalid('PACKET_ID_INVALID', `packet id must be an integer in 1..65535, is ${String(id)}`);
}

function checkQoS(qos: unknown, what: string): void {
  if (qos !== 0 && qos !== 1 && qos !== 2) invalid('QOS_INVALID', `${what} QoS must be 0, 1 or 2`, 0x81);
}

function checkReasonCode(typeCode: number, code: number): void {
  if (!isReasonCodeAllowed(typeCode, code))
    invalid('REASON_CODE_INVALID', `reason code ${code} is not defined for packet type ${typeCode}`);
}

function checkBinary(b: unknown, what: string): number {
  if (!(b instanceof Uint8Array)) invalid('BINARY_INVALID', `${what} must be a Uint8Array`, 0x81);
  if (b.length > 0xffff) invalid('BINARY_TOO_LONG', `${what} is ${b.length} bytes, over 65,535`, 0x81);
  return b.length;
}

function checkTopicName(topic: string, allowEmpty: boolean): number {
  return allowEmpty && topic === '' ? 0 : topicLength(topic, false);
}

function writeString(buf: Uint8Array, pos: number, s: string): number {
  const end = utf8Write(buf, pos + 2, s);
  const n = end - pos - 2;
  buf[pos] = n >> 8;
  buf[pos + 1] = n;
  return end;
}

function writeBinary(buf: Uint8Array, pos: number, b: Uint8Array): number {
  buf[pos] = b.length >> 8;
  buf[pos + 1] = b.length;
  buf.set(b, pos + 2);
  return pos + 2 + b.length;
}

function propsBlock(props: Properties | undefined, mask: number): number {
  return props === undefined ? 0 : propertiesLength(props, mask);
}

/**
 * Encodes packets into one growable buffer it owns. `encode` returns a view of that buffer,
 * valid until the next call: copy it (or write it out) before encoding again.
 */
export class PacketWriter {
  private buf: Uint8Array;
  // Measured by `measure`, used by `write` for the same packet.
  private propLen = 0;
  private willPropLen = 0;
  private version: ProtocolVersion = 4;
  private remaining = 0;

  constructor(initialCapacity = 512) {
    this.buf = new Uint8Array(initialCapacity > 0 ? initialCapacity : 512);
  }

  /** Encodes `packet` for protocol `version` (CONNECT uses its own protocolVersion). */
  encode(packet: Packet, version: ProtocolVersion = 4): Uint8Array {
    const total = this.measure(packet, version);
    if (total > this.buf.length) this.buf = new Uint8Array(Math.max(total, this.buf.length * 2));
    this.write(packet, this.buf, 0);
    return this.buf.subarray(0, total);
  }

  /** Total bytes `packet` takes; validates it exactly as encode would. */
  encodedLength(packet: Packet, version: ProtocolVersion = 4): number {
    return this.measure(packet, version);
  }

  /** Writes `packet` at `target[offset]`; returns the offset after it. Throws if it does not fit. */
  encodeInto(packet: Packet, version: ProtocolVersion, target: Uint8Array, offset: number): number {
    const total = this.measure(packet, version);
    if (!(offset >= 0) || offset + total > target.length)
      throw new MqttError(
        'BUFFER_TOO_SMALL',
        `packet needs ${total} bytes at offset ${offset}, target holds ${target.length}`,
        ReasonCode.ImplementationSpecificError,
      );
    this.write(packet, target, offset);
    return offset + total;
  }

  /** Validates `packet` and returns its total size; remembers what `write` needs. */
  private measure(packet: Packet, version: ProtocolVersion): number {
    if (version !== 3 && version !== 4 && version !== 5)
      invalid('PROTOCOL_VERSION_INVALID', `protocol version must be 3, 4 or 5, is ${String(version)}`, 0x84);
    const v5 = version === 5;
    this.version = version;
    this.propLen = 0;
    let len: number;
    switch (packet.type) {
      case 'connect': {
        const pv = packet.protocolVersion;
        if (pv !== 3 && pv !== 4 && pv !== 5)
          invalid('PROTOCOL_VERSION_INVALID', `protocol version must be 3, 4 or 5, is ${String(pv)}`, 0x84);
        this.version = pv;
        const c5 = pv === 5;
        const ka = packet.keepalive;
        if (typeof ka !== 'number' || !Number.isInteger(ka) || ka < 0 || ka > 0xffff)
          invalid('KEEPALIVE_INVALID', 'keepalive must be an integer in 0..65535');
        len = (pv === 3 ? 8 : 6) + 6 + stringLength(packet.clientId, 'client id');
        if (c5) {
          this.propLen = propsBlock(packet.properties, 1 << 1);
          len += varintSize(this.propLen) + this.propLen;
        }
        const will = packet.will;
        if (will !== undefined) {
          checkQoS(will.qos, 'will');
          len += 2 + checkTopicName(will.topic, false) + 2 + checkBinary(will.payload, 'will payload');
          if (c5) {
            this.willPropLen = propsBlock(will.properties, WILL);
            len += varintSize(this.willPropLen) + this.willPropLen;
          }
        }
        if (packet.username !== undefined) len += 2 + stringLength(packet.username, 'username');
        if (packet.password !== undefined) {
          if (packet.username === undefined && !c5)
            invalid('PASSWORD_WITHOUT_USERNAME', 'MQTT 3.1.1 allows a password only with a username', 0x81);
          len += 2 + checkBinary(packet.password, 'password');
        }
        break;
      }
      case 'connack': {
        const rc = packet.reasonCode;
        if (v5) {
          checkReasonCode(2, rc);
          this.propLen = propsBlock(packet.properties, 1 << 2);
          len = 2 + varintSize(this.propLen) + this.propLen;
        } else {
          if (!Number.isInteger(rc) || rc < 0 || rc > 5)
            invalid('REASON_CODE_INVALID', `MQTT 3.1.1 CONNACK return code must be 0..5, is ${rc}`);
          len = 2;
        }
        if (packet.sessionPresent && rc !== 0)
          invalid('SESSION_PRESENT_INVALID', 'session present must be false when the connection is refused');
        break;
      }
      case 'publish': {
        checkQoS(packet.qos, 'publish');
        if (packet.dup && packet.qos === 0) invalid('DUP_ON_QOS0', 'DUP must be false for QoS 0', 0x81);
        if (!(packet.payload instanceof Uint8Array))
          invalid('PAYLOAD_INVALID', 'payload must be a Uint8Array', 0x81);
        const props = v5 ? packet.properties : undefined;
        len = 2 + checkTopicName(packet.topic, v5 && props?.topicAlias !== undefined) + packet.payload.length;
        if (packet.qos > 0) {
          checkPacketId(packet.packetId);
          len += 2;
        }
        if (v5) {
          this.propLen = propsBlock(props, 1 << 3);
          len += varintSize(this.propLen) + this.propLen;
        }
        break;
      }
      case 'puback':
      case 'pubrec':
      case 'pubrel':
      case 'pubcomp': {
        checkPacketId(packet.packetId);
        len = 2;
        if (v5) {
          const rc = packet.reasonCode ?? 0;
          checkReasonCode(TYPE_CODE[packet.type], rc);
          this.propLen = propsBlock(packet.properties, 1 << TYPE_CODE[packet.type]);
          if (this.propLen > 0) len += 1 + varintSize(this.propLen) + this.propLen;
          else if (rc !== 0) len += 1;
        }
        break;
      }
      case 'subscribe': {
        checkPacketId(packet.packetId);
        const subs = packet.subscriptions;
        if (!Array.isArray(subs) || subs.length === 0)
          invalid('SUBSCRIBE_EMPTY', 'SUBSCRIBE needs at least one subscription');
        len = 2;
        for (let i = 0; i < subs.length; i++) {
          const s = subs[i];
          checkQoS(s.qos, 'subscription');
          len += 3 + topicLength(s.topicFilter, true);
          if (v5) {
            const rh = s.retainHandling ?? 0;
            if (rh !== 0 && rh !== 1 && rh !== 2)
              invalid('SUBSCRIPTION_OPTIONS_INVALID', 'retain handling must be 0, 1 or 2');
            if (s.noLocal && s.topicFilter.startsWith('$share/'))
              invalid('SUBSCRIPTION_OPTIONS_INVALID', 'no local is not allowed on a shared subscription');
          }
        }
        if (v5) {
          this.propLen = propsBlock(packet.properties, 1 << 8);
          len += varintSize(this.propLen) + this.propLen;
        }
        break;
      }
      case 'suback': {
        checkPacketId(packet.packetId);
        const codes = packet.reasonCodes;
        if (!Array.isArray(codes) || codes.length === 0)
          invalid('SUBACK_EMPTY', 'SUBACK needs one reason code per subscription');
        for (let i = 0; i < codes.length; i++) {
          const c = codes[i];
          if (v5) checkReasonCode(9, c);
          else if (!Number.isInteger(c) || c < 0 || c > 0xff || (c > 2 && c < 0x80))
            invalid('REASON_CODE_INVALID', `MQTT 3.1.1 SUBACK return code must be 0, 1, 2 or >= 0x80`);
        }
        len = 2 + codes.length;
        if (v5) {
          this.propLen = propsBlock(packet.properties, 1 << 9);
          len += varintSize(this.propLen) + this.propLen;
        }
        break;
      }
      case 'unsubscribe': {
        checkPacketId(packet.packetId);
        const filters = packet.topicFilters;
        if (!Array.isArray(filters) || filters.length === 0)
          invalid('UNSUBSCRIBE_EMPTY', 'UNSUBSCRIBE needs at least one topic filter');
        len = 2;
        for (let i = 0; i < filters.length; i++) len += 2 + topicLength(filters[i], true);
        if (v5) {
          this.propLen = propsBlock(packet.properties, 1 << 10);
          len += varintSize(this.propLen) + this.propLen;
        }
        break;
      }
      case 'unsuback': {
        checkPacketId(packet.packetId);
        len = 2;
        if (v5) {
          const codes = packet.reasonCodes;
          if (!Array.isArray(codes) || codes.length === 0)
            invalid('UNSUBACK_EMPTY', 'MQTT 5 UNSUBACK needs one reason code per topic filter');
          for (let i = 0; i < codes.length; i++) checkReasonCode(11, codes[i]);
          this.propLen = propsBlock(packet.properties, 1 << 11);
          len += varintSize(this.propLen) + this.propLen + codes.length;
        }
        break;
      }
      case 'pingreq':
      case 'pingresp':
        len = 0;
        break;
      case 'disconnect':
      case 'auth': {
        const tc = packet.type === 'auth' ? 15 : 14;
        if (tc === 15 && !v5) invalid('AUTH_NEEDS_MQTT5', 'AUTH exists only in MQTT 5');
        len = 0;
        if (v5) {
          const rc = packet.reasonCode ?? 0;
          checkReasonCode(tc, rc);
          this.propLen = propsBlock(packet.properties, 1 << tc);
          if (this.propLen > 0) len = 1 + varintSize(this.propLen) + this.propLen;
          else if (rc !== 0) len = 1;
        }
        break;
      }
      default:
        invalid('PACKET_TYPE_INVALID', `unknown packet type ${String((packet as { type: unknown }).type)}`);
    }
    if (len > MAX_REMAINING_LENGTH)
      invalid('PACKET_TOO_LARGE', `remaining length ${len} is over 268,435,455`, ReasonCode.PacketTooLarge);
    this.remaining = len;
    return 1 + varintSize(len) + len;
  }

  /** Writes the packet `measure` just validated, from `pos`. */
  private write(packet: Packet, buf: Uint8Array, pos: number): void {
    const v5 = this.version === 5;
    const propLen = this.propLen;
    const remaining = this.remaining;
    switch (packet.type) {
      case 'connect': {
        buf[pos] = 0x10;
        pos = writeVarint(buf, pos + 1, remaining);
        if (this.version === 3) {
          buf[pos++] = 0;
          buf[pos++] = 6;
          buf[pos++] = 0x4d; // MQIsdp
          buf[pos++] = 0x51;
          buf[pos++] = 0x49;
          buf[pos++] = 0x73;
          buf[pos++] = 0x64;
          buf[pos++] = 0x70;
        } else {
          buf[pos++] = 0;
          buf[pos++] = 4;
          buf[pos++] = 0x4d; // MQTT
          buf[pos++] = 0x51;
          buf[pos++] = 0x54;
          buf[pos++] = 0x54;
        }
        buf[pos++] = this.version;
        const will = packet.will;
        let flags = packet.clean ? 0x02 : 0;
        if (will !== undefined) flags |= 0x04 | (will.qos << 3) | (will.retain ? 0x20 : 0);
        if (packet.password !== undefined) flags |= 0x40;
        if (packet.username !== undefined) flags |= 0x80;
        buf[pos++] = flags;
        buf[pos++] = packet.keepalive >> 8;
        buf[pos++] = packet.keepalive;
        if (v5) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        pos = writeString(buf, pos, packet.clientId);
        if (will !== undefined) {
          if (v5) pos = writePropsBlock(buf, pos, will.properties, this.willPropLen);
          pos = writeString(buf, pos, will.topic);
          pos = writeBinary(buf, pos, will.payload);
        }
        if (packet.username !== undefined) pos = writeString(buf, pos, packet.username);
        if (packet.password !== undefined) pos = writeBinary(buf, pos, packet.password);
        break;
      }
      case 'connack':
        buf[pos] = 0x20;
        pos = writeVarint(buf, pos + 1, remaining);
        buf[pos++] = packet.sessionPresent ? 1 : 0;
        buf[pos++] = packet.reasonCode;
        if (v5) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        break;
      case 'publish': {
        const qos = packet.qos;
        buf[pos] = 0x30 | (packet.dup ? 8 : 0) | (qos << 1) | (packet.retain ? 1 : 0);
        pos = writeVarint(buf, pos + 1, remaining);
        pos = writeString(buf, pos, packet.topic);
        if (qos > 0) {
          const id = packet.packetId as number;
          buf[pos++] = id >> 8;
          buf[pos++] = id;
        }
        if (v5) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        const payload = packet.payload;
        const n = payload.length;
        if (n < 64) for (let k = 0; k < n; k++) buf[pos + k] = payload[k];
        else buf.set(payload, pos);
        pos += n;
        break;
      }
      case 'puback':
      case 'pubrec':
      case 'pubrel':
      case 'pubcomp': {
        const tc = TYPE_CODE[packet.type];
        buf[pos] = (tc << 4) | (tc === 6 ? 2 : 0);
        const rem = remaining;
        pos = writeVarint(buf, pos + 1, rem);
        buf[pos++] = packet.packetId >> 8;
        buf[pos++] = packet.packetId;
        if (rem > 2) buf[pos++] = packet.reasonCode ?? 0;
        if (rem > 3) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        break;
      }
      case 'subscribe': {
        buf[pos] = 0x82;
        pos = writeVarint(buf, pos + 1, remaining);
        buf[pos++] = packet.packetId >> 8;
        buf[pos++] = packet.packetId;
        if (v5) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        const subs = packet.subscriptions;
        for (let i = 0; i < subs.length; i++) {
          const s: Subscription = subs[i];
          pos = writeString(buf, pos, s.topicFilter);
          let opts: number = s.qos;
          if (v5) {
            if (s.noLocal) opts |= 4;
            if (s.retainAsPublished) opts |= 8;
            opts |= (s.retainHandling ?? 0) << 4;
          }
          buf[pos++] = opts;
        }
        break;
      }
      case 'suback': {
        buf[pos] = 0x90;
        pos = writeVarint(buf, pos + 1, remaining);
        buf[pos++] = packet.packetId >> 8;
        buf[pos++] = packet.packetId;
        if (v5) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        const codes = packet.reasonCodes;
        for (let i = 0; i < codes.length; i++) buf[pos++] = codes[i];
        break;
      }
      case 'unsubscribe': {
        buf[pos] = 0xa2;
        pos = writeVarint(buf, pos + 1, remaining);
        buf[pos++] = packet.packetId >> 8;
        buf[pos++] = packet.packetId;
        if (v5) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        const filters = packet.topicFilters;
        for (let i = 0; i < filters.length; i++) pos = writeString(buf, pos, filters[i]);
        break;
      }
      case 'unsuback': {
        buf[pos] = 0xb0;
        pos = writeVarint(buf, pos + 1, remaining);
        buf[pos++] = packet.packetId >> 8;
        buf[pos++] = packet.packetId;
        if (v5) {
          pos = writePropsBlock(buf, pos, packet.properties, propLen);
          const codes = packet.reasonCodes as number[];
          for (let i = 0; i < codes.length; i++) buf[pos++] = codes[i];
        }
        break;
      }
      case 'pingreq':
        buf[pos] = 0xc0;
        buf[pos + 1] = 0;
        break;
      case 'pingresp':
        buf[pos] = 0xd0;
        buf[pos + 1] = 0;
        break;
      case 'disconnect':
      case 'auth': {
        buf[pos] = packet.type === 'auth' ? 0xf0 : 0xe0;
        const rem = remaining;
        pos = writeVarint(buf, pos + 1, rem);
        if (rem > 0) buf[pos++] = packet.reasonCode ?? 0;
        if (rem > 1) pos = writePropsBlock(buf, pos, packet.properties, propLen);
        break;
      }
    }
  }
}

function writePropsBlock(buf: Uint8Array, pos: number, props: Properties | undefined, len: number): number {
  pos = writeVarint(buf, pos, len);
  return len > 0 ? writeProperties(buf, pos, props as Properties) : pos;
}

const shared = new PacketWriter(1024);

/** Encodes into a fresh array (a copy the caller owns). */
export function encode(packet: Packet, version: ProtocolVersion = 4): Uint8Array {
  return shared.encode(packet, version).slice();
}

/** Total bytes `packet` takes on the wire, after the same validation as encode. */
export function encodedLength(packet: Packet, version: ProtocolVersion = 4): number {
  return shared.encodedLength(packet, version);
}

/**
 * Writes `packet` into the caller's `target` at `offset` and returns the offset after it.
 * Throws MqttError (BUFFER_TOO_SMALL) without writing when it does not fit.
 */
export function encodeInto(
  packet: Packet,
  version: ProtocolVersion,
  target: Uint8Array,
  offset: number,
): number {
  return shared.encodeInto(packet, version, target, offset);
}
