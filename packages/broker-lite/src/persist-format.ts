/**
 * The persistence file's format (cf. Mosquitto's persist.h): the magic, the record types, a
 * record writer and reader, and one encoder per record that more than one writer emits (the
 * log in persist.ts, the snapshot in persist-snapshot.ts). Recovery (persist-read.ts) decodes.
 *
 * File: MAGIC, then records. Record: u32 length of (type + body), u32 CRC-32 of (type + body),
 * u8 type, body. Fields appended by a later version sit at a record's end; a reader takes them
 * only when the record is long enough. Format 2 (issue 18.4, MAGIC 'BLITEDB2') adds the compact
 * queue records of persist-entry.ts; a format 1 file ('BLITEDB1') is still read.
 */
import fs from 'node:fs';
import { decode, type PacketWriter, type PublishPacket, type Will } from '@mqtt-edge/codec';
import { crc32 } from './crc32.ts';
import type { Message } from './message.ts';
import type { Session, Subscription } from './session.ts';

/** What this version writes: format 2. */
export const MAGIC = Buffer.from('BLITEDB2');
/** Format 1 (before issue 18.4): read, never written; older code moves a format 2 file aside. */
export const MAGIC_V1 = Buffer.from('BLITEDB1');
export const FILE = 'broker-lite.db';
/** Files hold payloads and user names: owner only. */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

export enum Rec {
  SessionPut = 1,
  SessionDel = 2,
  SubPut = 3,
  SubDel = 4,
  Msg = 5,
  QueueAdd = 6,
  QueueDel = 7,
  QueueRel = 8,
  InAdd = 9,
  InDel = 10,
  RetainPut = 11,
  RetainDel = 12,
  /** A queue entry went out under a packet id (waiting for PUBACK / PUBREC). */
  QueueSent = 13,
  /** A will waiting out its will delay: due time and a CONNECT carrying the will and user name. */
  WillPut = 14,
  WillDel = 15,
  // Format 2 (persist-entry.ts): fields are varints, names back-references.
  /** A message and its queue entry for one session (Msg + QueueAdd of format 1 in one). */
  Stored = 16,
  /** A queue entry for a message stored before in the same file. */
  Entry = 17,
  /** Compact QueueDel / QueueSent / QueueRel. */
  Del = 18,
  Sent = 19,
  Rel = 20,
}

/** A record that passed its CRC but does not parse: a bug or a hostile file. Replay stops there. */
export class CorruptRecordError extends Error {
  override name = 'CorruptRecordError';
}

/**
 * Grows records into one buffer per turn. Only complete records are handed out: a record begun
 * and not ended (something threw while it was being written) is dropped by the next begin() or
 * take(), so an exception can never leave unframed bytes in the log.
 */
export class RecordWriter {
  buf = Buffer.allocUnsafe(64 * 1024);
  pos = 0;
  /** End of the last complete record. */
  done = 0;
  private start = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + 1024));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }
  begin(type: Rec): void {
    this.pos = this.done;
    this.ensure(9);
    this.start = this.pos;
    this.pos += 8;
    this.buf[this.pos++] = type;
  }
  end(): void {
    const len = this.pos - this.start - 8;
    this.buf.writeUInt32LE(len, this.start);
    this.buf.writeUInt32LE(crc32(this.buf, this.start + 8, this.pos), this.start + 4);
    this.done = this.pos;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
  str(s: string): void {
    const n = Buffer.byteLength(s);
    this.ensure(2 + n);
    this.buf.writeUInt16LE(n, this.pos);
    this.buf.write(s, this.pos + 2);
    this.pos += 2 + n;
  }
  /** Unsigned LEB128, up to 2^53 - 1 (8 bytes). */
  varint(v: number): void {
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }
  /** A string's `n` UTF-8 bytes, its length written before. */
  utf8(s: string, n: number): void {
    this.ensure(n);
    this.buf.write(s, this.pos);
    this.pos += n;
  }
  /** Bytes with no length: the rest of the record, or a length written before. */
  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  bytes(b: Uint8Array): void {
    this.ensure(4 + b.length);
    this.buf.writeUInt32LE(b.length, this.pos);
    this.buf.set(b, this.pos + 4);
    this.pos += 4 + b.length;
  }
  /** Forgets what was written (the buffer is kept unless a huge record grew it). */
  clear(): void {
    if (this.buf.length > 64 * 1024) this.buf = Buffer.allocUnsafe(64 * 1024);
    this.pos = this.done = 0;
  }
  take(): Buffer {
    const out = this.buf.subarray(0, this.done);
    this.buf = Buffer.allocUnsafe(64 * 1024);
    this.pos = this.done = 0;
    return out;
  }
}

