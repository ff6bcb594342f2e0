/**
 * The append log (cf. Mosquitto's persist_write.c): group commit (every record of one
 * event-loop turn, or of one persistence_commit_window, in one write and one fdatasync, then
 * the PUBACKs/PUBRECs and held output that waited for it), the size and autosave triggers for a
 * compaction, and the refusal while the disk takes no writes (a full disk, an I/O error).
 * What the records say is persist.ts's business; what a compaction writes, persist-snapshot.ts's.
 *
 * Flash wear (issue 18.4): a batch holding only records whose loss a power cut may cause (the
 * subclass says which: `durable()` marks the others) is written without an fdatasync, and
 * records the subclass keeps back (`flushPending`) are encoded only at the commit, so what was
 * settled before it is never written.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';
import { FILE, FILE_MODE, MAGIC, RecordWriter } from './persist-format.ts';
import { writeSnapshotFile } from './persist-snapshot.ts';

/** While the disk refuses writes, a snapshot of the live state is tried this often. */
const RETRY_MS = 1000;
/** After a size-triggered compaction failed (the log is kept and appended to), wait this long. */
const COMPACT_RETRY_MS = 10_000;
/**
 * Output held for a commit (a stored session's SUBACK / UNSUBACK, QoS 2 towards a persistent
 * session) stops everything the connection writes, PINGRESP included: under a longer window its
 * commit comes within this (the default window), so a window of minutes, chosen for flash wear
 * with an offline subscriber, does not stall a client past its keepalive.
 */
const HELD_WINDOW_MS = 50;
/** The page cache's (and most flash translation layers') unit of a rewrite. */
const PAGE = 4096;

