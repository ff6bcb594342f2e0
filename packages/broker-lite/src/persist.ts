/**
 * Durability: an append-only log of state changes, one CRC-guarded record each, written with
 * group commit (every record of one event-loop turn in one write, one fdatasync, then the
 * PUBACKs/PUBRECs that waited for it), and compacted into a snapshot of the live state every
 * autosave interval or when the log has grown well past the last snapshot. Recovery replays
 * the file and cuts it at the first torn or corrupt record.
 *
 * This file is what the broker calls: one method per state change, and open / close. The rest
 * is one file per concern, as Mosquitto's persist_read.c / persist_write.c:
 * persist-format.ts (records), persist-log.ts (group commit, fsync, a full disk),
 * persist-snapshot.ts (the snapshot written), persist-read.ts (recovery).
 */
import fs from 'node:fs';
import type { Will } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';
import type { Delivery, Message } from './message.ts';
import { FileRefs, writeMark, writeQueued } from './persist-entry.ts';
import {
  DIR_MODE,
  FILE_MODE,
  MAGIC,
  Rec,
  writeAll,
  writeClientPid,
  writeRetain,
  writeSession,
  writeSub,
  writeWill,
} from './persist-format.ts';
import { CommitLog } from './persist-log.ts';
import { recoverFile } from './persist-read.ts';
import { encodeSnapshot } from './persist-snapshot.ts';
import type { Session, Subscription } from './session.ts';

export class Persistence extends CommitLog {
  private nextStoreId = 1;
  private nextSeq = 1;
  /** Messages with a smaller store id have no record in the current file (an older one had). */
  private logFirstId = 1;
  /** The current file's back-references and numbering (persist-entry.ts). */
  private refs = new FileRefs();
  private timer: NodeJS.Timeout | null = null;
  /**
   * Queue entries added since the last commit, kept back (their records are encoded at the
   * commit): one removed before it (the subscriber acknowledged within the window) is never
   * written, nor its message when no other entry holds it. Entries with a sequence number from
   * `pendingFromSeq` on are these.
   */
  private pendingSessions: Session[] = [];
  private pendingEntries: Delivery[] = [];
  private pendingFromSeq = 1;
  /** Of those, the ones not settled yet: what a commit would write. */
  private pendingLive = 0;
  /** Queue entries settled before their commit: never written (for /metrics). */
  unwrittenEntries = 0;

  constructor(
    b: Broker,
    dir: string,
    private readonly autosaveSeconds: number,
    /** persistence_commit_window: ms to gather records before a commit; 0 = the turn's end. */
    commitWindowMs = 0,
  ) {
    super(b, dir, commitWindowMs);
  }

