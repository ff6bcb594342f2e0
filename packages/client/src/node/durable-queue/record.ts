/**
 * The on-disk bytes of the durable queue. All integers little-endian.
 *
 * Segment file `<first seq, 20 digits>.log`:
 *   0  4  magic "MEQS"
 *   4  1  format version of its records: 2 (written since issue 18.4), or 1 (read only)
 *   5  3  zero
 *   8  ..  records, back to back
 *
 * Record, version 2 (19-byte header; the agent's readings take ~180 bytes instead of ~230):
 *   0  u32  len      whole record in bytes, header included (>= 21)
 *   4  u32  crc      CRC-32C over bytes [0, 4) then [8, len), xor 0x3252454d ("MER2"): the
 *                    length is covered, so a torn or bit-flipped length fails the check like
 *                    any other byte, and the xor keeps a version 1 record from passing as a
 *                    version 2 one (a segment with a damaged header is scanned as both)
 *   8  u32  seq less the segment's first seq (its file name)
 *  12  u48  stored-at time, ms since the epoch (u32 low, u16 high)
 *  18  u8   flags: bits 0-1 QoS, bit 2 retain, bit 3 properties present, bit 4 shared
 *   without bit 4: u16 topic length T, T bytes of topic (UTF-8)
 *   with bit 4:    u32 offset in this segment of an earlier record without bit 4 whose topic and
 *                  properties other than user properties this record shares, then u16 T (its
 *                  topic's length, checked against it). Its own properties (bit 3) are its user
 *                  properties: the shared ones first, these after.
 *   if bit 3: P as LEB128 (1-5 bytes), then P bytes of properties (below)
 *   payload: the rest of the record
 * The writer points at a full record written in the last 64 KiB of the segment (it writes
 * another when the last is further back), so a rotten full record loses at most that stretch.
 *
 * Record, version 1 (28-byte header):
 *   0  u32  len, 4 u32 crc (as above), 8 u32 seq low 32 bits, 12 u32 seq high bits,
 *  16  f64  stored-at time, 24 u8 flags (bits 0-3 as above), 25 u8 zero, 26 u16 topic length T,
 *  28  T    topic; if flags bit 3: u32 property length P, then P bytes of properties; payload.
 *
 * Properties: MQTT 5's own identifiers and value forms, restricted to what a PUBLISH carries
 * and that outlives a connection: 0x01 payload format (u8), 0x02 message expiry (u32),
 * 0x03 content type (u16 length + UTF-8), 0x08 response topic (same), 0x09 correlation data
 * (u16 length + bytes), 0x26 user property (two strings), written in that order. Integers are
 * little-endian here.
 */
import type { Properties, QoS } from '@mqtt-edge/codec';
import { utf8ByteLength } from '@mqtt-edge/codec';
import type { OutboxMessage } from '../../core/outbox.ts';
import { crc32c } from './crc32c.ts';

export const SEGMENT_HEADER_BYTES = 8;
/** The record format new segments are written in. */
export const SEGMENT_VERSION = 2;
export type SegmentVersion = 1 | 2;
const V1_HEADER = 28;
const V2_HEADER = 19;
/** The smallest record of any version (a version 2 record with an empty topic and payload). */
export const MIN_RECORD_BYTES = V2_HEADER + 2;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
const FLAG_RETAIN = 4;
const FLAG_PROPS = 8;
const FLAG_SHARED = 16;
const MAX_TIME = 2 ** 48 - 1;
/** Version 2 CRCs are xored with this ("MER2"); version 1's are plain. */
const V2_CRC_XOR = 0x3252454d;

export function minRecordBytes(v: SegmentVersion): number {
  return v === 1 ? V1_HEADER : MIN_RECORD_BYTES;
}

export function writeSegmentHeader(buf: Uint8Array, version: SegmentVersion = SEGMENT_VERSION): void {
  buf[0] = 0x4d; // M
  buf[1] = 0x45; // E
  buf[2] = 0x51; // Q
  buf[3] = 0x53; // S
  buf[4] = version;
  buf[5] = 0;
  buf[6] = 0;
  buf[7] = 0;
}

/** The version a segment header names, 0 when it is not a header of ours. */
export function segmentHeaderVersion(buf: Uint8Array, at: number): SegmentVersion | 0 {
  if (buf[at] !== 0x4d || buf[at + 1] !== 0x45 || buf[at + 2] !== 0x51 || buf[at + 3] !== 0x53) return 0;
  const v = buf[at + 4];
  return v === 1 || v === 2 ? v : 0;
}

/** A message checked and measured for encoding; properties are pre-encoded because they are rare. */
export interface PreparedMessage {
  message: OutboxMessage;
  topicBytes: number;
  props: Uint8Array | null;
  /** Bytes of `props` before the user properties: what a shared record takes from its full one. */
  sharedPropsBytes: number;
  /** Size as a full record (no sharing): the most it takes. */
  recordBytes: number;
}

