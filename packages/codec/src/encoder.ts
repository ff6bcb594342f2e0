/**
 * Packet encoding. Every packet is measured (and validated) first, then written once into a
 * buffer known to be large enough: a bad packet throws before a byte is written. The write
 * cursor and what measuring found live in module state: encoding is synchronous and never
 * calls out, and one-letter helpers keep the bundle small.
 */
import { MqttError } from './errors.ts';
import { type Packet, PacketTypeCode, type Properties, type ProtocolVersion } from './packets.ts';
import { propertiesLength, varintSize, WILL, writeProperties, writeVarint } from './properties.ts';
import { isReasonCodeAllowed } from './reason-codes.ts';
import { isShared } from './topic.ts';
import { utf8Write } from './utf8.ts';
import { nameBytes, stringLength, topicBytes } from './wire.ts';

/** Largest remaining length a 4-byte variable byte integer holds. */
export const MAX_REMAINING_LENGTH = 268_435_455;

const TYPE_CODE: Record<string, number> = PacketTypeCode;

// What measure() found, for write(): version, remaining length, property lengths.
let V: ProtocolVersion = 4;
let REM = 0;
let PL = 0;
let WPL = 0;
/** The PUBLISH topic's bytes, from the encoder's topic cache. */
let TB: Uint8Array = new Uint8Array(0);
const EMPTY = new Uint8Array(0);
// The write cursor.
let B: Uint8Array = new Uint8Array(0);
let P = 0;

function bad(code: string, message: string, reason: number = 0x82): never {
  throw new MqttError(code, message, reason);
}

function isInt(n: unknown, min: number, max: number): boolean {
  // Math.floor, not Number.isInteger (ES2015): with the bounds it refuses the same values
  return typeof n === 'number' && Math.floor(n) === n && n >= min && n <= max;
}

function id(n: unknown): void {
  if (!isInt(n, 1, 0xffff)) bad('PACKET_ID_INVALID', '');
}

function qos(q: unknown): void {
  if (q !== 0 && q !== 1 && q !== 2) bad('QOS_INVALID', '', 0x81);
}

function rc(type: number, code: number): void {
  if (!isReasonCodeAllowed(type, code)) bad('REASON_CODE_INVALID', '');
}

function binLength(b: unknown, what: string): number {
  if (!(b instanceof Uint8Array)) bad('BINARY_INVALID', what, 0x81);
  if (b.length > 0xffff) bad('BINARY_TOO_LONG', what, 0x81);
  return 2 + b.length;
}

/** Length of a property block with its own length prefix; remembers the bare length in PL. */
function propBlock(props: Properties | undefined, mask: number): number {
  PL = props === undefined ? 0 : propertiesLength(props, mask);
  return varintSize(PL) + PL;
}

/** MQTT 5 optional reason code and properties (acks, DISCONNECT, AUTH): the shortest form. */
function tail(type: number, code: number | undefined, props: Properties | undefined): number {
  rc(type, code ?? 0);
  PL = props === undefined ? 0 : propertiesLength(props, 1 << type);
  return PL > 0 ? 1 + varintSize(PL) + PL : code ? 1 : 0;
}

