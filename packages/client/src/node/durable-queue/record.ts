/**
 * The on-disk bytes of the durable queue. All integers little-endian.
 *
 * Segment file `<first seq, 20 digits>.log`:
 *   0  4  magic "MEQS"
 *   4  1  format version (1)
 *   5  3  zero
 *   8  ..  records, back to back
 *
 * Record:
 *   0  u32  len      whole record in bytes, header included (>= 28)
 *   4  u32  crc      CRC-32C over bytes [0, 4) then [8, len): the length is covered, so a torn
 *                    or bit-flipped length fails the check like any other byte
 *   8  u32  seq low 32 bits
 *  12  u32  seq high bits (seq < 2^53)
 *  16  f64  stored-at time, ms since the epoch
 *  24  u8   flags: bits 0-1 QoS, bit 2 retain, bit 3 properties present
 *  25  u8   zero
 *  26  u16  topic length T
 *  28  T    topic, UTF-8
 *      if flags bit 3: u32 property length P, then P bytes of properties (below)
 *      payload: the rest of the record
 *
 * Properties: MQTT 5's own identifiers and value forms, restricted to what a PUBLISH carries
 * and that outlives a connection: 0x01 payload format (u8), 0x02 message expiry (u32),
 * 0x03 content type (u16 length + UTF-8), 0x08 response topic (same), 0x09 correlation data
 * (u16 length + bytes), 0x26 user property (two strings). Integers are little-endian here.
 */
import type { Properties, QoS } from '@mqtt-edge/codec';
import { utf8ByteLength } from '@mqtt-edge/codec';
import type { OutboxMessage } from '../../core/outbox.ts';
import { crc32c } from './crc32c.ts';

export const SEGMENT_HEADER_BYTES = 8;
export const SEGMENT_VERSION = 1;
export const RECORD_HEADER_BYTES = 28;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
const FLAG_RETAIN = 4;
const FLAG_PROPS = 8;

export function writeSegmentHeader(buf: Uint8Array): void {
  buf[0] = 0x4d; // M
  buf[1] = 0x45; // E
  buf[2] = 0x51; // Q
  buf[3] = 0x53; // S
  buf[4] = SEGMENT_VERSION;
  buf[5] = 0;
  buf[6] = 0;
  buf[7] = 0;
}

export function segmentHeaderOk(buf: Uint8Array, at: number): boolean {
  return (
    buf[at] === 0x4d &&
    buf[at + 1] === 0x45 &&
    buf[at + 2] === 0x51 &&
    buf[at + 3] === 0x53 &&
    buf[at + 4] === SEGMENT_VERSION
  );
}

/** A message checked and measured for encoding; properties are pre-encoded because they are rare. */
export interface PreparedMessage {
  message: OutboxMessage;
  topicBytes: number;
  props: Uint8Array | null;
  recordBytes: number;
}

