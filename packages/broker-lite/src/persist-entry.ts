/**
 * Format 2's queue records (issue 18.4: flash wear with a persistent subscriber offline, when
 * every message is stored). A message and its queue entry are one record (`Stored`), an entry
 * for a message the file already holds is `Entry`, and the marks are `Del`, `Sent` and `Rel`.
 * Fields are varints; names are back-references within the file:
 *
 * - A name (a client id, a user property's key, or a message's head: its topic and properties
 *   other than user properties as a QoS 0 MQTT 5 PUBLISH with no payload) is a varint v. Odd:
 *   the (v >> 1)th name the file defined. Even: v >> 1 bytes follow, and they become the file's
 *   next name while it has fewer than MAX_NAMES and they are at most MAX_NAME_BYTES. Writer and
 *   reader apply that rule record by record, so the table is never stored: a snapshot starts an
 *   empty one, and a torn tail takes only names nothing before it refers to.
 * - Sequence numbers and store ids grow within a file: `Stored` gives both as the distance from
 *   the file's last one (1 and 1 in a run), `Entry` its sequence number so and its store id as
 *   the distance back; a mark its sequence number as the distance back.
 *
 * Stored: session name, seq+, id+, flags, [flags2, [expiresAt f64], [subIds], [pid u16]],
 *   head name, user property count, (key name, varint length, value) each, payload (the rest).
 * Entry:  session name, seq+, id back, flags, [flags2 ...].
 * Del:    session name, seq back.            Sent / Rel: session name, seq back, pid u16.
 * flags: delivery QoS (bits 0-1), delivery retain (2), message QoS (3-4), message retain (5),
 *   flags2 follows (6). flags2: expiry (0), subscription ids (1), sent (2), released (3).
 */
import {
  decode,
  type PacketWriter,
  type Properties,
  type PublishPacket,
  type QoS,
  type UserProperties,
} from '@mqtt-edge/codec';
import type { Delivery, Message } from './message.ts';
import { CorruptRecordError, Rec, type RecordReader, type RecordWriter, TRUSTED } from './persist-format.ts';

/** Names one file may define: the writer's maps and the reader's table stay this small. */
export const MAX_NAMES = 4096;
/** Longer names are written inline each time (a 64 KiB topic is not kept for a back-reference). */
export const MAX_NAME_BYTES = 256;

const EXTRA = 0x40;
const HAS_EXPIRY = 1;
const HAS_SUB_IDS = 2;
const SENT = 4;
const RELEASED = 8;
const EMPTY = new Uint8Array(0);

/**
 * The writer's side of one file's back-references and numbering. Names a record defines count
 * only once the record is complete (`RecordWriter.end`), as the reader sees them.
 */
export class FileRefs {
  private readonly names = new Map<string, number>();
  private readonly heads = new Map<string, number>();
  private readonly added: Array<[Map<string, number>, string]> = [];

  constructor(
    /** Names the file defined so far (a log kept after recovery continues its table). */
    private count = 0,
    /** The largest sequence number and store id the file holds (0: none yet). */
    public lastSeq = 0,
    public lastStoreId = 0,
  ) {}

  /** A record begins: names of one that was not completed never count. */
  begin(w: RecordWriter, type: Rec): void {
    this.added.length = 0;
    w.begin(type);
  }

  end(w: RecordWriter): void {
    w.end();
    for (const [map, key] of this.added) map.set(key, this.count++);
    this.added.length = 0;
  }

  private defines(byteLength: number): boolean {
    return this.count + this.added.length < MAX_NAMES && byteLength <= MAX_NAME_BYTES;
  }

  name(w: RecordWriter, s: string): void {
    const i = this.names.get(s);
    if (i !== undefined) {
      w.varint(i * 2 + 1);
      return;
    }
    const n = Buffer.byteLength(s);
    w.varint(n * 2);
    w.utf8(s, n);
    if (this.defines(n)) this.added.push([this.names, s]);
  }

  /** The message's topic and its properties but the user properties. */
  head(w: RecordWriter, writer: PacketWriter, msg: Message, headProps: Properties | undefined): void {
    const key = headProps === undefined ? msg.topic : `${msg.topic}\u0000${JSON.stringify(headProps)}`;
    const i = this.heads.get(key);
    if (i !== undefined) {
      w.varint(i * 2 + 1);
      return;
    }
    const bytes = writer.encode(
      {
        type: 'publish',
        topic: msg.topic,
        payload: EMPTY,
        qos: 0,
        retain: false,
        dup: false,
        properties: headProps,
      },
      5,
    );
    w.varint(bytes.length * 2);
    w.raw(bytes);
    if (this.defines(bytes.length)) this.added.push([this.heads, key]);
  }
}