function strBytes(s: unknown, what: string): number {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string`);
  const n = utf8ByteLength(s);
  if (n < 0) throw new TypeError(`${what} holds a lone surrogate and has no UTF-8 form`);
  if (n > 0xffff) throw new RangeError(`${what} is longer than 65535 bytes`);
  return n;
}

function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

export function prepare(message: OutboxMessage): PreparedMessage {
  if (message === null || typeof message !== 'object') throw new TypeError('message must be an object');
  const topicBytes = strBytes(message.topic, 'topic');
  if (!(message.payload instanceof Uint8Array)) throw new TypeError('payload must be a Uint8Array');
  if (message.qos !== 0 && message.qos !== 1 && message.qos !== 2)
    throw new TypeError('qos must be 0, 1 or 2');
  if (typeof message.retain !== 'boolean') throw new TypeError('retain must be a boolean');
  const encoded = message.properties === undefined ? null : encodeProperties(message.properties);
  const props = encoded === null ? null : encoded.bytes;
  const recordBytes =
    V2_HEADER +
    2 +
    topicBytes +
    (props === null ? 0 : varintBytes(props.length) + props.length) +
    message.payload.length;
  return { message, topicBytes, props, sharedPropsBytes: encoded?.sharedBytes ?? 0, recordBytes };
}

/** The bytes of `p`'s properties before its user properties (a copy); null when there are none. */
export function sharedPropsOf(p: PreparedMessage): Uint8Array | null {
  return p.sharedPropsBytes === 0 ? null : (p.props as Uint8Array).slice(0, p.sharedPropsBytes);
}

/** Whether `p`'s properties before its user properties are `shared` (from sharedPropsOf). */
export function sameSharedProps(p: PreparedMessage, shared: Uint8Array | null): boolean {
  const n = p.sharedPropsBytes;
  if (shared === null) return n === 0;
  if (shared.length !== n) return false;
  const b = p.props as Uint8Array;
  for (let i = 0; i < n; i++) if (b[i] !== shared[i]) return false;
  return true;
}

/** Size of `p` as a record sharing another's topic and properties. */
export function sharedRecordBytes(p: PreparedMessage): number {
  const own = p.props === null ? 0 : p.props.length - p.sharedPropsBytes;
  return V2_HEADER + 6 + (own === 0 ? 0 : varintBytes(own) + own) + p.message.payload.length;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/**
 * Writes one version 2 record at `buf[at]` and returns its length. `ref` is the segment offset
 * of the full record it shares topic and properties with, or -1 for a full record. `buf` has
 * room for `p.recordBytes`. Buffer's native UTF-8 writer is used because this is the Node side
 * and the topic was already checked to be well-formed.
 */
export function encodeRecord(
  buf: Buffer,
  at: number,
  p: PreparedMessage,
  seqOffset: number,
  ts: number,
  ref: number,
): number {
  const m = p.message;
  const shared = ref >= 0;
  const props = p.props === null ? null : shared ? p.props.subarray(p.sharedPropsBytes) : p.props;
  const hasProps = props !== null && props.length > 0;
  buf.writeUInt32LE(seqOffset, at + 8);
  const t = Math.min(MAX_TIME, Math.max(0, Math.floor(ts)));
  buf.writeUInt32LE(t % 0x100000000, at + 12);
  buf.writeUInt16LE(Math.floor(t / 0x100000000), at + 16);
  buf[at + 18] =
    m.qos | (m.retain ? FLAG_RETAIN : 0) | (hasProps ? FLAG_PROPS : 0) | (shared ? FLAG_SHARED : 0);
  let pos = at + V2_HEADER;
  if (shared) {
    buf.writeUInt32LE(ref, pos);
    buf.writeUInt16LE(p.topicBytes, pos + 4);
    pos += 6;
  } else {
    buf.writeUInt16LE(p.topicBytes, pos);
    pos += 2;
    if (p.topicBytes > 0) pos += buf.write(m.topic, pos, p.topicBytes, 'utf8');
  }
  if (hasProps) {
    pos = writeVarint(buf, pos, props.length);
    buf.set(props, pos);
    pos += props.length;
  }
  buf.set(m.payload, pos);
  const len = pos + m.payload.length - at;
  buf.writeUInt32LE(len, at);
  buf.writeUInt32LE((crc32c(buf, at + 8, at + len, crc32c(buf, at, at + 4)) ^ V2_CRC_XOR) >>> 0, at + 4);
  return len;
}

/** CRC of a record whose `len` bytes start at `buf[at]` (caller checked they are there). */
export function recordCrcOk(buf: Buffer, at: number, len: number, v: SegmentVersion): boolean {
  const crc = crc32c(buf, at + 8, at + len, crc32c(buf, at, at + 4));
  return (v === 1 ? crc : (crc ^ V2_CRC_XOR) >>> 0) === buf.readUInt32LE(at + 4);
}

/** The record's seq; `base` is its segment's first seq (version 2 stores the difference). */
export function recordSeq(buf: Buffer, at: number, v: SegmentVersion, base: number): number {
  if (v === 1) return buf.readUInt32LE(at + 8) + buf.readUInt32LE(at + 12) * 0x100000000;
  return base + buf.readUInt32LE(at + 8);
}

export function recordTime(buf: Buffer, at: number, v: SegmentVersion): number {
  if (v === 1) return buf.readDoubleLE(at + 16);
  return buf.readUInt32LE(at + 12) + buf.readUInt16LE(at + 16) * 0x100000000;
}

/** The offset of the full record a version 2 record shares with, -1 for a full record. */
export function recordRef(buf: Buffer, at: number, v: SegmentVersion): number {
  return v === 2 && (buf[at + 18] & FLAG_SHARED) !== 0 ? buf.readUInt32LE(at + V2_HEADER) : -1;
}

/** The record's topic length (for a shared record, that of its full record's topic). */
export function recordTopicBytes(buf: Buffer, at: number, v: SegmentVersion): number {
  if (v === 1) return buf.readUInt16LE(at + 26);
  return buf.readUInt16LE(at + V2_HEADER + ((buf[at + 18] & FLAG_SHARED) !== 0 ? 4 : 0));
}

/**
 * Where a record's parts lie, relative to its start: filled by layout(), read at once. One object
 * for every call (all synchronous): a read must not allocate for its bookkeeping.
 */
const L = { flags: 0, topicAt: 0, topicBytes: 0, propsAt: 0, propsEnd: 0 };

/** Fills L; false when the parts do not fit in `len`. */
function layout(buf: Buffer, at: number, len: number, v: SegmentVersion): boolean {
  let flags: number;
  let topicAt: number;
  let topicBytes: number;
  let topicEnd: number;
  if (v === 1) {
    flags = buf[at + 24];
    topicAt = V1_HEADER;
    topicBytes = buf.readUInt16LE(at + 26);
    topicEnd = topicAt + topicBytes;
  } else {
    flags = buf[at + 18];
    const shared = (flags & FLAG_SHARED) !== 0;
    const tAt = V2_HEADER + (shared ? 4 : 0);
    if (tAt + 2 > len) return false;
    topicAt = tAt + 2;
    topicBytes = buf.readUInt16LE(at + tAt);
    topicEnd = topicAt + (shared ? 0 : topicBytes);
  }
  if (topicEnd > len) return false;
  L.flags = flags;
  L.topicAt = topicAt;
  L.topicBytes = topicBytes;
  L.propsAt = topicEnd;
  L.propsEnd = topicEnd;
  if ((flags & FLAG_PROPS) === 0) return true;
  let n: number;
  let from: number;
  if (v === 1) {
    if (topicEnd + 4 > len) return false;
    n = buf.readUInt32LE(at + topicEnd);
    from = topicEnd + 4;
  } else {
    // LEB128, at most 5 bytes
    n = 0;
    let mul = 1;
    from = topicEnd;
    for (;;) {
      if (from >= len || from - topicEnd === 5) return false;
      const b = buf[at + from++];
      n += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
    }
  }
  if (from + n > len) return false;
  L.propsAt = from;
  L.propsEnd = from + n;
  return true;
}

/** Payload + topic bytes, the measure stats and maxBytes use (shape already checked). */
export function recordMessageBytes(buf: Buffer, at: number, len: number, v: SegmentVersion): number {
  layout(buf, at, len, v);
  return L.topicBytes + len - L.propsEnd;
}

/**
 * Structural check of a CRC-valid record at segment offset `offset`; a record that passes the
 * CRC but not this was written by something else (or a future version) and is treated as
 * corrupt. A shared record must point before itself, past the segment header.
 */
export function recordShapeOk(
  buf: Buffer,
  at: number,
  len: number,
  v: SegmentVersion,
  offset: number,
): boolean {
  if (len < minRecordBytes(v)) return false;
  if (v === 1) {
    const flags = buf[at + 24];
    if ((flags & 3) === 3 || (flags & ~0x0f) !== 0 || buf[at + 25] !== 0) return false;
  } else {
    const flags = buf[at + 18];
    if ((flags & 3) === 3 || (flags & ~0x1f) !== 0) return false;
    if ((flags & FLAG_SHARED) !== 0) {
      if (len < V2_HEADER + 6) return false;
      const ref = buf.readUInt32LE(at + V2_HEADER);
      if (ref < SEGMENT_HEADER_BYTES || ref + MIN_RECORD_BYTES > offset) return false;
    }
  }
  return layout(buf, at, len, v);
}

/** What a shared record takes from its full record. */
export interface SharedPart {
  topic: string;
  topicBytes: number;
  /** The full record's properties other than user properties; null when it has none. */
  properties: Properties | null;
}

/** The topic and non-user properties of a full record (CRC and shape already checked). */
export function decodeSharedPart(buf: Buffer, at: number, len: number, v: SegmentVersion): SharedPart | null {
  layout(buf, at, len, v);
  if ((L.flags & FLAG_SHARED) !== 0 && v === 2) return null;
  const topicBytes = L.topicBytes;
  const topic = buf.toString('utf8', at + L.topicAt, at + L.topicAt + topicBytes);
  let properties: Properties | null = null;
  if ((L.flags & FLAG_PROPS) !== 0) {
    const d = decodeProperties(buf, at + L.propsAt, at + L.propsEnd, {});
    if (d === null) return null;
    // a copy without them, not `delete`: that would leave V8 a slow object to clone on every read
    const { userProperties: _own, ...rest } = d;
    if (Object.keys(rest).length > 0) properties = rest;
  }
  return { topic, topicBytes, properties };
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

/**
 * Decodes a record (CRC and shape already checked); a shared one takes `shared` (its full
 * record's part, whose topic length the caller checked). The payload is a copy: `buf` is reused.
 */
export function decodeMessage(
  buf: Buffer,
  at: number,
  len: number,
  v: SegmentVersion,
  slab: PayloadSlab | null = null,
  shared: SharedPart | null = null,
): OutboxMessage | null {
  layout(buf, at, len, v);
  const { flags, propsAt, propsEnd } = L;
  const topic =
    shared !== null ? shared.topic : buf.toString('utf8', at + L.topicAt, at + L.topicAt + L.topicBytes);
  let properties: Properties | undefined;
  const base = shared?.properties;
  if (flags & FLAG_PROPS) {
    // into a fresh {} as every record's, then the shared part: decodeProperties' stores stay
    // monomorphic (a clone of `base` passed in made them slow)
    const decoded = decodeProperties(buf, at + propsAt, at + propsEnd, {});
    if (decoded === null) return null;
    properties = base ? Object.assign(decoded, base) : decoded;
  } else if (base) properties = { ...base };
  const end = at + len;
  const pos = at + propsEnd;
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

/** The properties' bytes, and how many of them come before the user properties. */
export function encodeProperties(props: Properties): { bytes: Uint8Array; sharedBytes: number } | null {
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
  const sharedBytes = pos;
  if (userProperties !== undefined) {
    for (const [k, v] of userProperties) {
      out[pos++] = 0x26;
      str(k);
      str(v);
    }
  }
  return { bytes: new Uint8Array(out.buffer, out.byteOffset, pos), sharedBytes };
}

/** Where decodeProperties' reading is: a module variable, not a closure (one per call). */
let propPos = 0;

/** A u16-length string at `propPos` ending by `end` (then `propPos` moves past it), or null. */
function readStr(buf: Buffer, end: number): string | null {
  if (propPos + 2 > end) return null;
  const n = buf.readUInt16LE(propPos);
  if (propPos + 2 + n > end) return null;
  const s = buf.toString('utf8', propPos + 2, propPos + 2 + n);
  propPos += 2 + n;
  return s;
}

/** Decodes properties into `props` (already holding a shared record's part, or empty). */
export function decodeProperties(
  buf: Buffer,
  start: number,
  end: number,
  props: Properties,
): Properties | null {
  propPos = start;
  while (propPos < end) {
    const id = buf[propPos++];
    switch (id) {
      case 0x01:
        if (propPos + 1 > end) return null;
        props.payloadFormatIndicator = buf[propPos++] === 1;
        break;
      case 0x02:
        if (propPos + 4 > end) return null;
        props.messageExpiryInterval = buf.readUInt32LE(propPos);
        propPos += 4;
        break;
      case 0x03:
      case 0x08: {
        const s = readStr(buf, end);
        if (s === null) return null;
        if (id === 0x03) props.contentType = s;
        else props.responseTopic = s;
        break;
      }
      case 0x09: {
        if (propPos + 2 > end) return null;
        const n = buf.readUInt16LE(propPos);
        if (propPos + 2 + n > end) return null;
        props.correlationData = new Uint8Array(buf.subarray(propPos + 2, propPos + 2 + n));
        propPos += 2 + n;
        break;
      }
      case 0x26: {
        const k = readStr(buf, end);
        const v = k === null ? null : readStr(buf, end);
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