  async open(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: DIR_MODE });
    // A snapshot a crash interrupted: never part of the state (the rename did not happen).
    fs.rmSync(`${this.file}.tmp`, { force: true });
    const exists = fs.existsSync(this.file);
    let recoveredNames = 0;
    if (exists) {
      const next = recoverFile(this.b, this.file);
      this.nextStoreId = next.nextStoreId;
      this.nextSeq = next.nextSeq;
      this.pendingFromSeq = this.nextSeq;
      recoveredNames = next.names;
    }
    if (!this.snapshot() && exists) {
      // No room for a snapshot (a full disk at start): the recovered log is the state, and new
      // records are appended to it until a compaction fits.
      try {
        fs.chmodSync(this.file, FILE_MODE);
        markFormat2(this.file);
        this.fd = fs.openSync(this.file, 'a', FILE_MODE);
        this.snapshotBytes = this.logBytes = fs.fstatSync(this.fd).size;
        // appended records continue the log's names and numbering
        this.refs = new FileRefs(recoveredNames, this.nextSeq - 1, this.nextStoreId - 1);
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
      this.flushPending();
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
    // a session's entries follow its record, and never outlive its removal, in the log
    this.flushPending();
    writeSession(this.w, s);
    this.durable();
    if (first && s.hasSubscriptions) for (const sub of s.subs.values()) this.subPut(s, sub);
    this.schedule();
  }

  sessionDel(s: Session): void {
    s.stored = false;
    this.flushPending();
    const w = this.w;
    w.begin(Rec.SessionDel);
    w.str(s.clientId);
    w.end();
    this.durable();
    this.schedule();
  }

  subPut(s: Session, sub: Subscription): void {
    if (!s.stored) return;
    writeSub(this.w, s.clientId, sub);
    this.durable();
    this.schedule();
  }

  subDel(s: Session, filter: string): void {
    if (!s.stored) return;
    const w = this.w;
    w.begin(Rec.SubDel);
    w.str(s.clientId);
    w.str(filter);
    w.end();
    this.durable();
    this.schedule();
  }

  /** Kept back until the commit (flushPending); the publisher's ack waits for it (`unsynced`). */
  queueAdd(s: Session, d: Delivery): void {
    if (!s.stored) return;
    d.msg.storeRefs++;
    d.seq = this.nextSeq++;
    this.pendingSessions.push(s);
    this.pendingEntries.push(d);
    this.pendingLive++;
    this.schedule();
  }

  /**
   * Not synced on its own (no `durable()`): lost in a power cut, the entry comes back and a QoS 1
   * message is delivered again, which QoS 1 allows; a QoS 2 entry comes back as a PUBREL (it was
   * released, a durable record), which the receiver answers whether it knows the id or not. An
   * entry not yet written is only forgotten.
   */
  queueDel(s: Session, d: Delivery): void {
    if (d.seq === undefined || !s.stored) return;
    d.msg.storeRefs--;
    if (d.seq >= this.pendingFromSeq) {
      d.seq = undefined;
      this.unwrittenEntries++;
      if (--this.pendingLive === 0) this.commitEarly();
      return;
    }
    writeMark(this.w, this.refs, Rec.Del, s.clientId, d.seq, 0);
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
    if (d.qos === 2) this.hold(conn);
    // an entry kept back is encoded with its packet id at the commit
    if (d.seq >= this.pendingFromSeq) return;
    writeMark(this.w, this.refs, Rec.Sent, s.clientId, d.seq, d.pid);
    // QoS 1: losing the mark re-sends the message under a new id, a duplicate QoS 1 allows
    if (d.qos === 2) this.durable();
    this.schedule();
  }

  /** PUBREC arrived for `d`; the PUBREL about to be written to `conn` waits for this record. */
  queueReleased(s: Session, d: Delivery, conn: Connection): void {
    if (d.seq === undefined || !s.stored) return;
    this.flushPending();
    writeMark(this.w, this.refs, Rec.Rel, s.clientId, d.seq, d.pid);
    this.durable();
    this.hold(conn);
    this.schedule();
  }

  incomingAdd(s: Session, pid: number): void {
    this.pidRecord(Rec.InAdd, s, pid);
  }

  incomingDel(s: Session, pid: number): void {
    this.pidRecord(Rec.InDel, s, pid);
  }

  retainPut(msg: Message): void {
    writeRetain(this.w, this.b.writer, msg);
    this.durable();
    this.schedule();
  }

  willPut(clientId: string, username: string | undefined, will: Will, dueAt: number): void {
    writeWill(this.w, this.b.writer, clientId, username, will, dueAt);
    this.durable();
    this.schedule();
  }

  willDel(clientId: string): void {
    const w = this.w;
    w.begin(Rec.WillDel);
    w.str(clientId);
    w.end();
    this.durable();
    this.schedule();
  }

  retainDel(topic: string): void {
    const w = this.w;
    w.begin(Rec.RetainDel);
    w.str(topic);
    w.end();
    this.durable();
    this.schedule();
  }

  private pidRecord(type: Rec, s: Session, pid: number): void {
    if (!s.stored) return;
    writeClientPid(this.w, type, s.clientId, pid);
    this.durable();
    this.schedule();
  }

  // ---- entries kept back until the commit ----------------------------------------------

  protected get hasPending(): boolean {
    return this.pendingLive > 0;
  }

  /**
   * Encodes the entries kept back that are still queued or in flight, each as it is now (its
   * packet id and release state included), with its message when the file has none yet.
   */
  protected flushPending(): void {
    const entries = this.pendingEntries;
    if (entries.length === 0) return;
    const sessions = this.pendingSessions;
    this.pendingEntries = [];
    this.pendingSessions = [];
    this.pendingFromSeq = this.nextSeq;
    this.pendingLive = 0;
    const w = this.w;
    let wrote = false;
    for (let i = 0; i < entries.length; i++) {
      const d = entries[i];
      const s = sessions[i];
      if (d.seq === undefined || !s.stored) continue;
      const msg = d.msg;
      // the message goes with its first entry in this file
      const stored = msg.storeId < this.logFirstId;
      const id = stored ? this.nextStoreId : msg.storeId;
      writeQueued(w, this.refs, this.b.writer, s.clientId, d, d.seq, id, stored);
      // only once its record is written: the message's later entries refer to it
      if (stored) msg.storeId = this.nextStoreId++;
      wrote = true;
    }
    if (wrote) this.durable();
  }

  protected dropPending(): void {
    this.pendingEntries = [];
    this.pendingSessions = [];
    this.pendingFromSeq = this.nextSeq;
    this.pendingLive = 0;
  }

  // ---- snapshot ------------------------------------------------------------------------

  /**
   * Writes the live state to a new file, syncs it, and swaps it in for the log. False when the
   * file could not be written whole: then the log, and the store ids and sequence numbers in
   * memory that refer to it, are left as they were. `quiet`: no log line for a failure.
   */
  protected snapshot(quiet = false): boolean {
    const b = this.b;
    // New ids for the new file, put in place only once it has replaced the log.
    const snap = encodeSnapshot(b, this.nextStoreId, this.nextSeq);
    if (snap === undefined || !this.replaceLog(snap.body, quiet)) return false;
    // The new file is the log now: its ids are the ones that count.
    this.logFirstId = this.nextStoreId;
    for (const [msg, id] of snap.ids) msg.storeId = id;
    let seq = this.nextSeq;
    for (const d of snap.entries) {
      if (d.seq === undefined) d.msg.storeRefs++;
      d.seq = seq++;
    }
    this.nextStoreId = snap.nextStoreId;
    this.nextSeq = snap.nextSeq;
    this.refs = snap.refs;
    // the snapshot holds the entries kept back, under their new numbers
    this.dropPending();
    for (const s of b.sessions.values()) s.stored = s.persistent;
    return true;
  }
}

/**
 * A format 1 log kept as the store (no room for the snapshot at start) gets format 2 records
 * appended: its magic says so first, so that older code moves it aside instead of cutting it
 * at the first record it does not know. Eight bytes in place, synced.
 */
function markFormat2(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = Buffer.alloc(MAGIC.length);
    fs.readSync(fd, head, 0, head.length, 0);
    if (head.equals(MAGIC)) return;
    fs.writeSync(fd, MAGIC, 0, MAGIC.length, 0);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