/** The properties a head holds: all but the user properties (undefined when none are left). */
function headProperties(p: Properties | undefined): Properties | undefined {
  if (p === undefined || p.userProperties === undefined) return p;
  const { userProperties: _, ...rest } = p;
  for (const _k in rest) return rest;
  return undefined;
}

function flags(w: RecordWriter, d: Delivery, msg: Message | undefined): void {
  const f2 =
    (msg !== undefined && msg.expiresAt !== 0 ? HAS_EXPIRY : 0) |
    (d.subIds !== undefined && d.subIds.length > 0 ? HAS_SUB_IDS : 0) |
    (d.state === 1 ? RELEASED : d.pid !== 0 ? SENT : 0);
  w.u8(
    d.qos |
      (d.retain ? 4 : 0) |
      (msg === undefined ? 0 : (msg.qos << 3) | (msg.retain ? 0x20 : 0)) |
      (f2 !== 0 ? EXTRA : 0),
  );
  if (f2 === 0) return;
  w.u8(f2);
  if ((f2 & HAS_EXPIRY) !== 0) w.f64((msg as Message).expiresAt);
  if ((f2 & HAS_SUB_IDS) !== 0) {
    const ids = d.subIds as number[];
    w.varint(ids.length);
    for (const id of ids) w.varint(id);
  }
  if ((f2 & (SENT | RELEASED)) !== 0) w.u16(d.pid);
}

/**
 * `d` queued for `clientId` under `seq`, with its message when `stored` (the message gets
 * `storeId`, above every id the file holds), else referring to the message stored as `storeId`.
 * The entry as it is now: its packet id and release state included.
 */
export function writeQueued(
  w: RecordWriter,
  refs: FileRefs,
  writer: PacketWriter,
  clientId: string,
  d: Delivery,
  seq: number,
  storeId: number,
  stored: boolean,
): void {
  const msg = d.msg;
  const seqDelta = seq - refs.lastSeq;
  const idDelta = stored ? storeId - refs.lastStoreId : refs.lastStoreId - storeId;
  // The numbering only grows within a file (persist.ts and the snapshot hand it out in order).
  if (seqDelta < 1 || (stored ? idDelta < 1 : idDelta < 0))
    throw new Error(`queue record out of order: seq ${seq} after ${refs.lastSeq}, id ${storeId}`);
  refs.begin(w, stored ? Rec.Stored : Rec.Entry);
  refs.name(w, clientId);
  w.varint(seqDelta);
  w.varint(idDelta);
  flags(w, d, stored ? msg : undefined);
  if (stored) {
    const props = msg.properties;
    refs.head(w, writer, msg, headProperties(props));
    const up = props?.userProperties;
    w.varint(up === undefined ? 0 : up.length);
    if (up !== undefined)
      for (const [k, v] of up) {
        refs.name(w, k);
        const n = Buffer.byteLength(v);
        w.varint(n);
        w.utf8(v, n);
      }
    w.raw(msg.payload);
  }
  refs.end(w);
  refs.lastSeq = seq;
  if (stored) refs.lastStoreId = storeId;
}

/**
 * A queue entry removed (`Del`), sent under `pid` (`Sent`) or released (`Rel`). Nothing for an
 * entry the file does not hold (its session was not stored when it was queued).
 */
export function writeMark(
  w: RecordWriter,
  refs: FileRefs,
  type: Rec.Del | Rec.Sent | Rec.Rel,
  clientId: string,
  seq: number,
  pid: number,
): void {
  if (seq > refs.lastSeq) return;
  refs.begin(w, type);
  refs.name(w, clientId);
  w.varint(refs.lastSeq - seq);
  if (type !== Rec.Del) w.u16(pid);
  refs.end(w);
}

// ---- reading --------------------------------------------------------------------------

interface Head {
  topic: string;
  properties: Properties | undefined;
}

/** The reader's side of one file's names. */
export class ReadRefs {
  private readonly names: Buffer[] = [];
  private readonly strings: Array<string | undefined> = [];
  private readonly heads: Array<Head | undefined> = [];
  /** The bytes of the last name read that the table did not take. */
  private inline: Buffer = Buffer.alloc(0);

  /** Names defined so far: where the writer's table continues when this log is kept. */
  get count(): number {
    return this.names.length;
  }

  /** The table index of the name read, or -1 when it is inline and not kept (`inline`). */
  private field(r: RecordReader): number {
    const v = r.varint();
    if (v % 2 === 1) {
      const i = (v - 1) / 2;
      if (i >= this.names.length)
        throw new CorruptRecordError(`back-reference to name ${i}; the file defined ${this.names.length}`);
      return i;
    }
    const bytes = r.take(v / 2);
    if (this.names.length < MAX_NAMES && bytes.length <= MAX_NAME_BYTES) {
      this.names.push(bytes);
      this.strings.push(undefined);
      this.heads.push(undefined);
      return this.names.length - 1;
    }
    this.inline = bytes;
    return -1;
  }