export class RecordReader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    /** Where the record ends: fields appended by a later version are read only when there. */
    readonly end: number,
  ) {
    this.pos = start;
  }
  /** Bytes of the record not read yet. */
  get left(): number {
    return this.end - this.pos;
  }
  u8(): number {
    return this.buf[this.pos++];
  }
  u16(): number {
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(): number {
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
  str(): string {
    const n = this.u16();
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  bytes(): Uint8Array {
    const n = this.u32();
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  // Checked reads for format 2: nothing past the record's end, no varint past 2^53.
  /** A u8 inside the record. */
  byte(): number {
    if (this.pos >= this.end) throw new CorruptRecordError('record truncated');
    return this.buf[this.pos++];
  }
  varint(): number {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.byte();
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) break;
        return v;
      }
      scale *= 0x80;
    }
    throw new CorruptRecordError('varint too long');
  }
  /** `n` bytes inside the record (a view of the file's buffer). */
  take(n: number): Buffer {
    if (n > this.left) throw new CorruptRecordError(`length ${n} past the record's end`);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  u16checked(): number {
    if (this.left < 2) throw new CorruptRecordError('record truncated');
    return this.u16();
  }
  f64checked(): number {
    if (this.left < 8) throw new CorruptRecordError('record truncated');
    return this.f64();
  }
}

/** write(2) until all of `buf` is written: a short write (a disk filling up) is not the end. */
export function writeAll(fd: number, buf: Uint8Array): void {
  for (let off = 0; off < buf.length; ) {
    const n = fs.writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw new Error('write made no progress');
    off += n;
  }
}

export function writeSession(w: RecordWriter, s: Session): void {
  w.begin(Rec.SessionPut);
  w.str(s.clientId);
  w.u32(s.expiryInterval);
  w.u8(s.username === undefined ? 0 : 1);
  if (s.username !== undefined) w.str(s.username);
  // When the offline session ends (ms; 0: connected or never), so that its clock survives a
  // restart. Appended last: an older reader stops before it, an older record has none.
  w.f64(s.expiresAt);
  w.end();
}

export function writeSub(w: RecordWriter, clientId: string, sub: Subscription): void {
  w.begin(Rec.SubPut);
  w.str(clientId);
  w.str(sub.filter);
  w.u8(sub.qos | (sub.noLocal ? 4 : 0) | (sub.retainAsPublished ? 8 : 0) | (sub.retainHandling << 4));
  w.u32(sub.id ?? 0);
  w.end();
}

/** A client's QoS 2 packet id received (InAdd) or released (InDel). */
export function writeClientPid(w: RecordWriter, type: Rec, clientId: string, pid: number): void {
  w.begin(type);
  w.str(clientId);
  w.u16(pid);
  w.end();
}

/** Encoded before the record begins: an encoder that throws leaves the writer as it was. */
export function writeRetain(w: RecordWriter, writer: PacketWriter, msg: Message): void {
  const bytes = publishBytes(writer, msg);
  w.begin(Rec.RetainPut);
  w.f64(msg.expiresAt);
  w.bytes(bytes);
  w.end();
}

export function writeWill(
  w: RecordWriter,
  writer: PacketWriter,
  clientId: string,
  username: string | undefined,
  will: Will,
  dueAt: number,
): void {
  // The codec's CONNECT already carries a will with its properties and a user name.
  const bytes = writer.encode(
    { type: 'connect', protocolVersion: 5, clientId, clean: true, keepalive: 0, username, will },
    5,
  );
  w.begin(Rec.WillPut);
  w.f64(dueAt);
  w.bytes(bytes);
  w.end();
}

/** The message as an MQTT 5 PUBLISH: topic, payload, QoS, retain and properties in one codec call. */
function publishBytes(writer: PacketWriter, msg: Message): Uint8Array {
  return writer.encode(
    {
      type: 'publish',
      topic: msg.topic,
      payload: msg.payload,
      qos: msg.qos,
      retain: msg.retain,
      dup: false,
      packetId: msg.qos > 0 ? 1 : undefined,
      properties: msg.properties,
    },
    5,
  );
}

/** Decoding what this broker stored itself. */
export const TRUSTED = { maxUserProperties: Number.POSITIVE_INFINITY };

export function readPublish(bytes: Uint8Array, expiresAt: number): Message {
  // What was stored was accepted once (a bridge may have added a user property since).
  const p = decode(bytes.slice(), 5, TRUSTED) as PublishPacket;
  return {
    topic: p.topic,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    properties: p.properties,
    expiresAt,
    storeId: 0,
    storeRefs: 0,
    owned: true,
  };
}