function strBytes(s: unknown, what: string): number {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string`);
  const n = utf8ByteLength(s);
  if (n < 0) throw new TypeError(`${what} holds a lone surrogate and has no UTF-8 form`);
  if (n > 0xffff) throw new RangeError(`${what} is longer than 65535 bytes`);
  return n;
}

export function prepare(message: OutboxMessage): PreparedMessage {
  if (message === null || typeof message !== 'object') throw new TypeError('message must be an object');
  const topicBytes = strBytes(message.topic, 'topic');
  if (!(message.payload instanceof Uint8Array)) throw new TypeError('payload must be a Uint8Array');
  if (message.qos !== 0 && message.qos !== 1 && message.qos !== 2)
    throw new TypeError('qos must be 0, 1 or 2');
  if (typeof message.retain !== 'boolean') throw new TypeError('retain must be a boolean');
  const props = message.properties === undefined ? null : encodeProperties(message.properties);
  const recordBytes =
    RECORD_HEADER_BYTES + topicBytes + (props === null ? 0 : 4 + props.length) + message.payload.length;
  return { message, topicBytes, props, recordBytes };
}

/**
 * Writes one record at `buf[at]`; `buf` has room for `p.recordBytes`.
 * Buffer's native UTF-8 writer is used because this is the Node side and the topic was
 * already checked to be well-formed.
 */
export function encodeRecord(buf: Buffer, at: number, p: PreparedMessage, seq: number, ts: number): void {
  const m = p.message;
  const len = p.recordBytes;
  buf.writeUInt32LE(len, at);
  buf.writeUInt32LE(seq >>> 0, at + 8);
  buf.writeUInt32LE(Math.floor(seq / 0x100000000), at + 12);
  buf.writeDoubleLE(ts, at + 16);
  buf[at + 24] = m.qos | (m.retain ? FLAG_RETAIN : 0) | (p.props === null ? 0 : FLAG_PROPS);
  buf[at + 25] = 0;
  buf.writeUInt16LE(p.topicBytes, at + 26);
  let pos = at + RECORD_HEADER_BYTES;
  if (p.topicBytes > 0) pos += buf.write(m.topic, pos, p.topicBytes, 'utf8');
  if (p.props !== null) {
    buf.writeUInt32LE(p.props.length, pos);
    buf.set(p.props, pos + 4);
    pos += 4 + p.props.length;
  }
  buf.set(m.payload, pos);
  buf.writeUInt32LE(crc32c(buf, at + 8, at + len, crc32c(buf, at, at + 4)), at + 4);
}

/** CRC of a record whose `len` bytes start at `buf[at]` (caller checked they are there). */
export function recordCrcOk(buf: Buffer, at: number, len: number): boolean {
  return crc32c(buf, at + 8, at + len, crc32c(buf, at, at + 4)) === buf.readUInt32LE(at + 4);
}

export function recordSeq(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + 8) + buf.readUInt32LE(at + 12) * 0x100000000;
}

export function recordTime(buf: Buffer, at: number): number {
  return buf.readDoubleLE(at + 16);
}

/** Payload + topic bytes, the measure stats and maxBytes use. */
export function recordMessageBytes(buf: Buffer, at: number, len: number): number {
  const topicBytes = buf.readUInt16LE(at + 26);
  if ((buf[at + 24] & FLAG_PROPS) === 0) return len - RECORD_HEADER_BYTES;
  const propLen = buf.readUInt32LE(at + RECORD_HEADER_BYTES + topicBytes);
  return len - RECORD_HEADER_BYTES - 4 - propLen;
}

/**
 * Structural check of a CRC-valid record; a record that passes the CRC but not this was written
 * by something else (or a future version) and is treated as corrupt.
 */
export function recordShapeOk(buf: Buffer, at: number, len: number): boolean {
  const flags = buf[at + 24];
  if ((flags & 3) === 3 || (flags & ~0x0f) !== 0 || buf[at + 25] !== 0) return false;
  const topicEnd = RECORD_HEADER_BYTES + buf.readUInt16LE(at + 26);
  if (topicEnd > len) return false;
  if ((flags & FLAG_PROPS) === 0) return true;
  if (topicEnd + 4 > len) return false;
  return topicEnd + 4 + buf.readUInt32LE(at + topicEnd) <= len;
}

/**
 * Hands out payload copies carved from shared 64 KiB slabs: a typed array over 64 bytes gets its
 * own malloc'd backing store in V8, and one per message read made RSS climb with every replay.
 * A slab lives as long as any payload cut from it, which for a publisher is one read batch.
 */
export class PayloadSlab {
  private slab = new ArrayBuffer(0);
  private used = 0;

  take(n: number): Uint8Array {
    if (n > 8192) return new Uint8Array(n);
    if (this.used + n > this.slab.byteLength) {
      this.slab = new ArrayBuffer(64 << 10);
      this.used = 0;
    }
    const out = new Uint8Array(this.slab, this.used, n);
    this.used += n;
    return out;
  }
}

/** Decodes a record (CRC and shape already checked). The payload is a copy: `buf` is reused. */
export function decodeMessage(
  buf: Buffer,
  at: number,
  len: number,
  slab: PayloadSlab | null = null,
): OutboxMessage | null {
  const flags = buf[at + 24];
  const topicLen = buf.readUInt16LE(at + 26);
  let pos = at + RECORD_HEADER_BYTES;
  const topic = buf.toString('utf8', pos, pos + topicLen);
  pos += topicLen;
  let properties: Properties | undefined;
  if (flags & FLAG_PROPS) {
    const propLen = buf.readUInt32LE(pos);
    const decoded = decodeProperties(buf, pos + 4, pos + 4 + propLen);
    if (decoded === null) return null;
    properties = decoded;
    pos += 4 + propLen;
  }
  const end = at + len;
  const payload = slab === null ? new Uint8Array(end - pos) : slab.take(end - pos);
  payload.set(buf.subarray(pos, end));
  const message: OutboxMessage = {
    topic,
    payload,
    qos: (flags & 3) as QoS,
    retain: (flags & FLAG_RETAIN) !== 0,
  };
  if (properties !== undefined) message.properties = properties;
  return message;
}

/** Connection-scoped properties that must not be replayed on another connection. */
const DROPPED = new Set(['topicAlias', 'subscriptionIdentifier', 'subscriptionIdentifiers']);
const STORED = new Set([
  'payloadFormatIndicator',
  'messageExpiryInterval',
  'contentType',
  'responseTopic',
  'correlationData',
  'userProperties',
]);

export function encodeProperties(props: Properties): Uint8Array | null {
  let size = 0;
  for (const key of Object.keys(props) as Array<keyof Properties>) {
    const v = props[key];
    if (v === undefined || DROPPED.has(key)) continue;
    if (!STORED.has(key)) throw new TypeError(`property ${key} does not belong in a stored PUBLISH`);
  }
  const { payloadFormatIndicator: pfi, messageExpiryInterval: mei, contentType, responseTopic } = props;
  const { correlationData, userProperties } = props;
  if (pfi !== undefined) {
    if (typeof pfi !== 'boolean') throw new TypeError('payloadFormatIndicator must be a boolean');
    size += 2;
  }
  if (mei !== undefined) {
    if (!Number.isInteger(mei) || mei < 0 || mei > 0xffffffff) {
      throw new RangeError('messageExpiryInterval must be an integer 0..4294967295');
    }
    size += 5;
  }
  if (contentType !== undefined) size += 3 + strBytes(contentType, 'contentType');
  if (responseTopic !== undefined) size += 3 + strBytes(responseTopic, 'responseTopic');
  if (correlationData !== undefined) {
    if (!(correlationData instanceof Uint8Array)) throw new TypeError('correlationData must be a Uint8Array');
    if (correlationData.length > 0xffff) throw new RangeError('correlationData is longer than 65535 bytes');
    size += 3 + correlationData.length;
  }
  if (userProperties !== undefined) {
    if (!Array.isArray(userProperties)) throw new TypeError('userProperties must be an array of pairs');
    for (const pair of userProperties) {
      if (!Array.isArray(pair) || pair.length !== 2)
        throw new TypeError('a user property is a [key, value] pair');
      size += 5 + strBytes(pair[0], 'user property key') + strBytes(pair[1], 'user property value');
    }
  }
  if (size === 0) return null;
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  const str = (s: string) => {
    const n = out.write(s, pos + 2, 'utf8');
    out.writeUInt16LE(n, pos);
    pos += 2 + n;
  };
  if (pfi !== undefined) {
    out[pos++] = 0x01;
    out[pos++] = pfi ? 1 : 0;
  }
  if (mei !== undefined) {
    out[pos++] = 0x02;
    out.writeUInt32LE(mei, pos);
    pos += 4;
  }
  if (contentType !== undefined) {
    out[pos++] = 0x03;
    str(contentType);
  }
  if (responseTopic !== undefined) {
    out[pos++] = 0x08;
    str(responseTopic);
  }
  if (correlationData !== undefined) {
    out[pos++] = 0x09;
    out.writeUInt16LE(correlationData.length, pos);
    out.set(correlationData, pos + 2);
    pos += 2 + correlationData.length;
  }
  if (userProperties !== undefined) {
    for (const [k, v] of userProperties) {
      out[pos++] = 0x26;
      str(k);
      str(v);
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, pos);
}

export function decodeProperties(buf: Buffer, start: number, end: number): Properties | null {
  const props: Properties = {};
  let pos = start;
  const str = (): string | null => {
    if (pos + 2 > end) return null;
    const n = buf.readUInt16LE(pos);
    if (pos + 2 + n > end) return null;
    const s = buf.toString('utf8', pos + 2, pos + 2 + n);
    pos += 2 + n;
    return s;
  };
  while (pos < end) {
    const id = buf[pos++];
    switch (id) {
      case 0x01:
        if (pos + 1 > end) return null;
        props.payloadFormatIndicator = buf[pos++] === 1;
        break;
      case 0x02:
        if (pos + 4 > end) return null;
        props.messageExpiryInterval = buf.readUInt32LE(pos);
        pos += 4;
        break;
      case 0x03:
      case 0x08: {
        const s = str();
        if (s === null) return null;
        if (id === 0x03) props.contentType = s;
        else props.responseTopic = s;
        break;
      }
      case 0x09: {
        if (pos + 2 > end) return null;
        const n = buf.readUInt16LE(pos);
        if (pos + 2 + n > end) return null;
        props.correlationData = new Uint8Array(buf.subarray(pos + 2, pos + 2 + n));
        pos += 2 + n;
        break;
      }
      case 0x26: {
        const k = str();
        const v = k === null ? null : str();
        if (k === null || v === null) return null;
        if (props.userProperties === undefined) props.userProperties = [];
        props.userProperties.push([k, v]);
        break;
      }
      default:
        return null;
    }
  }
  return props;
}