  name(r: RecordReader): string {
    const i = this.field(r);
    if (i < 0) return this.inline.toString('utf8');
    let s = this.strings[i];
    if (s === undefined) s = this.strings[i] = this.names[i].toString('utf8');
    return s;
  }

  head(r: RecordReader): Head {
    const i = this.field(r);
    if (i < 0) return decodeHead(this.inline);
    let h = this.heads[i];
    if (h === undefined) h = this.heads[i] = decodeHead(this.names[i]);
    return h;
  }
}

function decodeHead(bytes: Buffer): Head {
  let p: PublishPacket;
  try {
    p = decode(bytes.subarray(), 5, TRUSTED) as PublishPacket;
  } catch (err) {
    throw new CorruptRecordError(`message head does not decode: ${String(err)}`);
  }
  if (p.type !== 'publish') throw new CorruptRecordError(`message head is a ${p.type}`);
  return { topic: p.topic, properties: p.properties };
}

/** A `Stored` or `Entry` record read: the entry, and for `Stored` its message. */
export interface QueuedRead {
  clientId: string;
  seq: number;
  storeId: number;
  qos: QoS;
  retain: boolean;
  subIds: number[] | undefined;
  sentPid: number;
  relPid: number;
  msg: Message | undefined;
}

/** Reads a `Stored` / `Entry` record; `lastSeq` / `lastStoreId`: the file's largest so far. */
export function readQueued(
  type: Rec.Stored | Rec.Entry,
  r: RecordReader,
  refs: ReadRefs,
  lastSeq: number,
  lastStoreId: number,
): QueuedRead {
  const clientId = refs.name(r);
  const seq = lastSeq + r.varint();
  const idField = r.varint();
  const storeId = type === Rec.Stored ? lastStoreId + idField : lastStoreId - idField;
  if (seq > Number.MAX_SAFE_INTEGER || storeId > Number.MAX_SAFE_INTEGER || storeId < 1)
    throw new CorruptRecordError(`queue record numbers out of range (seq ${seq}, id ${storeId})`);
  const f = r.byte();
  const qos = f & 3;
  if (qos === 3 || ((f >> 3) & 3) === 3) throw new CorruptRecordError('QoS 3 in a queue record');
  let expiresAt = 0;
  let subIds: number[] | undefined;
  let sentPid = 0;
  let relPid = 0;
  if ((f & EXTRA) !== 0) {
    const f2 = r.byte();
    if ((f2 & HAS_EXPIRY) !== 0) expiresAt = r.f64checked();
    if ((f2 & HAS_SUB_IDS) !== 0) {
      const n = r.varint();
      if (n > r.left) throw new CorruptRecordError(`${n} subscription ids in ${r.left} bytes`);
      subIds = [];
      for (let i = 0; i < n; i++) subIds.push(r.varint());
    }
    if ((f2 & (SENT | RELEASED)) !== 0) {
      const pid = r.u16checked();
      if ((f2 & RELEASED) !== 0) relPid = pid;
      else sentPid = pid;
    }
  }
  let msg: Message | undefined;
  if (type === Rec.Stored) {
    const head = refs.head(r);
    const n = r.varint();
    // each user property takes at least two bytes (a name reference and a length)
    if (n > r.left / 2) throw new CorruptRecordError(`${n} user properties in ${r.left} bytes`);
    let properties = head.properties === undefined ? undefined : { ...head.properties };
    if (n > 0) {
      const up: UserProperties = [];
      for (let i = 0; i < n; i++) {
        const k = refs.name(r);
        up.push([k, r.take(r.varint()).toString('utf8')]);
      }
      properties = { ...properties, userProperties: up };
    }
    msg = {
      topic: head.topic,
      payload: r.take(r.left).slice(),
      qos: ((f >> 3) & 3) as QoS,
      retain: (f & 0x20) !== 0,
      properties,
      expiresAt,
      storeId,
      storeRefs: 0,
      owned: true,
    };
  } else if (r.left !== 0) throw new CorruptRecordError(`${r.left} bytes after a queue entry`);
  return { clientId, seq, storeId, qos: qos as QoS, retain: (f & 4) !== 0, subIds, sentPid, relPid, msg };
}

/** Reads a `Del` / `Sent` / `Rel` record (`pid` 0 for `Del`). */
export function readMark(
  type: Rec.Del | Rec.Sent | Rec.Rel,
  r: RecordReader,
  refs: ReadRefs,
  lastSeq: number,
): { clientId: string; seq: number; pid: number } {
  const clientId = refs.name(r);
  const seq = lastSeq - r.varint();
  const pid = type === Rec.Del ? 0 : r.u16checked();
  if (r.left !== 0) throw new CorruptRecordError(`${r.left} bytes after a queue mark`);
  return { clientId, seq, pid };
}
