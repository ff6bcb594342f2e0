/**
 * Recovery (cf. Mosquitto's persist_read.c): the file is read whole, each record checked and
 * applied to a plain model of the state, and the live state built from that model at the end.
 */
import fs from 'node:fs';
import { type ConnectPacket, decode, type QoS, type Will } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import { crc32 } from './crc32.ts';
import type { Delivery, Message } from './message.ts';
import { ReadRefs, readMark, readQueued } from './persist-entry.ts';
import { FILE_MODE, MAGIC, MAGIC_V1, Rec, RecordReader, readPublish, TRUSTED } from './persist-format.ts';
import { Subscription } from './session.ts';
import { tooDeep, topicForLog } from './topic-levels.ts';

/** Where the log's numbering continues after recovery. */
export interface Counters {
  nextStoreId: number;
  nextSeq: number;
  /** Names the file defined (format 2): where appended records continue its table. */
  names: number;
}

interface RecoveredEntry {
  storeId: number;
  qos: QoS;
  retain: boolean;
  subIds: number[] | undefined;
  relPid: number;
  sentPid: number;
}
interface RecoveredSession {
  expiry: number;
  /** Stored end of the offline session (ms); 0: none stored (connected, never, older record). */
  expiresAt: number;
  username: string | undefined;
  subs: Map<string, { qos: QoS; flags: number; id: number }>;
  queue: Map<number, RecoveredEntry>;
  incoming: Set<number>;
}

/**
 * Replays `file` into the broker (sessions, subscriptions, queues, retained messages, wills);
 * cuts a torn or corrupt tail, moves an unrecognised file aside. Returns the next store id and
 * queue sequence number the log's later records must use.
 */
export function recoverFile(b: Broker, file: string): Counters {
  const counters: Counters = { nextStoreId: 1, nextSeq: 1, names: 0 };
  const buf = fs.readFileSync(file);
  const magic = buf.subarray(0, MAGIC.length);
  // Format 1 files hold only the records format 2 kept, read the same way.
  if (buf.length < MAGIC.length || !(magic.equals(MAGIC) || magic.equals(MAGIC_V1))) {
    const aside = `${file}.corrupt-${Date.now()}`;
    fs.renameSync(file, aside);
    fs.chmodSync(aside, FILE_MODE);
    b.log('error', 'persistence file not recognised; moved aside', { file: aside });
    return counters;
  }
  const sessions = new Map<string, RecoveredSession>();
  const msgs = new Map<number, Message>();
  const retained = new Map<string, Message>();
  const wills = new Map<string, { username: string | undefined; will: Will; dueAt: number }>();
  const refs = new ReadRefs();
  // Names of the records kept: one that failed half-way may have defined some, and is cut off.
  let names = 0;
  let pos = MAGIC.length;
  let records = 0;
  while (pos < buf.length) {
    if (pos + 9 > buf.length) break;
    const len = buf.readUInt32LE(pos);
    const crc = buf.readUInt32LE(pos + 4);
    if (len < 1 || pos + 8 + len > buf.length) break;
    if (crc32(buf, pos + 8, pos + 8 + len) !== crc) break;
    try {
      apply(counters, new RecordReader(buf, pos + 8, pos + 8 + len), refs, sessions, msgs, retained, wills);
    } catch (err) {
      b.log('error', 'persistence record unreadable; stopping replay there', {
        offset: pos,
        error: String(err),
      });
      break;
    }
    pos += 8 + len;
    records++;
    names = refs.count;
  }
  if (pos < buf.length) {
    b.log('warning', 'persistence log had a torn or corrupt tail; cut it', {
      file: file,
      keptBytes: pos,
      cutBytes: buf.length - pos,
    });
    fs.truncateSync(file, pos);
  }
  counters.names = names;
  // Rebuild the live state, without what an older version let grow deeper than
  // max_topic_levels: each level would be rebuilt as a node at every start (issue 12.3).
  const deep = new DeepTopics(b);
  for (const msg of retained.values()) if (!deep.drop('retained message', msg.topic)) b.retain.set(msg);
  const now = Date.now();
  let queued = 0;
  for (const [clientId, rs] of sessions) {
    const s = b.createSession(clientId);
    s.expiryInterval = rs.expiry;
    s.username = rs.username;
    // The stored end stands (the clock ran while the broker was down); persistent_client_
    // expiration, perhaps configured since, caps it from now. Without one it starts now.
    const fromNow = b.sessionExpiresAt(rs.expiry, now);
    s.expiresAt =
      rs.expiresAt === 0 ? fromNow : fromNow === 0 ? rs.expiresAt : Math.min(rs.expiresAt, fromNow);
    for (const [filter, o] of rs.subs) {
      if (deep.drop('subscription', filter, clientId)) continue;
      const sub = new Subscription(
        s,
        filter,
        (o.flags & 3) as QoS,
        (o.flags & 4) !== 0,
        (o.flags & 8) !== 0,
        ((o.flags >> 4) & 3) as 0 | 1 | 2,
        o.id === 0 ? undefined : o.id,
        filter.startsWith('$share/'),
      );
      s.subs.set(filter, sub);
      b.router.add(sub);
    }
    for (const e of rs.queue.values()) {
      const msg = msgs.get(e.storeId);
      if (msg === undefined) continue;
      const d: Delivery = { msg, qos: e.qos, retain: e.retain, subIds: e.subIds, pid: 0, state: 0 };
      if (e.relPid !== 0) {
        d.pid = e.relPid;
        d.state = 1;
        s.inflight.set(d.pid, d);
      } else if (e.sentPid !== 0) {
        // re-sent under the same id with DUP on reconnect (MQTT 3.1.1 / 5.0 section 4.4)
        d.pid = e.sentPid;
        s.inflight.set(d.pid, d);
      } else s.enqueue(d);
      queued++;
    }
    if (rs.incoming.size > 0) s.incomingQos2 = rs.incoming;
  }
  for (const [clientId, o] of wills)
    if (!deep.drop('will', o.will.topic, clientId)) b.wills.restore(clientId, o.username, o.will, o.dueAt);
  deep.log();
  b.log('notice', 'persistence recovered', {
    file,
    records,
    sessions: sessions.size,
    queued,
    retained: retained.size,
    wills: wills.size,
  });
  return counters;
}