export abstract class CommitLog {
  protected fd = -1;
  protected readonly file: string;
  /** This turn's records, written by the subclass, taken by the commit. */
  protected readonly w = new RecordWriter();
  protected writing = false;
  /** The batch being written ends with an fdatasync (acks of QoS 1/2 publishes wait for it). */
  private syncing = false;
  /** A record gathered since the last commit must be on disk before what waits for it goes out. */
  private needSync = false;
  private commitScheduled = false;
  /** The window's timer while a commit waits for it (cleared when the commit comes early). */
  private windowTimer: NodeJS.Timeout | null = null;
  /** performance.now() when the window's timer fires. */
  private windowDue = 0;
  private ackConns: Connection[] = [];
  private ackData: number[] = [];
  /** Connections whose output waits for the commit being gathered. */
  private held: Connection[] = [];
  /** Bytes of the log known to be on disk: its length after the last synced write. */
  protected logBytes = 0;
  protected snapshotBytes = 0;
  protected compactWanted = false;
  /** Date.now() before which a failed compaction is not tried again. */
  private compactAfter = 0;
  protected retryTimer: NodeJS.Timeout | null = null;
  protected closed = false;
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
  /** Bytes written to the log and its snapshots (/metrics; what flash is asked to store). */
  writtenBytes = 0;
  /**
   * 4 KiB pages those writes touched (/metrics): an append starting mid-page rewrites that page,
   * so this, not the bytes, is what flash programs (issue 18.4); `/proc/PID/io` adds the process's
   * other writes.
   */
  writtenPages = 0;
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
    protected readonly b: Broker,
    protected readonly dir: string,
    /** persistence_commit_window: ms to gather records before a commit; 0 = the turn's end. */
    private readonly commitWindowMs: number,
  ) {
    this.file = path.join(dir, FILE);
  }

  /**
   * Writes the live state to a new file and swaps it in for the log (persist.ts). False when it
   * could not be written whole: the log stays the store. `quiet`: no log line for a failure.
   */
  protected abstract snapshot(quiet?: boolean): boolean;

  /** Records the subclass keeps back until the commit: true while there are any. */
  protected abstract get hasPending(): boolean;
  /** Encodes the records kept back into `w` (at the commit, or before a record they must precede). */
  protected abstract flushPending(): void;
  /** Forgets the records kept back: a snapshot holds their state, or the refusal's will. */
  protected abstract dropPending(): void;

  /** The records gathered since the last commit include one that must be synced before its ack. */
  protected durable(): void {
    this.needSync = true;
  }

  /**
   * True while a record that must be on disk before an ack is not known to be there: gathered
   * and not yet committed, being written and synced, or the disk is refusing writes. Records
   * whose loss only redelivers a QoS 1 message (removals) do not count.
   */
  get unsynced(): boolean {
    return this.needSync || this.hasPending || this.syncing || this.refusing;
  }

  /**
   * What `conn` writes from now on waits for the commit of the records gathered so far: a SUBACK
   * or UNSUBACK of a stored session says the change survives a crash, and with a commit window
   * the records would otherwise reach the file up to the window after the client was told.
   */
  holdUntilCommit(conn: Connection): void {
    if (!this.unsynced) return;
    this.hold(conn);
    this.schedule();
  }

  protected hold(conn: Connection): void {
    if (conn.holdNext || conn.closed) return;
    conn.holdNext = true;
    this.held.push(conn);
    if (this.windowTimer !== null && this.windowDue - performance.now() > HELD_WINDOW_MS)
      this.startWindow(HELD_WINDOW_MS);
  }

  private startWindow(ms: number): void {
    if (this.windowTimer !== null) clearTimeout(this.windowTimer);
    this.windowDue = performance.now() + ms;
    this.windowTimer = setTimeout(this.commit, ms);
  }

  protected releaseAllHeld(): void {
    const held = this.held;
    this.held = [];
    for (const c of held) {
      c.holdNext = false;
      c.commitDone();
    }
  }

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

  protected schedule(): void {
    if (this.commitScheduled || this.writing || this.closed) return;
    this.commitScheduled = true;
    if (this.commitWindowMs > 0)
      this.startWindow(
        this.held.length > 0 ? Math.min(this.commitWindowMs, HELD_WINDOW_MS) : this.commitWindowMs,
      );
    else setImmediate(this.commit);
  }

  /**
   * Ends the window early when waiting out its rest gains nothing: acknowledgements wait and
   * nothing gathered needs a sync (every queue entry kept back was settled, typically by an online
   * subscriber's PUBACK). They go at once, with no fdatasync, so a publisher to persistent sessions
   * whose subscribers keep up is not held to one window per in-flight batch.
   */
  protected commitEarly(): void {
    if (this.windowTimer === null || this.writing || this.needSync || this.hasPending) return;
    if (this.ackConns.length === 0 && this.held.length === 0) return;
    clearTimeout(this.windowTimer);
    this.windowTimer = null;
    setImmediate(this.commit);
  }

  private readonly commit = (): void => {
    this.commitScheduled = false;
    if (this.windowTimer !== null) {
      clearTimeout(this.windowTimer);
      this.windowTimer = null;
    }
    if (this.writing || this.closed) return;
    if (this.refusing) {
      // The snapshot that ends the outage holds these changes; acks and held output wait for it.
      this.clearBatch();
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
        this.clearBatch();
        this.releaseAllHeld();
        this.releaseAcks(conns, data);
        return;
      }
      // The log stays the store: this turn's records are appended to it as usual.
      this.compactAfter = Date.now() + COMPACT_RETRY_MS;
    }
    this.flushPending();
    const sync = this.needSync;
    this.needSync = false;
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
    this.syncing = sync;
    this.timing.writingSince = performance.now();
    this.append(chunk, 0, sync, conns, data, held);
  };

  /** Forgets the batch being gathered (a snapshot or the refusal's holds its state). */
  private clearBatch(): void {
    this.w.clear();
    this.dropPending();
    this.needSync = false;
  }

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

  /**
   * Writes `chunk[from..]` to the log, again after a short write, then (`sync`) fdatasyncs, and
   * releases what waited. A batch of removals alone is not synced: the next synced batch, or the
   * kernel's writeback, takes it to disk; a kill -9 cannot lose it once written.
   */
  private append(
    chunk: Buffer,
    from: number,
    sync: boolean,
    conns: Connection[],
    data: number[],
    held: Connection[],
  ): void {
    fs.write(this.fd, chunk, from, chunk.length - from, null, (err, n) => {
      if (err) return this.failed(err, conns, data, held);
      if (from + n < chunk.length) {
        if (n > 0) return this.append(chunk, from + n, sync, conns, data, held);
        return this.failed(new Error('write made no progress'), conns, data, held);
      }
      this.writtenBytes += chunk.length;
      if (!sync) return this.appended(chunk.length, conns, data, held);
      const syncStarted = performance.now();
      fs.fdatasync(this.fd, (err2) => {
        if (err2) return this.failed(err2, conns, data, held);
        const t = this.timing;
        const took = (performance.now() - syncStarted) / 1000;
        t.syncSeconds += took;
        t.syncCount++;
        if (took > t.syncMaxSeconds) t.syncMaxSeconds = took;
        this.syncs++;
        this.appended(chunk.length, conns, data, held);
      });
    });
  }

  /** The batch is in the file (and synced if it had to be): what waited for it goes out. */
  private appended(bytes: number, conns: Connection[], data: number[], held: Connection[]): void {
    this.timing.writingSince = 0;
    this.writing = false;
    this.syncing = false;
    this.writtenPages += Math.ceil((this.logBytes + bytes) / PAGE) - Math.floor(this.logBytes / PAGE);
    this.logBytes += bytes;
    for (const c of held) if (!c.closed) c.commitDone();
    this.releaseAcks(conns, data);
    if (this.w.done > 0 || this.hasPending || this.ackConns.length > 0 || this.compactWanted) this.schedule();
  }

  private failed(err: NodeJS.ErrnoException, conns: Connection[], data: number[], held: Connection[]): void {
    this.writing = false;
    this.syncing = false;
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

  protected enterRefusing(err: NodeJS.ErrnoException): void {
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
    this.clearBatch();
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

  /**
   * Puts MAGIC + `body` in place of the log (persist-snapshot.ts) and reopens it for appending.
   * False, with the log untouched, when any step before the rename failed (ENOSPC included).
   */
  protected replaceLog(body: Buffer, quiet: boolean): boolean {
    const started = Date.now();
    try {
      writeSnapshotFile(this.file, this.dir, body);
    } catch (err) {
      if (!quiet)
        this.b.log('error', 'persistence snapshot failed; the log is kept', {
          error: (err as Error).message,
          code: (err as NodeJS.ErrnoException).code,
          file: `${this.file}.tmp`,
        });
      return false;
    }
    if (this.fd >= 0) fs.closeSync(this.fd);
    try {
      this.fd = fs.openSync(this.file, 'a', FILE_MODE);
    } catch {
      this.fd = -1; // the next append fails, and the refusal's retries reopen it
    }
    this.snapshotBytes = this.logBytes = MAGIC.length + body.length;
    this.writtenBytes += this.logBytes;
    this.writtenPages += Math.ceil(this.logBytes / PAGE);
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
}
