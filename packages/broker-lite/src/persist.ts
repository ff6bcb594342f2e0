/**
 * Durability: an append-only log of state changes, one CRC-guarded record each, written with
 * group commit (every record of one event-loop turn in one write, one fdatasync, then the
 * PUBACKs/PUBRECs that waited for it), and compacted into a snapshot of the live state every
 * autosave interval or when the log has grown well past the last snapshot. Recovery replays
 * the file and cuts it at the first torn or corrupt record.
 *
 * Record: u32 length of (type + body), u32 CRC-32 of (type + body), u8 type, body.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type ConnectPacket, decode, type PublishPacket, type QoS, type Will } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';
import { crc32 } from './crc32.ts';
import type { Delivery, Message } from './message.ts';
import { type Session, Subscription } from './session.ts';
import { tooDeep, topicForLog } from './topic-levels.ts';

const MAGIC = Buffer.from('BLITEDB1');
const FILE = 'broker-lite.db';
/** Files hold payloads and user names: owner only. */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
/** While the disk refuses writes, a snapshot of the live state is tried this often. */
const RETRY_MS = 1000;
/** After a size-triggered compaction failed (the log is kept and appended to), wait this long. */
const COMPACT_RETRY_MS = 10_000;

enum Rec {
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
}

/**
 * Grows records into one buffer per turn. Only complete records are handed out: a record begun
 * and not ended (something threw while it was being written) is dropped by the next begin() or
 * take(), so an exception can never leave unframed bytes in the log.
 */
class RecordWriter {
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

class RecordReader {
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
}

/** write(2) until all of `buf` is written: a short write (a disk filling up) is not the end. */
function writeAll(fd: number, buf: Uint8Array): void {
  for (let off = 0; off < buf.length; ) {
    const n = fs.writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) throw new Error('write made no progress');
    off += n;
  }
}