function apply(
  c: Counters,
  r: RecordReader,
  refs: ReadRefs,
  sessions: Map<string, RecoveredSession>,
  msgs: Map<number, Message>,
  retained: Map<string, Message>,
  wills: Map<string, { username: string | undefined; will: Will; dueAt: number }>,
): void {
  const type = r.u8() as Rec;
  const sess = (id: string): RecoveredSession | undefined => sessions.get(id);
  switch (type) {
    case Rec.SessionPut: {
      const id = r.str();
      const expiry = r.u32();
      const username = r.u8() === 1 ? r.str() : undefined;
      const expiresAt = r.left >= 8 ? r.f64() : 0;
      const s = sessions.get(id);
      if (s !== undefined) {
        s.expiry = expiry;
        s.username = username;
        s.expiresAt = expiresAt;
      } else
        sessions.set(id, {
          expiry,
          username,
          expiresAt,
          subs: new Map(),
          queue: new Map(),
          incoming: new Set(),
        });
      return;
    }
    case Rec.SessionDel:
      sessions.delete(r.str());
      return;
    case Rec.SubPut: {
      const s = sess(r.str());
      const filter = r.str();
      const flags = r.u8();
      const id = r.u32();
      s?.subs.set(filter, { qos: (flags & 3) as QoS, flags, id });
      return;
    }
    case Rec.SubDel: {
      const s = sess(r.str());
      s?.subs.delete(r.str());
      return;
    }
    case Rec.Msg: {
      const storeId = r.f64();
      const expiresAt = r.f64();
      const msg = readPublish(r.bytes(), expiresAt);
      msg.storeId = storeId;
      msgs.set(storeId, msg);
      if (storeId >= c.nextStoreId) c.nextStoreId = storeId + 1;
      return;
    }
    case Rec.QueueAdd: {
      const s = sess(r.str());
      const seq = r.f64();
      const storeId = r.f64();
      const flags = r.u8();
      const n = r.u8();
      let subIds: number[] | undefined;
      for (let i = 0; i < n; i++) (subIds ??= []).push(r.u32());
      if (seq >= c.nextSeq) c.nextSeq = seq + 1;
      s?.queue.set(seq, {
        storeId,
        qos: (flags & 3) as QoS,
        retain: (flags & 4) !== 0,
        subIds,
        relPid: 0,
        sentPid: 0,
      });
      return;
    }
    case Rec.Stored:
    case Rec.Entry: {
      const e = readQueued(type, r, refs, c.nextSeq - 1, c.nextStoreId - 1);
      if (e.msg !== undefined) msgs.set(e.storeId, e.msg);
      if (e.storeId >= c.nextStoreId) c.nextStoreId = e.storeId + 1;
      if (e.seq >= c.nextSeq) c.nextSeq = e.seq + 1;
      sess(e.clientId)?.queue.set(e.seq, {
        storeId: e.storeId,
        qos: e.qos,
        retain: e.retain,
        subIds: e.subIds,
        relPid: e.relPid,
        sentPid: e.sentPid,
      });
      return;
    }
    case Rec.Del:
    case Rec.Sent:
    case Rec.Rel: {
      const m = readMark(type, r, refs, c.nextSeq - 1);
      const s = sess(m.clientId);
      if (type === Rec.Del) s?.queue.delete(m.seq);
      else markEntry(s?.queue.get(m.seq), type === Rec.Rel, m.pid);
      return;
    }
    case Rec.QueueDel: {
      const s = sess(r.str());
      s?.queue.delete(r.f64());
      return;
    }
    case Rec.QueueRel:
    case Rec.QueueSent: {
      const s = sess(r.str());
      const seq = r.f64();
      const pid = r.u16();
      markEntry(s?.queue.get(seq), type === Rec.QueueRel, pid);
      return;
    }
    case Rec.InAdd: {
      const s = sess(r.str());
      s?.incoming.add(r.u16());
      return;
    }
    case Rec.InDel: {
      const s = sess(r.str());
      s?.incoming.delete(r.u16());
      return;
    }
    case Rec.RetainPut: {
      const expiresAt = r.f64();
      const msg = readPublish(r.bytes(), expiresAt);
      retained.set(msg.topic, msg);
      return;
    }
    case Rec.RetainDel:
      retained.delete(r.str());
      return;
    case Rec.WillPut: {
      const dueAt = r.f64();
      const c = decode(r.bytes().slice(), 5, TRUSTED) as ConnectPacket;
      if (c.will !== undefined) wills.set(c.clientId, { username: c.username, will: c.will, dueAt });
      return;
    }
    case Rec.WillDel:
      wills.delete(r.str());
      return;
    default:
      throw new Error(`unknown record type ${type}`);
  }
}

function markEntry(e: RecoveredEntry | undefined, released: boolean, pid: number): void {
  if (e === undefined) return;
  if (released) e.relPid = pid;
  else e.sentPid = pid;
}

/** Counts what recovery leaves out for max_topic_levels, for one log line per kind. */
class DeepTopics {
  private readonly counts = new Map<string, { count: number; example: string; clientId?: string }>();
  constructor(private readonly b: Broker) {}

  /** True (and counted) when `topic` is deeper than the broker takes. */
  drop(what: string, topic: string, clientId?: string): boolean {
    if (!tooDeep(topic, this.b.maxTopicLevels)) return false;
    const c = this.counts.get(what);
    if (c !== undefined) c.count++;
    else this.counts.set(what, { count: 1, example: topicForLog(topic), clientId });
    return true;
  }

  log(): void {
    for (const [what, c] of this.counts)
      this.b.log('warning', 'persistence: dropped at load, topic deeper than max_topic_levels', {
        what,
        count: c.count,
        example: c.example,
        clientId: c.clientId,
        maxTopicLevels: this.b.maxTopicLevels,
      });
  }
}