/** Validates `p` for version `v` and returns its total size. */
function measure(p: Packet, v: ProtocolVersion): number {
  if (v !== 3 && v !== 4 && v !== 5) bad('PROTOCOL_VERSION_INVALID', '', 0x84);
  // the packet type code, looked up only where needed (a keyed lookup is slow on the hot path)
  const t = p.type === 'publish' ? 3 : TYPE_CODE[p.type];
  if (typeof t !== 'number') bad('PACKET_TYPE_INVALID', '');
  V = v;
  PL = 0;
  const v5 = v === 5;
  let n = 0;
  switch (p.type) {
    case 'connect': {
      const pv = p.protocolVersion;
      if ((pv !== 3 && pv !== 4 && pv !== 5) || (p.bridge && pv === 5))
        bad('PROTOCOL_VERSION_INVALID', '', 0x84);
      V = pv;
      if (!isInt(p.keepalive, 0, 0xffff)) bad('KEEPALIVE_INVALID', '');
      n = (pv === 3 ? 14 : 12) + stringLength(p.clientId, 'client id');
      const w = p.will;
      if (w !== undefined) {
        qos(w.qos);
        n += 2 + topicBytes(w.topic, false).length + binLength(w.payload, 'will payload');
        if (pv === 5) {
          n += propBlock(w.properties, WILL);
          WPL = PL;
        }
      }
      if (pv === 5) n += propBlock(p.properties, 2);
      if (p.username !== undefined) n += 2 + stringLength(p.username, 'username');
      if (p.password !== undefined) {
        if (p.username === undefined && pv < 5) bad('PASSWORD_WITHOUT_USERNAME', '', 0x81);
        n += binLength(p.password, 'password');
      }
      break;
    }
    case 'connack':
      if (v5) rc(2, p.reasonCode);
      else if (!isInt(p.reasonCode, 0, 5)) bad('REASON_CODE_INVALID', '');
      if (p.sessionPresent && p.reasonCode !== 0) bad('SESSION_PRESENT_INVALID', '');
      n = v5 ? 2 + propBlock(p.properties, 4) : 2;
      break;
    case 'publish': {
      qos(p.qos);
      if (p.dup && p.qos === 0) bad('DUP_ON_QOS0', '', 0x81);
      if (!(p.payload instanceof Uint8Array)) bad('PAYLOAD_INVALID', '', 0x81);
      const alias = v5 && p.properties?.topicAlias !== undefined;
      TB = alias && p.topic === '' ? EMPTY : nameBytes(p.topic);
      n = 2 + TB.length + p.payload.length;
      if (p.qos > 0) {
        id(p.packetId);
        n += 2;
      }
      if (v5) n += propBlock(p.properties, 8);
      break;
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      id(p.packetId);
      n = v5 ? 2 + tail(t, p.reasonCode, p.properties) : 2;
      break;
    case 'disconnect':
    case 'auth':
      if (t === 15 && !v5) bad('AUTH_NEEDS_MQTT5', '');
      n = v5 ? tail(t, p.reasonCode, p.properties) : 0;
      break;
    case 'subscribe':
    case 'unsubscribe': {
      id(p.packetId);
      const sub = p.type === 'subscribe';
      const list: unknown[] = sub ? p.subscriptions : p.topicFilters;
      if (!Array.isArray(list) || list.length === 0) bad(sub ? 'SUBSCRIBE_EMPTY' : 'UNSUBSCRIBE_EMPTY', '');
      n = v5 ? 2 + propBlock(p.properties, 1 << t) : 2;
      if (p.type === 'unsubscribe') {
        for (const f of p.topicFilters) n += 2 + topicBytes(f, true).length;
        break;
      }
      for (const s of p.subscriptions) {
        qos(s.qos);
        n += 3 + topicBytes(s.topicFilter, true).length;
        const rh = s.retainHandling ?? 0;
        if (v5 && (!isInt(rh, 0, 2) || (s.noLocal && isShared(s.topicFilter))))
          bad('SUBSCRIPTION_OPTIONS_INVALID', '');
      }
      break;
    }
    case 'suback':
    case 'unsuback': {
      id(p.packetId);
      n = 2;
      if (!v5 && t === 11) break;
      const codes = p.reasonCodes;
      if (!Array.isArray(codes) || codes.length === 0) bad(t === 9 ? 'SUBACK_EMPTY' : 'UNSUBACK_EMPTY', '');
      // 3.1.1 SUBACK: 0, 1, 2, or a failure (any code from 0x80 is written as 0x80)
      for (const c of codes)
        if (v5 ? !isReasonCodeAllowed(t, c) : !isInt(c, 0, 255) || (c > 2 && c < 0x80))
          bad('REASON_CODE_INVALID', '');
      n += codes.length + (v5 ? propBlock(p.properties, 1 << t) : 0);
      break;
    }
  }
  if (n > MAX_REMAINING_LENGTH) bad('PACKET_TOO_LARGE', '', 0x95);
  REM = n;
  return 1 + varintSize(n) + n;
}

function u16(n: number): void {
  B[P++] = n >> 8;
  B[P++] = n;
}

function str(s: string): void {
  const end = utf8Write(B, P + 2, s);
  u16(end - P - 2);
  P = end;
}

function bytes(b: Uint8Array, prefix: boolean): void {
  const n = b.length;
  if (prefix) u16(n);
  if (n < 64) for (let k = 0; k < n; k++) B[P + k] = b[k];
  else B.set(b, P);
  P += n;
}

function props(p: Properties | undefined, len: number): void {
  P = writeVarint(B, P, len);
  if (len > 0) P = writeProperties(B, P, p as Properties);
}

/** Writes the packet measure() just validated, at `buf[pos]`. */
function write(p: Packet, buf: Uint8Array, pos: number): void {
  B = buf;
  P = pos;
  const v5 = V === 5;
  if (p.type === 'publish') {
    // the hot path, with the cursor in a local
    let pos = P;
    buf[pos++] = 0x30 | (p.dup ? 8 : 0) | (p.qos << 1) | (p.retain ? 1 : 0);
    pos = writeVarint(buf, pos, REM);
    const tb = TB;
    const tn = tb.length;
    buf[pos++] = tn >> 8;
    buf[pos++] = tn;
    for (let k = 0; k < tn; k++) buf[pos + k] = tb[k];
    pos += tn;
    if (p.qos > 0) {
      const id = p.packetId as number;
      buf[pos++] = id >> 8;
      buf[pos++] = id;
    }
    P = pos;
    if (v5) props(p.properties, PL);
    bytes(p.payload, false);
    return;
  }
  const t = TYPE_CODE[p.type];
  buf[P++] = (t << 4) | (t === 6 || t === 8 || t === 10 ? 2 : 0);
  P = writeVarint(buf, P, REM);
  switch (p.type) {
    case 'connect': {
      str(V === 3 ? 'MQIsdp' : 'MQTT');
      buf[P++] = p.bridge ? V | 0x80 : V;
      const w = p.will;
      buf[P++] =
        (p.clean ? 2 : 0) |
        (w ? 4 | (w.qos << 3) | (w.retain ? 0x20 : 0) : 0) |
        (p.password !== undefined ? 0x40 : 0) |
        (p.username !== undefined ? 0x80 : 0);
      u16(p.keepalive);
      if (V === 5) props(p.properties, PL);
      str(p.clientId);
      if (w) {
        if (V === 5) props(w.properties, WPL);
        str(w.topic);
        bytes(w.payload, true);
      }
      if (p.username !== undefined) str(p.username);
      if (p.password !== undefined) bytes(p.password, true);
      break;
    }
    case 'connack':
      buf[P++] = p.sessionPresent ? 1 : 0;
      buf[P++] = p.reasonCode;
      if (v5) props(p.properties, PL);
      break;
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      u16(p.packetId);
      if (REM > 2) buf[P++] = p.reasonCode ?? 0;
      if (REM > 3) props(p.properties, PL);
      break;
    case 'disconnect':
    case 'auth':
      if (REM > 0) buf[P++] = p.reasonCode ?? 0;
      if (REM > 1) props(p.properties, PL);
      break;
    case 'subscribe':
      u16(p.packetId);
      if (v5) props(p.properties, PL);
      for (const s of p.subscriptions) {
        str(s.topicFilter);
        buf[P++] = v5
          ? s.qos | (s.noLocal ? 4 : 0) | (s.retainAsPublished ? 8 : 0) | ((s.retainHandling ?? 0) << 4)
          : s.qos;
      }
      break;
    case 'unsubscribe':
      u16(p.packetId);
      if (v5) props(p.properties, PL);
      for (const f of p.topicFilters) str(f);
      break;
    case 'suback':
    case 'unsuback':
      u16(p.packetId);
      if (!v5 && t === 11) break;
      if (v5) props(p.properties, PL);
      for (const c of p.reasonCodes as number[]) buf[P++] = v5 || c < 0x80 ? c : 0x80;
      break;
  }
}

/**
 * Encodes packets into one growable buffer it owns. `encode` returns a view of that buffer,
 * valid until the next call: copy it (or write it out) before encoding again. The view object
 * itself may be handed out again by a later call (same buffer, new contents).
 */
export class PacketWriter {
  declare private buf: Uint8Array;
  declare private view: Uint8Array | null;

  constructor(initialCapacity = 512) {
    this.buf = new Uint8Array(initialCapacity > 0 ? initialCapacity : 512);
    this.view = null;
  }

  /** Encodes `packet` for protocol `version` (CONNECT uses its own protocolVersion). */
  encode(packet: Packet, version: ProtocolVersion = 4): Uint8Array {
    const total = measure(packet, version);
    if (total > this.buf.length) {
      this.buf = new Uint8Array(Math.max(total, this.buf.length * 2));
      this.view = null;
    }
    write(packet, this.buf, 0);
    // The last view is invalid now anyway: hand the same object out again when the size matches
    // (a sensor's packets often do), so encoding in a loop allocates nothing.
    let view = this.view;
    if (view === null || view.length !== total) view = this.view = this.buf.subarray(0, total);
    return view;
  }

  /** Total bytes `packet` takes; validates it exactly as encode would. */
  encodedLength(packet: Packet, version: ProtocolVersion = 4): number {
    return measure(packet, version);
  }

  /** Writes `packet` at `target[offset]`; returns the offset after it. Throws if it does not fit. */
  encodeInto(packet: Packet, version: ProtocolVersion, target: Uint8Array, offset: number): number {
    const total = measure(packet, version);
    if (!isInt(offset, 0, target.length - total)) throw new MqttError('BUFFER_TOO_SMALL', '', 0x83);
    write(packet, target, offset);
    return offset + total;
  }
}

const shared = new PacketWriter(1024);

/** Encodes into a fresh array (a copy the caller owns). */
export function encode(packet: Packet, version: ProtocolVersion = 4): Uint8Array {
  // new Uint8Array(view) copies (ES5 typed arrays have no slice(), Duktape's neither)
  return new Uint8Array(shared.encode(packet, version));
}

/** Total bytes `packet` takes on the wire, after the same validation as encode. */
export function encodedLength(packet: Packet, version: ProtocolVersion = 4): number {
  return measure(packet, version);
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