function writeSession(w: RecordWriter, s: Session): void {
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

function writeSub(w: RecordWriter, clientId: string, sub: Subscription): void {
  w.begin(Rec.SubPut);
  w.str(clientId);
  w.str(sub.filter);
  w.u8(sub.qos | (sub.noLocal ? 4 : 0) | (sub.retainAsPublished ? 8 : 0) | (sub.retainHandling << 4));
  w.u32(sub.id ?? 0);
  w.end();
}

function pidRecord2(w: RecordWriter, type: Rec, clientId: string, seq: number, pid: number): void {
  w.begin(type);
  w.str(clientId);
  w.f64(seq);
  w.u16(pid);
  w.end();
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

export class Persistence {
  private fd = -1;
  private readonly file: string;
  private readonly w = new RecordWriter();
  private writing = false;
  private commitScheduled = false;
  private ackConns: Connection[] = [];
  private ackData: number[] = [];
  /** Connections whose output waits for the commit being gathered. */
  private held: Connection[] = [];
  private nextStoreId = 1;
  private nextSeq = 1;
  /** Messages with a smaller store id have no Msg record in the current file (an older one had). */
  private logFirstId = 1;
  /** Bytes of the log known to be on disk: its length after the last synced write. */
  private logBytes = 0;
  private snapshotBytes = 0;
  private compactWanted = false;
  /** Date.now() before which a failed compaction is not tried again. */
  private compactAfter = 0;
  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /**
   * The log could not be written (a full disk, an I/O error): what is in memory is ahead of the
   * disk. New QoS 1/2 messages are refused, acknowledgements and held output wait, and a
   * snapshot of the live state is tried every RETRY_MS; the first that is written whole ends it.
   */
  refusing = false;
  /** MQTT 3.1.1 publishers whose message was dropped unacknowledged while refusing. */
  private readonly refusedConns = new Set<Connection>();
  /** fsync batches done (for tests and stats). */
  syncs = 0;
  /**
   * For /metrics, two clock reads per batch (never per message): the appends' fdatasync time
   * (sum, count, largest), when the batch being written began, when the refusal began, and the
   * snapshots written and what they took.
   */
  readonly timing = {
    syncSeconds: 0,
    syncCount: 0,
    syncMaxSeconds: 0,
    /** performance.now() when the batch now being written was taken; 0 when none is. */
    writingSince: 0,
    /** Date.now() when the store began refusing; 0 when it is not. */
    refusingSince: 0,
    snapshots: 0,
    snapshotSeconds: 0,
  };

  constructor(
    private readonly b: Broker,
    private readonly dir: string,
    private readonly autosaveSeconds: number,
    /** persistence_commit_window: ms to gather records before a commit; 0 = the turn's end. */
    private readonly commitWindowMs = 0,
  ) {
    this.file = path.join(dir, FILE);
  }

  /** True while records of this turn or an earlier one are not known to be on disk. */
  get unsynced(): boolean {
    return this.w.done > 0 || this.writing || this.refusing;
  }

  async open(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: DIR_MODE });
    // A snapshot a crash interrupted: never part of the state (the rename did not happen).
    fs.rmSync(`${this.file}.tmp`, { force: true });
    const exists = fs.existsSync(this.file);
    if (exists) this.recover();
    if (!this.snapshot() && exists) {
      // No room for a snapshot (a full disk at start): the recovered log is the state, and new
      // records are appended to it until a compaction fits.
      try {
        fs.chmodSync(this.file, FILE_MODE);
        this.fd = fs.openSync(this.file, 'a', FILE_MODE);
        this.snapshotBytes = this.logBytes = fs.fstatSync(this.fd).size;
        // The recovered sessions' records are in that log: later ones are appended to it.
        for (const s of this.b.sessions.values()) s.stored = s.persistent;
      } catch (err) {
        this.enterRefusing(err as Error);
      }
    } else if (this.fd < 0) this.enterRefusing(new Error('no room for a new persistence file'));
    if (this.autosaveSeconds > 0) {
      this.timer = setInterval(() => {
        this.compactWanted = true;
        this.schedule();
      }, this.autosaveSeconds * 1000);
      this.timer.unref();
    }
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    if (this.retryTimer !== null) clearInterval(this.retryTimer);
    while (this.writing) await new Promise((r) => setTimeout(r, 5));
    if (!this.snapshot()) {
      // The log on disk still holds everything acknowledged; add this turn's records if it can.
      const rest = this.w.take();
      if (!this.refusing && this.fd >= 0 && rest.length > 0) {
        try {
          writeAll(this.fd, rest);
          fs.fdatasyncSync(this.fd);
        } catch {
          // nothing in `rest` was acknowledged
        }
      }
      this.b.log('error', 'final persistence snapshot failed; the log is kept as it is', { file: this.file });
    }
    this.releaseAllHeld();
    this.closed = true;
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  // ---- records -------------------------------------------------------------------------

  sessionPut(s: Session): void {
    const first = !s.stored;
    s.stored = true;
    writeSession(this.w, s);
    if (first && s.hasSubscriptions) for (const sub of s.subs.values()) this.subPut(s, sub);
    this.schedule();
  }

  sessionDel(s: Session): void {
    s.stored = false;
    const w = this.w;
    w.begin(Rec.SessionDel);
    w.str(s.clientId);
    w.end();
    this.schedule();
  }

  subPut(s: Session, sub: Subscription): void {
    if (!s.stored) return;
    writeSub(this.w, s.clientId, sub);
    this.schedule();
  }

  subDel(s: Session, filter: string): void {
    if (!s.stored) return;
    const w = this.w;
    w.begin(Rec.SubDel);
    w.str(s.clientId);
    w.str(filter);
    w.end();
    this.schedule();
  }

  queueAdd(s: Session, d: Delivery): void {
    if (!s.stored) return;
    const msg = d.msg;
    if (msg.storeId < this.logFirstId) this.writeMsg(msg);
    msg.storeRefs++;
    const seq = this.nextSeq++;
    d.seq = seq;
    this.writeQueueAdd(this.w, s.clientId, d, seq, msg.storeId);
    this.schedule();
  }

  queueDel(s: Session, d: Delivery): void {
    if (d.seq === undefined || !s.stored) return;
    d.msg.storeRefs--;
    const w = this.w;
    w.begin(Rec.QueueDel);
    w.str(s.clientId);
    w.f64(d.seq);
    w.end();
    d.seq = undefined;
    this.schedule();
  }

  /**
   * `d` was just written to `conn` under `d.pid`. QoS 2 bytes wait for this record's commit: a
   * crash must not leave the client holding an id the restarted broker does not know. QoS 1
   * bytes go at once (the record rides in the same commit): in the one-fsync window a crash can
   * make the message come again under a new id, a duplicate QoS 1 allows, and holding would
   * cost a persistent QoS 1 subscriber one fsync per in-flight window (measured: 2.3x slower).
   */
  queueSent(s: Session, d: Delivery, conn: Connection): void {
    if (d.seq === undefined || !s.stored) return;
    pidRecord2(this.w, Rec.QueueSent, s.clientId, d.seq, d.pid);
    if (d.qos === 2) this.hold(conn);
    this.schedule();
  }

  /** PUBREC arrived for `d`; the PUBREL about to be written to `conn` waits for this record. */
  queueReleased(s: Session, d: Delivery, conn: Connection): void {
    if (d.seq === undefined || !s.stored) return;
    pidRecord2(this.w, Rec.QueueRel, s.clientId, d.seq, d.pid);
    this.hold(conn);
    this.schedule();
  }

  private hold(conn: Connection): void {
    if (conn.holdNext || conn.closed) return;
    conn.holdNext = true;
    this.held.push(conn);
  }

  private releaseAllHeld(): void {
    const held = this.held;
    this.held = [];
    for (const c of held) {
      c.holdNext = false;
      c.commitDone();
    }
  }

  incomingAdd(s: Session, pid: number): void {
    this.pidRecord(Rec.InAdd, s, pid);
  }

  incomingDel(s: Session, pid: number): void {
    this.pidRecord(Rec.InDel, s, pid);
  }

  retainPut(msg: Message): void {
    this.writeRetain(this.w, msg);
    this.schedule();
  }

  /** Encoded before the record begins: an encoder that throws leaves the writer as it was. */
  private writeRetain(w: RecordWriter, msg: Message): void {
    const bytes = this.publishBytes(msg);
    w.begin(Rec.RetainPut);
    w.f64(msg.expiresAt);
    w.bytes(bytes);
    w.end();
  }

  willPut(clientId: string, username: string | undefined, will: Will, dueAt: number): void {
    this.writeWill(this.w, clientId, username, will, dueAt);
    this.schedule();
  }

  willDel(clientId: string): void {
    const w = this.w;
    w.begin(Rec.WillDel);
    w.str(clientId);
    w.end();
    this.schedule();
  }

  private writeWill(
    w: RecordWriter,
    clientId: string,
    username: string | undefined,
    will: Will,
    dueAt: number,
  ): void {
    // The codec's CONNECT already carries a will with its properties and a user name.
    const bytes = this.b.writer.encode(
      { type: 'connect', protocolVersion: 5, clientId, clean: true, keepalive: 0, username, will },
      5,
    );
    w.begin(Rec.WillPut);
    w.f64(dueAt);
    w.bytes(bytes);
    w.end();
  }

  retainDel(topic: string): void {
    const w = this.w;
    w.begin(Rec.RetainDel);
    w.str(topic);
    w.end();
    this.schedule();
  }

  private pidRecord(type: Rec, s: Session, pid: number): void {
    if (!s.stored) return;
    const w = this.w;
    w.begin(type);
    w.str(s.clientId);
    w.u16(pid);
    w.end();
    this.schedule();
  }

  private writeMsg(msg: Message): void {
    this.writeMsgRecord(this.w, msg, this.nextStoreId);
    msg.storeId = this.nextStoreId++;
  }

  /** Encoded before the record begins: an encoder that throws leaves the writer as it was. */
  private writeMsgRecord(w: RecordWriter, msg: Message, storeId: number): void {
    const bytes = this.publishBytes(msg);
    w.begin(Rec.Msg);
    w.f64(storeId);
    w.f64(msg.expiresAt);
    w.bytes(bytes);
    w.end();
  }

  private writeQueueAdd(w: RecordWriter, clientId: string, d: Delivery, seq: number, storeId: number): void {
    w.begin(Rec.QueueAdd);
    w.str(clientId);
    w.f64(seq);
    w.f64(storeId);
    w.u8(d.qos | (d.retain ? 4 : 0));
    const ids = d.subIds ?? [];
    w.u8(Math.min(ids.length, 255));
    for (let i = 0; i < ids.length && i < 255; i++) w.u32(ids[i]);
    w.end();
  }

  /** The message as an MQTT 5 PUBLISH: topic, payload, QoS, retain and properties in one codec call. */
  private publishBytes(msg: Message): Uint8Array {
    return this.b.writer.encode(
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

  // ---- group commit --------------------------------------------------------------------

  /** Sends this ack once everything written so far is on disk (acks keep their order). */
  deferAck(conn: Connection, first: number, pid: number, rc: number): void {
    conn.pendingAcks++;
    if (first === 0x40) conn.pendingPubacks++;
    this.ackConns.push(conn);
    this.ackData.push((first << 24) | (rc << 16) | pid);
    this.schedule();
  }

  /**
   * An MQTT 3.1.1 QoS 1/2 message was dropped unacknowledged while refusing (3.1.1 has no
   * negative PUBACK): the connection is closed once the disk takes writes again, so that its
   * client re-sends what it still holds (MQTT 3.1.1 section 4.4).
   */
  refusedUnacked(conn: Connection): void {
    const set = this.refusedConns;
    // Clients that reconnect during a long outage would pile up: drop the closed ones now and then.
    if (set.size >= 64 && (set.size & (set.size - 1)) === 0) {
      for (const c of set) if (c.closed) set.delete(c);
    }
    set.add(conn);
  }

  private schedule(): void {
    if (this.commitScheduled || this.writing || this.closed) return;
    this.commitScheduled = true;
    if (this.commitWindowMs > 0) setTimeout(this.commit, this.commitWindowMs);
    else setImmediate(this.commit);
  }

  private readonly commit = (): void => {
    this.commitScheduled = false;
    if (this.writing || this.closed) return;
    if (this.refusing) {
      // The snapshot that ends the outage holds these changes; acks and held output wait for it.
      this.w.clear();
      return;
    }
    const conns = this.ackConns;
    const data = this.ackData;
    this.ackConns = [];
    this.ackData = [];
    // Autosave asks at its own pace; the size trigger waits a while after a compaction failed.
    if (
      this.compactWanted ||
      (this.logBytes > Math.max(8 << 20, this.snapshotBytes * 4) && Date.now() >= this.compactAfter)
    ) {
      this.compactWanted = false;
      if (this.snapshot()) {
        this.w.clear();
        this.releaseAllHeld();
        this.releaseAcks(conns, data);
        return;
      }
      // The log stays the store: this turn's records are appended to it as usual.
      this.compactAfter = Date.now() + COMPACT_RETRY_MS;
    }
    if (this.w.done === 0) {
      this.releaseAllHeld();
      this.releaseAcks(conns, data);
      return;
    }
    const chunk = this.w.take();
    const held = this.held;
    this.held = [];
    for (const c of held) {
      c.holdNext = false;
      c.holdWriting = true;
      c.holdLen = c.outLength;
    }
    this.writing = true;
    this.timing.writingSince = performance.now();
    this.append(chunk, 0, conns, data, held);
  };

  /** Acknowledgements waiting for the disk. */
  get pendingAcks(): number {
    return this.ackConns.length;
  }

  /** Bytes of the log on disk. */
  get logSize(): number {
    return this.logBytes;
  }

  /**
   * Seconds the oldest state not yet on disk has waited: the batch being written (its write and
   * fdatasync), or, while the disk refuses writes, since the refusal began. 0 when all is synced.
   */
  get lagSeconds(): number {
    if (this.refusing && this.timing.refusingSince > 0)
      return (Date.now() - this.timing.refusingSince) / 1000;
    if (this.writing && this.timing.writingSince > 0)
      return (performance.now() - this.timing.writingSince) / 1000;
    return 0;
  }

  /** Writes `chunk[from..]` to the log, again after a short write, then syncs and releases. */
  private append(chunk: Buffer, from: number, conns: Connection[], data: number[], held: Connection[]): void {
    fs.write(this.fd, chunk, from, chunk.length - from, null, (err, n) => {
      if (err) return this.failed(err, conns, data, held);
      if (from + n < chunk.length) {
        if (n > 0) return this.append(chunk, from + n, conns, data, held);
        return this.failed(new Error('write made no progress'), conns, data, held);
      }
      const syncStarted = performance.now();
      fs.fdatasync(this.fd, (err2) => {
        if (err2) return this.failed(err2, conns, data, held);
        const t = this.timing;
        const took = (performance.now() - syncStarted) / 1000;
        t.syncSeconds += took;
        t.syncCount++;
        if (took > t.syncMaxSeconds) t.syncMaxSeconds = took;
        t.writingSince = 0;
        this.writing = false;
        this.logBytes += chunk.length;
        this.syncs++;
        for (const c of held) if (!c.closed) c.commitDone();
        this.releaseAcks(conns, data);
        if (this.w.done > 0 || this.ackConns.length > 0 || this.compactWanted) this.schedule();
      });
    });
  }

  private failed(err: NodeJS.ErrnoException, conns: Connection[], data: number[], held: Connection[]): void {
    this.writing = false;
    this.timing.writingSince = 0;
    // Part of the batch may be in the file: cut it, so no torn record stays in front of later
    // ones (recovery would cut there too, and everything after it). The snapshot that ends the
    // outage replaces the file anyway.
    try {
      fs.ftruncateSync(this.fd, this.logBytes);
    } catch {
      // the snapshot replaces the file
    }
    for (const c of held) {
      c.holdWriting = false;
      this.hold(c);
    }
    // Nothing of this batch is acknowledged: its acks wait, in front of later ones, for the
    // snapshot that puts the state on disk.
    this.ackConns = conns.concat(this.ackConns);
    this.ackData = data.concat(this.ackData);
    this.enterRefusing(err);
  }

  private enterRefusing(err: NodeJS.ErrnoException): void {
    if (!this.refusing) {
      this.refusing = true;
      this.timing.refusingSince = Date.now();
      this.b.log('error', 'persistence write failed', {
        error: err.message,
        code: err.code,
        file: this.file,
        effect: 'new QoS 1/2 messages refused until the disk takes writes again',
      });
    }
    if (this.retryTimer === null && !this.closed) {
      this.retryTimer = setInterval(this.retry, RETRY_MS);
      this.retryTimer.unref();
    }
  }

  /** While refusing: a snapshot of the live state; the first one written whole ends the outage. */
  private readonly retry = (): void => {
    if (this.writing || this.closed || !this.refusing) return;
    if (!this.roomFor(this.snapshotBytes) || !this.snapshot(true)) return;
    clearInterval(this.retryTimer as NodeJS.Timeout);
    this.retryTimer = null;
    this.refusing = false;
    this.timing.refusingSince = 0;
    this.compactWanted = false;
    this.w.clear();
    this.b.log('notice', 'persistence writable again', { file: this.file });
    this.releaseAllHeld();
    const conns = this.ackConns;
    const data = this.ackData;
    this.ackConns = [];
    this.ackData = [];
    this.releaseAcks(conns, data);
    for (const c of this.refusedConns) c.close();
    this.refusedConns.clear();
  };

  /** Whether the file system has `bytes` free (true when it cannot tell). */
  private roomFor(bytes: number): boolean {
    try {
      const st = fs.statfsSync(this.dir);
      return st.bavail * st.bsize >= bytes;
    } catch {
      return true;
    }
  }

  private releaseAcks(conns: Connection[], data: number[]): void {
    for (let i = 0; i < conns.length; i++) {
      const c = conns[i];
      const v = data[i];
      c.pendingAcks--;
      if (v >>> 24 === 0x40) c.pendingPubacks--;
      if (!c.closed) c.sendAck(v >>> 24, v & 0xffff, (v >> 16) & 0xff);
    }
  }

  // ---- snapshot and recovery -----------------------------------------------------------

  /**
   * Writes the live state to a new file, syncs it, and swaps it in for the log. False when the
   * file could not be written whole: then the log, and the store ids and sequence numbers in
   * memory that refer to it, are left as they were. `quiet`: no log line for a failure.
   */
  private snapshot(quiet = false): boolean {
    const b = this.b;
    const w = new RecordWriter();
    // New ids for the new file, put in place only once it has replaced the log.
    const ids = new Map<Message, number>();
    const entries: Delivery[] = [];
    let nextId = this.nextStoreId;
    let nextSeq = this.nextSeq;
    try {
      b.retain.forEach((msg) => {
        if (!msg.topic.startsWith('$SYS/')) this.writeRetain(w, msg);
      });
      for (const s of b.sessions.values()) {
        if (!s.persistent) continue;
        writeSession(w, s);
        if (s.hasSubscriptions) for (const sub of s.subs.values()) writeSub(w, s.clientId, sub);
        const live: Delivery[] = s.inflightCount > 0 ? [...s.inflight.values()] : [];
        for (let i = s.qHead; i < s.queue.length; i++) {
          const d = s.queue[i];
          if (d !== undefined) live.push(d);
        }
        for (const d of live) {
          let id = ids.get(d.msg);
          if (id === undefined) {
            id = nextId++;
            ids.set(d.msg, id);
            this.writeMsgRecord(w, d.msg, id);
          }
          const seq = nextSeq++;
          entries.push(d);
          this.writeQueueAdd(w, s.clientId, d, seq, id);
          if (d.state === 1) pidRecord2(w, Rec.QueueRel, s.clientId, seq, d.pid);
          else if (d.pid !== 0) pidRecord2(w, Rec.QueueSent, s.clientId, seq, d.pid);
        }
        if (s.incomingQos2 !== null)
          for (const pid of s.incomingQos2) {
            w.begin(Rec.InAdd);
            w.str(s.clientId);
            w.u16(pid);
            w.end();
          }
      }
      b.wills.forEach((clientId, username, will, dueAt) => {
        this.writeWill(w, clientId, username, will, dueAt);
      });
    } catch (err) {
      b.log('error', 'persistence snapshot could not be encoded; the log is kept', { error: String(err) });
      return false;
    }
    const body = w.take();
    if (!this.replaceLog(body, quiet)) return false;
    // The new file is the log now: its ids are the ones that count.
    this.logFirstId = this.nextStoreId;
    for (const [msg, id] of ids) msg.storeId = id;
    let seq = this.nextSeq;
    for (const d of entries) {
      if (d.seq === undefined) d.msg.storeRefs++;
      d.seq = seq++;
    }
    this.nextStoreId = nextId;
    this.nextSeq = nextSeq;
    for (const s of b.sessions.values()) s.stored = s.persistent;
    return true;
  }

  /**
   * Writes MAGIC + `body` to a temporary file (0600) completely, syncs it and renames it over
   * the log; reopens the log for appending. False, with the temporary file removed and the log
   * untouched, when any step before the rename fails (ENOSPC included).
   */
  private replaceLog(body: Buffer, quiet: boolean): boolean {
    const tmp = `${this.file}.tmp`;
    const started = Date.now();
    let fd = -1;
    try {
      fd = fs.openSync(tmp, 'w', FILE_MODE);
      // A temporary file left by a killed process keeps its old mode through open(): set it.
      fs.fchmodSync(fd, FILE_MODE);
      writeAll(fd, MAGIC);
      writeAll(fd, body);
      fs.fdatasyncSync(fd);
      fs.closeSync(fd);
      fd = -1;
      fs.renameSync(tmp, this.file);
    } catch (err) {
      if (fd >= 0) fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      if (!quiet)
        this.b.log('error', 'persistence snapshot failed; the log is kept', {
          error: (err as Error).message,
          code: (err as NodeJS.ErrnoException).code,
          file: tmp,
        });
      return false;
    }
    try {
      const dfd = fs.openSync(this.dir, 'r');
      fs.fsyncSync(dfd);
      fs.closeSync(dfd);
    } catch {
      // some filesystems cannot sync a directory; the rename is still atomic
    }
    if (this.fd >= 0) fs.closeSync(this.fd);
    try {
      this.fd = fs.openSync(this.file, 'a', FILE_MODE);
    } catch {
      this.fd = -1; // the next append fails, and the refusal's retries reopen it
    }
    this.snapshotBytes = this.logBytes = MAGIC.length + body.length;
    this.syncs++;
    this.timing.snapshots++;
    this.timing.snapshotSeconds += (Date.now() - started) / 1000;
    this.b.log('information', 'persistence snapshot written', {
      file: this.file,
      bytes: this.logBytes,
      ms: Date.now() - started,
    });
    return true;
  }

  /** Replays the file into the broker; cuts a torn or corrupt tail. */
  private recover(): void {
    const buf = fs.readFileSync(this.file);
    const b = this.b;
    if (buf.length < MAGIC.length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
      const aside = `${this.file}.corrupt-${Date.now()}`;
      fs.renameSync(this.file, aside);
      fs.chmodSync(aside, FILE_MODE);
      b.log('error', 'persistence file not recognised; moved aside', { file: aside });
      return;
    }
    const sessions = new Map<string, RecoveredSession>();
    const msgs = new Map<number, Message>();
    const retained = new Map<string, Message>();
    const wills = new Map<string, { username: string | undefined; will: Will; dueAt: number }>();
    let pos = MAGIC.length;
    let records = 0;
    while (pos < buf.length) {
      if (pos + 9 > buf.length) break;
      const len = buf.readUInt32LE(pos);
      const crc = buf.readUInt32LE(pos + 4);
      if (len < 1 || pos + 8 + len > buf.length) break;
      if (crc32(buf, pos + 8, pos + 8 + len) !== crc) break;
      try {
        this.apply(new RecordReader(buf, pos + 8, pos + 8 + len), sessions, msgs, retained, wills);
      } catch (err) {
        b.log('error', 'persistence record unreadable; stopping replay there', {
          offset: pos,
          error: String(err),
        });
        break;
      }
      pos += 8 + len;
      records++;
    }
    if (pos < buf.length) {
      b.log('warning', 'persistence log had a torn or corrupt tail; cut it', {
        file: this.file,
        keptBytes: pos,
        cutBytes: buf.length - pos,
      });
      fs.truncateSync(this.file, pos);
    }
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
      file: this.file,
      records,
      sessions: sessions.size,
      queued,
      retained: retained.size,
      wills: wills.size,
    });
  }

  private apply(
    r: RecordReader,
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
        const msg = this.readPublish(r.bytes(), expiresAt);
        msg.storeId = storeId;
        msgs.set(storeId, msg);
        if (storeId >= this.nextStoreId) this.nextStoreId = storeId + 1;
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
        if (seq >= this.nextSeq) this.nextSeq = seq + 1;
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
        const e = s?.queue.get(seq);
        if (e === undefined) return;
        if (type === Rec.QueueRel) e.relPid = pid;
        else e.sentPid = pid;
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
        const msg = this.readPublish(r.bytes(), expiresAt);
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

  private readPublish(bytes: Uint8Array, expiresAt: number): Message {
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
}

/** Decoding what this broker stored itself. */
const TRUSTED = { maxUserProperties: Number.POSITIVE_INFINITY };

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
