/**
 * The client's durable outbox: a segmented append-only log with group fsync, a lazily persisted
 * acknowledge cursor and recovery that cuts torn tails and skips rotten records. See
 * README-durable-queue.md for the guarantees, record.ts for the bytes.
 *
 * Memory: 9 bytes of index per record of the segments being read and written (segment.ts);
 * sealed segments further on are summaries until reached; messages are read back from the files.
 * Threads: everything runs on the event loop except fdatasync, which libuv runs on its pool
 * while new puts keep appending; the puts that arrive during one fsync share the next.
 */
import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Outbox, OutboxEntry, OutboxMessage, OutboxStats, PutPromise } from '../../core/outbox.ts';
import { OutboxFullError } from '../../core/outbox.ts';
import { DurableQueueError, writeErrorCode } from './errors.ts';
import { type DropReason, DropSpells, type DurableQueueEvent } from './events.ts';
import { CursorFile } from './files.ts';
import { closeQuietly, DIR_MODE, FILE_MODE, fdatasyncP, fsyncP, writeFully } from './io.ts';
import { acquireLock } from './lock.ts';
import { type DurableQueueOptions, type ResolvedOptions, resolveOptions } from './options.ts';
import {
  decodeMessage,
  decodeSharedPart,
  encodeRecord,
  MAX_SEQ,
  minRecordBytes,
  PayloadSlab,
  prepare,
  recordCrcOk,
  recordRef,
  recordSeq,
  recordShapeOk,
  recordTime,
  recordTopicBytes,
  SEGMENT_HEADER_BYTES,
  SEGMENT_VERSION,
  type SegmentVersion,
  type SharedPart,
  sameSharedProps,
  sharedPropsOf,
  sharedRecordBytes,
  writeSegmentHeader,
} from './record.ts';
import { type RecoveryStats, recoverQueue } from './recovery.ts';
import {
  ABSENT,
  DONE,
  FileWindow,
  LIVE,
  MAX_SEGMENT_FILE_BYTES,
  readHeaderVersion,
  Segment,
  scanSegment,
  segmentName,
} from './segment.ts';
import { loadIndex, removeIndex, writeIndex } from './segment-index.ts';

/** An entry as the durable queue returns it: `storedAt` lets a sender shorten message expiry. */
export interface DurableEntry extends OutboxEntry {
  /** ms since the epoch when put() stored it. */
  storedAt: number;
}

export interface DurableQueueStats extends OutboxStats {
  /** Every seq <= cursor is acknowledged or dropped. */
  cursor: number;
  nextSeq: number;
  segments: number;
  /** Segments whose per-record arrays are in memory (the rest are summaries until reached). */
  loadedSegments: number;
  fsyncs: number;
  /** Records whose CRC failed when read back after open (rot while running), skipped. */
  corruptOnRead: number;
  cursorWriteErrors: number;
  /**
   * A write or fsync failed and no put has been stored since: puts are refused (typed
   * NO_SPACE / FAILED) and retried every retryIntervalMs. Clears by itself once a put is stored.
   */
  failed: boolean;
  /** The standing failure, null when writes work. */
  writeError: { code: 'NO_SPACE' | 'FAILED'; message: string; since: number } | null;
  /** Failed writes and fsyncs since the open. */
  writeFailures: number;
  /** Puts rejected because of a failed write or fsync since the open (never reported stored). */
  failedPuts: number;
  recovery: RecoveryStats;
}

const PENDING_FLUSH_BYTES = 1 << 20;

interface SyncRound {
  /** Every seq <= target was written before this round's fsyncs started. */
  target: number;
  /** Sealed segments' fds, closed once this round and all before it completed. */
  closing: number[];
  /** Sealed segments to index once they are known durable. */
  sealed: Segment[];
  done: boolean;
  promise: Promise<void>;
}
const PENDING_INITIAL = 64 << 10;
/**
 * A record shares the topic and properties of a full record at most this far back in its
 * segment; past it a full record is written again, so a rotten full record loses at most this
 * stretch of the records that point at it.
 */
const SHARE_SPAN = 64 << 10;
/** Topics remembered for sharing per segment (then forgotten and started again). */
const SHARE_KEYS = 256;
/** Full records' shared parts kept decoded for reads. */
const SHARED_CACHE = 64;
const READ_CHUNK = 256 << 10;
const SCAN_CHUNK = 128 << 10;

export type { RecoveryStats } from './recovery.ts';

export class DurableQueue implements Outbox {
  /** Opens (creating if needed) the queue in `dir`, recovering what a crash left. */
  static async open(dir: string, options?: DurableQueueOptions): Promise<DurableQueue> {
    const o = resolveOptions(options);
    try {
      mkdirSync(dir, { recursive: true, mode: DIR_MODE });
      const release = acquireLock(dir);
      let dirFd = -1;
      try {
        dirFd = openSync(dir, 'r');
        return new DurableQueue(dir, dirFd, release, o);
      } catch (err) {
        if (dirFd >= 0) closeSync(dirFd);
        release();
        throw err;
      }
    } catch (err) {
      // a full disk (the lock, the marker or a first segment cannot be written) is told apart:
      // the caller can wait for room instead of giving up
      if (err instanceof DurableQueueError || writeErrorCode(err) !== 'NO_SPACE') throw err;
      const msg = err instanceof Error ? err.message : String(err);
      throw new DurableQueueError('NO_SPACE', `queue ${dir}: cannot open, the disk is full: ${msg}`, {
        cause: err,
      });
    }
  }

  private readonly segments: Segment[] = [];
  private active!: Segment;
  private activeFd = -1;
  private nextSeq = 1;
  private cursor = 0;
  private persistedCursor = -1;
  private liveCount = 0;
  private liveBytes = 0;
  private droppedOldest = 0;
  private rejectedNew = 0;
  private corruptOnRead = 0;
  private cursorWriteErrors = 0;
  private fsyncs = 0;
  private recovery!: RecoveryStats;

  private pending = Buffer.allocUnsafe(PENDING_INITIAL);
  private pendingLen = 0;
  private writeScheduled = false;
  private writtenSeq = 0;
  /** Highest seq whose put() resolved: read() shows nothing above it unless readBeforeCommit. */
  private readableSeq = 0;
  /**
   * Highest seq read() handed out. With readBeforeCommit it may pass readableSeq, and a failed
   * commit cuts those entries while a sender still holds them: no later put may take their seqs.
   */
  private handedSeq = 0;
  /** The buffer locate() found the bytes in: the read window's or the pending records'. */
  private locBuf: Buffer = this.pending;

  private readonly waitSeq: number[] = [];
  private readonly waitResolve: Array<(seq: number) => void> = [];
  private readonly waitReject: Array<(err: Error) => void> = [];
  private waitHead = 0;

  /** fsync rounds started and not yet completed in order, oldest first. */
  private readonly syncs: SyncRound[] = [];
  private readonly dirtyFds = new Set<number>();
  private dirDirty = false;
  private readonly closeAfterSync: number[] = [];
  /** Sealed segments whose index is written once the fsync that seals them completed. */
  private readonly indexAfterSync: Segment[] = [];
  private intervalTimer: NodeJS.Timeout | null = null;
  /** commitWindowMs: the window the first write since the last round started waits out. */
  private windowTimer: NodeJS.Timeout | null = null;
  /** The window ran out: the next round may start (as soon as the one running completes). */
  private windowDue = false;

  private acksSincePersist = 0;
  private cursorTimer: NodeJS.Timeout | null = null;
  private cursorFile: CursorFile;

  /** Topic -> offset of the last full record of that topic in the active segment... */
  private readonly fullRecords = new Map<string, number>();
  /** ...and its properties before the user properties, when it has any. */
  private readonly fullProps = new Map<string, Uint8Array>();
  /** Offset -> shared part of the full records read in the segment whose first seq is sharedOf. */
  private readonly sharedParts = new Map<number, SharedPart>();
  private sharedOf = -1;

  private readonly win = new FileWindow(READ_CHUNK);
  private readonly slab = new PayloadSlab();
  private readSeg: Segment | null = null;
  private readFd = -1;

  /** Set from a failed write or fsync until resume() made the queue writable again. */
  private failure: DurableQueueError | null = null;
  /** From a failure until a put is stored again (several failures can make up one). */
  private episode: {
    since: number;
    code: 'NO_SPACE' | 'FAILED';
    error: string;
    rejectedPuts: number;
    failures: number;
    reportedAt: number;
  } | null = null;
  /** What the failure left on disk above readableSeq still has to be cut off. */
  private cutPending = false;
  private lastRetry = Number.NEGATIVE_INFINITY;
  private writeFailures = 0;
  private failedPuts = 0;
  private readonly drops: DropSpells;
  private closed = false;
  private closePromise: Promise<void> | null = null;

  private constructor(
    readonly dir: string,
    private readonly dirFd: number,
    private readonly releaseLock: () => void,
    private readonly o: ResolvedOptions,
  ) {
    this.drops = new DropSpells(o.reportIntervalMs, (e) => this.emit(e));
    this.cursorFile = new CursorFile(dir, dirFd);
    this.recover();
    if (o.fsync === 'interval') {
      this.intervalTimer = setInterval(() => this.requestSync(), o.intervalMs);
      this.intervalTimer.unref();
    }
  }

  // ---------------------------------------------------------------- recovery

  private recover(): void {
    const r = recoverQueue(this.dir, this.dirFd, this.o.maxRecordBytes);
    this.recovery = r.recovery;
    this.segments.push(...r.segments);
    this.nextSeq = r.nextSeq;
    this.liveCount = r.liveCount;
    this.liveBytes = r.liveBytes;
    if (this.segments.length === 0) this.createSegment(this.nextSeq);
    else {
      this.active = this.segments[this.segments.length - 1];
      this.activeFd = openSync(this.active.path, 'r+');
    }
    this.writtenSeq = this.nextSeq - 1;
    this.readableSeq = this.writtenSeq;
    this.cursor = r.cursor;
    this.persistedCursor = r.persistedCursor;
    // a segment of an older record format is read, never appended to
    if (this.active.version !== SEGMENT_VERSION) {
      if (this.active.slots > 0) this.roll(this.nextSeq);
      else {
        const h = Buffer.alloc(SEGMENT_HEADER_BYTES);
        writeSegmentHeader(h);
        writeFully(this.activeFd, h, SEGMENT_HEADER_BYTES, 0);
        this.active.version = SEGMENT_VERSION;
        this.dirtyFds.add(this.activeFd);
      }
    }
    this.advanceCursor();
  }

  /**
   * `replace`: a file of that name may be there and is not one of ours (a failed creation left
   * it): overwrite it. Otherwise an existing file is an error, not something to write over.
   */
  private createSegment(baseSeq: number, replace = false): void {
    const path = join(this.dir, segmentName(baseSeq));
    const fd = openSync(path, replace ? 'w+' : 'wx+', FILE_MODE);
    try {
      const h = Buffer.alloc(SEGMENT_HEADER_BYTES);
      writeSegmentHeader(h);
      writeFully(fd, h, SEGMENT_HEADER_BYTES, 0);
    } catch (err) {
      // a full disk can refuse even the header: leave no half-made segment behind
      closeQuietly(fd);
      try {
        unlinkSync(path);
      } catch {
        // recovery resets a headerless last segment, and resume() replaces it
      }
      throw err;
    }
    const seg = new Segment(baseSeq, path);
    this.forgetFullRecords();
    this.sharedParts.clear();
    this.segments.push(seg);
    this.active = seg;
    this.activeFd = fd;
    this.dirtyFds.add(fd);
    this.dirDirty = true;
  }

  // ---------------------------------------------------------------- put

  put(message: OutboxMessage): PutPromise {
    if (this.closed) return Promise.reject(new DurableQueueError('CLOSED', `queue ${this.dir} is closed`));
    if (this.failure !== null && !this.tryResume()) return this.refuse();
    let p: ReturnType<typeof prepare>;
    try {
      p = prepare(message);
    } catch (err) {
      return Promise.reject(err);
    }
    if (p.recordBytes > this.o.maxRecordBytes) {
      return Promise.reject(
        new DurableQueueError(
          'TOO_LARGE',
          `message needs ${p.recordBytes} bytes, maxRecordBytes is ${this.o.maxRecordBytes}`,
        ),
      );
    }
    const now = this.o.now();
    const messageBytes = p.topicBytes + p.message.payload.length;
    if (!this.admit(messageBytes, now)) {
      this.rejectedNew++;
      return Promise.reject(new OutboxFullError(`durable queue ${this.dir} is full`));
    }
    const seq = this.nextSeq;
    const active = this.active;
    try {
      if (
        seq !== active.baseSeq + active.slots ||
        (active.slots > 0 && active.size + this.pendingLen + p.recordBytes > this.o.segmentBytes)
      ) {
        this.roll(seq);
      }
    } catch (err) {
      this.fail(err);
      return Promise.reject(this.failure);
    }
    const offset = this.active.size + this.pendingLen;
    const ref = this.shareWith(p, offset);
    const need = this.pendingLen + (ref >= 0 ? sharedRecordBytes(p) : p.recordBytes);
    if (need > this.pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.pending.length * 2));
      this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    encodeRecord(this.pending, this.pendingLen, p, seq - this.active.baseSeq, now, ref);
    this.active.push(seq, offset, messageBytes);
    this.pendingLen = need;
    this.nextSeq = seq + 1;
    this.liveCount++;
    this.liveBytes += messageBytes;
    const promise: PutPromise = new Promise<number>((resolve, reject) => {
      this.waitSeq.push(seq);
      this.waitResolve.push(resolve);
      this.waitReject.push(reject);
    });
    // known now: with readBeforeCommit the entry may be sent, and acknowledged, before it resolves
    if (this.o.readBeforeCommit) promise.seq = seq;
    if (this.pendingLen >= PENDING_FLUSH_BYTES) this.writePendingQuietly();
    else if (this.o.fsync === 'batch' && this.o.commitWindowMs > 0 && !this.windowDue) {
      // Kept here until the window ends (issue 18.4): written into the page cache at once, the
      // segment's tail page would be written back by the kernel ~30 s after it was dirtied and
      // dirtied again by the next append, a page more per 30 s of a long window. Nothing is
      // lost by it: these puts resolve only after the commit's fsync either way.
      this.armWindow();
    } else if (!this.writeScheduled) {
      this.writeScheduled = true;
      setImmediate(() => {
        this.writeScheduled = false;
        this.writePendingQuietly();
      });
    }
    return promise;
  }

  /**
   * The offset of a full record in the active segment, within SHARE_SPAN of `offset`, holding
   * `p`'s topic and non-user properties; -1 when there is none (the record at `offset` is then
   * written full, and becomes the one later records share).
   */
  private shareWith(p: ReturnType<typeof prepare>, offset: number): number {
    const topic = p.message.topic;
    const full = this.fullRecords.get(topic);
    if (
      full !== undefined &&
      offset - full <= SHARE_SPAN &&
      sameSharedProps(p, this.fullProps.get(topic) ?? null)
    ) {
      return full;
    }
    if (full === undefined && this.fullRecords.size >= SHARE_KEYS) this.forgetFullRecords();
    this.fullRecords.set(topic, offset);
    const props = sharedPropsOf(p);
    if (props !== null) this.fullProps.set(topic, props);
    else if (full !== undefined) this.fullProps.delete(topic);
    return -1;
  }

  private forgetFullRecords(): void {
    this.fullRecords.clear();
    this.fullProps.clear();
  }

  /** Applies the bounds before a message of `messageBytes` is stored; false means reject it. */
  private admit(messageBytes: number, now: number): boolean {
    const { maxCount, maxBytes, maxAgeMs } = this.o;
    if (this.o.dropPolicy === 'reject-new') {
      if (this.liveCount + 1 > maxCount || this.liveBytes + messageBytes > maxBytes) return false;
      return !(
        maxAgeMs < Number.POSITIVE_INFINITY &&
        this.liveCount > 0 &&
        now - this.oldestTime() > maxAgeMs
      );
    }
    if (messageBytes > maxBytes) return false;
    this.dropExpired(now);
    while (this.liveCount > 0) {
      const reason: DropReason | null =
        this.liveCount + 1 > maxCount
          ? 'maxCount'
          : this.liveBytes + messageBytes > maxBytes
            ? 'maxBytes'
            : null;
      if (reason === null) break;
      if (!this.dropOldest(reason)) return false;
    }
    return true;
  }

  private dropExpired(now: number): void {
    if (this.o.maxAgeMs === Number.POSITIVE_INFINITY) return;
    while (this.liveCount > 0 && now - this.oldestTime() > this.o.maxAgeMs) {
      if (!this.dropOldest('maxAge')) return;
    }
  }

  /** False when the oldest record's segment cannot be read just now (nothing dropped). */
  private dropOldest(reason: DropReason): boolean {
    const seq = this.cursor + 1;
    const seg = this.segments[this.segmentIndex(seq)];
    if (!this.tryLoad(seg)) return false;
    const slot = seq - seg.baseSeq;
    // after advanceCursor() the slot at cursor + 1 is live; a segment whose files changed under
    // it (found on loading) is the one exception, and then there is nothing to drop there
    if (slot < seg.slots && seg.state[slot] === LIVE) {
      this.markDone(seg, slot);
      this.droppedOldest++;
      this.drops.dropped(seq, reason);
    }
    const before = this.cursor;
    this.advanceCursor();
    if (this.cursor === before) {
      // nothing live past the cursor: counts no slot backs must not keep the callers looping
      this.liveCount = 0;
      this.liveBytes = 0;
    }
    this.noteAck();
    return true;
  }

  private roll(seq: number): void {
    this.writePending();
    const old = this.active;
    old.trim();
    if (this.o.fsync === 'never') closeSync(this.activeFd);
    else {
      this.closeAfterSync.push(this.activeFd);
      this.indexAfterSync.push(old);
    }
    this.activeFd = -1;
    this.createSegment(seq);
    if (this.o.fsync === 'never') this.indexSealed(old);
  }

  private writePendingQuietly(): void {
    try {
      this.writePending();
    } catch {
      // fail() recorded it and rejected the waiters
    }
  }

  /** Moves the pending records into the active segment file (page cache). */
  private writePending(): void {
    if (this.pendingLen === 0 || this.failure) return;
    try {
      writeFully(this.activeFd, this.pending, this.pendingLen, this.active.size);
    } catch (err) {
      this.fail(err);
      throw this.failure;
    }
    this.active.size += this.pendingLen;
    this.pendingLen = 0;
    if (this.pending.length > 4 * PENDING_FLUSH_BYTES) this.pending = Buffer.allocUnsafe(PENDING_INITIAL);
    this.writtenSeq = this.nextSeq - 1;
    this.dirtyFds.add(this.activeFd);
    if (this.o.fsync === 'batch') this.requestSync();
    else this.resolveWaiters(this.writtenSeq);
  }

  private get unsynced(): boolean {
    return this.dirtyFds.size > 0 || this.dirDirty || this.closeAfterSync.length > 0;
  }

  /** Starts the commit window if none runs; at its end the records kept back are written and a round starts. */
  private armWindow(): void {
    if (this.windowTimer !== null) return;
    this.windowTimer = setTimeout(() => {
      this.windowTimer = null;
      this.windowDue = true;
      if (this.pendingLen > 0) this.writePendingQuietly();
      else this.requestSync();
    }, this.o.commitWindowMs);
  }

  /**
   * Starts an fsync round covering everything written so far. Up to `parallelFsyncs` rounds run
   * at once (1 by default: the fewest, largest fsyncs, which is what flash wear wants); past
   * that, the writes wait and join the next round. Rounds complete in the order they started:
   * a round's puts resolve, and its sealed files close, only once every earlier round is done.
   */
  private requestSync(force = false): void {
    if (this.failure) return;
    if (!this.unsynced) {
      if (this.o.fsync === 'batch' && this.syncs.length === 0) this.resolveWaiters(this.writtenSeq);
      return;
    }
    if (!force && !this.windowDue && this.o.commitWindowMs > 0) {
      // group commit over a window: the first write since the last round starts it, and the
      // round waits for its end (and for the round running, if any, to complete)
      this.armWindow();
      return;
    }
    if (this.syncs.length >= this.o.parallelFsyncs) return; // the next completion starts another
    this.windowDue = false;
    const jobs: Promise<void>[] = [];
    for (const fd of this.dirtyFds) jobs.push(fdatasyncP(fd));
    this.dirtyFds.clear();
    // a new segment's directory entry must be durable before its records are reported durable
    if (this.dirDirty) jobs.push(fsyncP(this.dirFd));
    this.dirDirty = false;
    const round: SyncRound = {
      target: this.writtenSeq,
      closing: this.closeAfterSync.splice(0),
      sealed: this.indexAfterSync.splice(0),
      done: false,
      promise: Promise.resolve(),
    };
    this.syncs.push(round);
    round.promise = Promise.all(jobs).then(
      () => {
        round.done = true;
        this.fsyncs++;
        this.completeSyncs();
      },
      (err) => {
        round.done = true;
        this.fail(err);
        this.completeSyncs();
      },
    );
  }

  private completeSyncs(): void {
    const { syncs } = this;
    while (syncs.length > 0 && syncs[0].done) {
      const round = syncs.shift()!;
      for (const fd of round.closing) closeQuietly(fd);
      if (this.failure) continue;
      for (const seg of round.sealed) if (!seg.deleted) this.indexSealed(seg);
      if (this.o.fsync === 'batch') this.resolveWaiters(round.target);
    }
    if (this.o.fsync === 'batch' && !this.failure) this.requestSync();
  }

  private resolveWaiters(upTo: number): void {
    if (upTo > this.readableSeq) {
      this.readableSeq = upTo;
      if (this.episode !== null) this.recovered();
    }
    const { waitSeq, waitResolve } = this;
    let h = this.waitHead;
    while (h < waitSeq.length && waitSeq[h] <= upTo) {
      waitResolve[h](waitSeq[h]);
      h++;
    }
    if (h === waitSeq.length) {
      waitSeq.length = 0;
      waitResolve.length = 0;
      this.waitReject.length = 0;
      h = 0;
    } else if (h > 4096) {
      waitSeq.splice(0, h);
      waitResolve.splice(0, h);
      this.waitReject.splice(0, h);
      h = 0;
    }
    this.waitHead = h;
  }

  /**
   * A failed write or fsync leaves the page cache in an unknown state (Linux may have dropped
   * the dirty pages), so no later fsync can vouch for what was written since the last good one:
   * every waiting put is rejected (never reported stored), what they wrote is cut off the files
   * (a torn record included), and puts are refused until resume() succeeds. What put() already
   * resolved stays: under 'batch' it was fsynced before it resolved.
   */
  private fail(err: unknown): void {
    if (this.failure) return;
    this.writeFailures++;
    const code = writeErrorCode(err);
    const msg = err instanceof Error ? err.message : String(err);
    const what = code === 'NO_SPACE' ? 'the disk is full' : 'a write or fsync failed';
    this.failure = new DurableQueueError(code, `queue ${this.dir}: ${what}: ${msg}`, { cause: err });
    const rejected = this.waitSeq.length - this.waitHead;
    for (let h = this.waitHead; h < this.waitSeq.length; h++) this.waitReject[h](this.failure);
    this.waitSeq.length = 0;
    this.waitResolve.length = 0;
    this.waitReject.length = 0;
    this.waitHead = 0;
    this.failedPuts += rejected;
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.intervalTimer = null;
    this.cutPending = true;
    this.lastRetry = this.o.now(); // the first retry comes retryIntervalMs after the failure
    try {
      this.cutBack();
    } catch {
      // resume() cuts again before anything is written; a crash first leaves it to recovery
    }
    const e = this.episode;
    if (e !== null) {
      e.failures++;
      e.rejectedPuts += rejected;
      return;
    }
    const now = Date.now();
    this.episode = { since: now, code, error: msg, rejectedPuts: rejected, failures: 1, reportedAt: now };
    this.emit({ type: 'write-failed', code, error: msg, rejectedPuts: rejected });
  }

  /** A put refused while a failure stands: typed, counted, summarised now and then. */
  private refuse(): Promise<number> {
    this.failedPuts++;
    const e = this.episode;
    if (e !== null) {
      e.rejectedPuts++;
      const now = Date.now();
      if (now - e.reportedAt >= this.o.reportIntervalMs) {
        e.reportedAt = now;
        const { code, error, rejectedPuts, failures } = e;
        this.emit({ type: 'write-failing', code, error, forMs: now - e.since, rejectedPuts, failures });
      }
    }
    return Promise.reject(this.failure);
  }

  /** A put was stored after a failure. */
  private recovered(): void {
    const e = this.episode!;
    this.episode = null;
    const { rejectedPuts, failures } = e;
    this.emit({ type: 'write-recovered', forMs: Date.now() - e.since, rejectedPuts, failures });
  }

  private emit(event: DurableQueueEvent): void {
    try {
      this.o.onEvent?.(event);
    } catch {
      // a listener's bug must not break the queue's bookkeeping
    }
  }

  /**
   * Cuts every record above readableSeq (their puts were rejected) from memory and from the
   * files, with whatever torn bytes follow, and makes the cut durable. Idempotent; throws when a
   * file cannot be cut (resume() tries again before writing).
   */
  private cutBack(): void {
    const keep = this.readableSeq;
    this.pendingLen = 0;
    // full records may be cut, and their offsets taken by new records
    this.forgetFullRecords();
    this.sharedParts.clear();
    this.writtenSeq = keep;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const seg = this.segments[i];
      if (seg !== this.active && seg.endSeq <= keep) break;
      this.cutSegment(seg, keep);
    }
    this.cutPending = false;
  }

  private cutSegment(seg: Segment, keep: number): void {
    this.ensureLoaded(seg);
    const keepSlots = Math.max(0, Math.min(seg.slots, keep - seg.baseSeq + 1));
    if (keepSlots < seg.slots) {
      const { state, sizes } = seg;
      for (let slot = keepSlots; slot < seg.slots; slot++) {
        if (state[slot] !== LIVE) continue;
        seg.live--;
        seg.liveBytes -= sizes[slot];
        this.liveCount--;
        this.liveBytes -= sizes[slot];
      }
      seg.size = seg.offsets[keepSlots];
      seg.slots = keepSlots;
      if (seg !== this.active) removeIndex(seg.path);
    }
    // the read window may hold the bytes cut here, and new records will take their offsets
    if (this.readSeg === seg) this.win.attach(this.readFd);
    const fd = openSync(seg.path, 'r+');
    try {
      if (fstatSync(fd).size > seg.size) {
        ftruncateSync(fd, seg.size);
        fdatasyncSync(fd);
      }
    } finally {
      closeQuietly(fd);
    }
  }

  /**
   * Tries to make the queue writable again after a failure, at most every retryIntervalMs: cut
   * back what is left to cut, then take appends again. Whether the disk has room is only known
   * by writing: the put that called this is written next, and only its success ends the failure
   * (recovered()). False while fsync rounds of the failure are still running, or on an error.
   */
  private tryResume(): boolean {
    if (this.syncs.length > 0 || this.closed) return false;
    const t = this.o.now();
    if (t - this.lastRetry < this.o.retryIntervalMs) return false;
    this.lastRetry = t;
    try {
      this.resume();
      return true;
    } catch (err) {
      // a failed retry is a failed write: the cut, or a new segment's header on a disk still
      // full (resume() starts one above the seqs read before their commit, issue 18.5)
      this.writeFailures++;
      if (this.episode !== null) {
        this.episode.failures++;
        this.episode.error = err instanceof Error ? err.message : String(err);
      }
      return false;
    }
  }

  /** Closes a segment's fd that resume() takes out of use, flushed on the way if it can be. */
  private release(fd: number): void {
    this.dirtyFds.delete(fd);
    try {
      fdatasyncSync(fd);
    } catch {
      // nothing resolved depends on it under 'batch'; the other policies never promised it
    }
    closeQuietly(fd);
  }

  /**
   * Appends continue in the last segment when seqs can follow on in it (the usual case: only
   * rejected seqs above readableSeq are taken again, and no caller ever saw those). When the
   * cursor passed readableSeq (drop-oldest dropped a put still in flight, or an ack came before
   * the commit) those seqs are done and must not come back, nor may the seqs read() handed out
   * before their commit (readBeforeCommit: the sender holds them in flight and matches the
   * broker's ack by seq): a new segment starts above them all.
   */
  private resume(): void {
    if (this.cutPending) this.cutBack();
    // sealed segments waiting for the fsync the failure cancelled: what they keep was either
    // fsynced before its put resolved ('batch') or is flushed now as the policy allows
    for (const fd of this.closeAfterSync.splice(0)) this.release(fd);
    const sealed = this.indexAfterSync.splice(0);
    const next = Math.max(this.readableSeq, this.cursor, this.handedSeq) + 1;
    const segs = this.segments;
    let keepTo = segs.length - 1;
    // trailing segments left empty by the cut: one whose first seq is `next` can take appends
    while (keepTo > 0 && segs[keepTo].slots === 0 && segs[keepTo].baseSeq !== next) keepTo--;
    const target = segs[keepTo];
    const oldActive = this.active;
    if (target.baseSeq + target.slots === next && target.version === SEGMENT_VERSION) {
      this.ensureLoaded(target); // appends need its arrays (a sealed one may be a summary)
      // a fresh descriptor: the failed one may be what failed (EBADF, EIO of a replugged disk)
      const fd = openSync(target.path, 'r+');
      if (this.activeFd >= 0) this.release(this.activeFd);
      this.activeFd = fd;
      this.active = target;
      removeIndex(target.path);
    } else {
      if (this.activeFd >= 0) this.release(this.activeFd);
      this.activeFd = -1;
      this.createSegment(next, true);
      segs.splice(segs.length - 1, 1);
      segs.splice(keepTo + 1, 0, this.active);
      keepTo++;
    }
    for (const seg of segs.splice(keepTo + 1)) this.removeSegment(seg);
    for (const seg of [...sealed, oldActive]) {
      if (seg !== this.active && !seg.deleted && seg.slots > 0) this.indexSealed(seg);
    }
    this.nextSeq = next;
    this.writtenSeq = next - 1;
    this.readableSeq = Math.max(this.readableSeq, next - 1);
    this.failure = null;
    if (this.o.fsync === 'interval' && this.intervalTimer === null && !this.closed) {
      this.intervalTimer = setInterval(() => this.requestSync(), this.o.intervalMs);
      this.intervalTimer.unref();
    }
    this.advanceCursor();
  }

  /** Resolves once everything put so far is written and fsynced, whatever the fsync policy. */
  async flush(): Promise<void> {
    this.writePending();
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.syncs.length > 0) {
        await this.syncs[0].promise;
        continue;
      }
      if (!this.unsynced) return;
      this.requestSync(true);
    }
  }

  // ---------------------------------------------------------------- segment arrays

  /**
   * Writes a sealed segment's index, and lets its arrays go when the file says all they say:
   * nothing in it read, acknowledged or lost yet (every slot LIVE, all above the cursor), so
   * loading it back later gives the same state. A long outage then costs summaries, not arrays.
   */
  private indexSealed(seg: Segment): void {
    if (!writeIndex(seg) || seg.baseSeq <= this.cursor || seg.live !== seg.slots) return;
    if (seg === this.readSeg || seg === this.active) return;
    seg.unload();
  }

  /**
   * ensureLoaded() for the paths that must not throw (ack, cursor moves, bounds, stats): a
   * segment that cannot be read just now stays a summary, and they act as if not there yet.
   */
  private tryLoad(seg: Segment): boolean {
    try {
      this.ensureLoaded(seg);
      return true;
    } catch {
      return false;
    }
  }

  /** Gives a summarised segment its arrays back: from its index, or by scanning its file. */
  private ensureLoaded(seg: Segment): void {
    if (seg.loaded) return;
    const idx = this.segmentIndex(seg.baseSeq);
    const ceil = idx + 1 < this.segments.length ? this.segments[idx + 1].baseSeq : MAX_SEQ + 1;
    const live = seg.live;
    const bytes = seg.liveBytes;
    let r: ReturnType<typeof loadIndex> = null;
    try {
      // a file whose size changed since the open is not the one the index describes
      if (statSync(seg.path).size === seg.size) r = loadIndex(seg, ceil, this.cursor);
    } catch {
      // gone: rescan() says so
    }
    if (r !== null) {
      seg.live = r.live;
      seg.liveBytes = r.liveBytes;
    } else this.rescan(seg, ceil);
    // Only rot or a hand changes a sealed segment's files: what they hold now is what counts.
    this.liveCount += seg.live - live;
    this.liveBytes += seg.liveBytes - bytes;
    if (seg.live < live) this.corruptOnRead += live - seg.live;
  }

  /**
   * The index went bad after the open: scan the (sealed, durable) segment as recovery would.
   * Throws, the segment left as it was, on any error but the file being gone.
   */
  private rescan(seg: Segment, ceil: number): void {
    let fd = -1;
    try {
      fd = openSync(seg.path, 'r');
      const r = scanSegment(
        fd,
        Math.min(fstatSync(fd).size, MAX_SEGMENT_FILE_BYTES),
        seg.baseSeq,
        ceil,
        seg.path,
        new FileWindow(SCAN_CHUNK),
        this.o.maxRecordBytes,
      );
      const s = r.segment;
      seg.load(s.offsets, s.sizes, s.state, s.slots);
      seg.size = s.size;
      seg.settle(this.cursor);
      writeIndex(seg);
    } catch (err) {
      // Only a file that is gone loses its records. Anything else (EMFILE, EIO) may pass: the
      // segment stays a summary and the caller sees the error, as a failed read always did.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const state = new Uint8Array(seg.slots).fill(ABSENT);
      seg.load(new Uint32Array(seg.slots), new Uint32Array(seg.slots), state, seg.slots);
      seg.live = 0;
      seg.liveBytes = 0;
    } finally {
      if (fd >= 0) closeQuietly(fd);
    }
  }

  // ---------------------------------------------------------------- read / ack

  /**
   * By default only entries whose put() already resolved are returned: a caller that learns a
   * seq from put()'s resolution and matches broker acks to it must never see an ack for a seq
   * before then. With readBeforeCommit (issue 18.5) also the entries appended since (the ones
   * a commit window keeps in the pending buffer are decoded from there), except while a failure
   * stands: its cut took them. The Node client learns the seq from put()'s promise at once
   * (`seq` on it), so an ack may come first.
   */
  read(afterSeq: number, max: number): DurableEntry[] {
    const out: DurableEntry[] = [];
    if (!(max > 0) || this.closePromise) return out;
    if (this.o.dropPolicy === 'drop-oldest') this.dropExpired(this.o.now());
    let seq = Math.max(Number.isFinite(afterSeq) ? Math.floor(afterSeq) + 1 : 1, this.cursor + 1);
    let idx = Math.max(0, this.segmentIndex(seq));
    let corrupt = false;
    const limit = this.o.readBeforeCommit && this.failure === null ? this.nextSeq - 1 : this.readableSeq;
    for (; idx < this.segments.length && out.length < max; idx++) {
      const seg = this.segments[idx];
      this.ensureLoaded(seg);
      const { state } = seg;
      const slots = Math.min(seg.slots, limit - seg.baseSeq + 1);
      for (let slot = Math.max(0, seq - seg.baseSeq); slot < slots && out.length < max; slot++) {
        if (state[slot] !== LIVE) continue;
        if (seg === this.active && seg.offsets[slot] >= seg.size + this.pendingLen) break; // cut by a failure
        const e = this.readEntry(seg, slot);
        if (e === null) {
          state[slot] = ABSENT;
          seg.live--;
          seg.liveBytes -= seg.sizes[slot];
          this.liveCount--;
          this.liveBytes -= seg.sizes[slot];
          this.corruptOnRead++;
          corrupt = true;
        } else out.push(e);
      }
      seq = 0;
    }
    if (out.length > 0 && out[out.length - 1].seq > this.handedSeq) this.handedSeq = out[out.length - 1].seq;
    if (corrupt) this.advanceCursor();
    return out;
  }

  /**
   * Makes a segment's bytes [off, off + n) available and returns their index in `locBuf`, or
   * -1 past its end. Records of the active segment kept back for the commit (readBeforeCommit)
   * are in the pending buffer, right after the file's bytes.
   */
  private locate(seg: Segment, off: number, n: number): number {
    if (seg === this.active && off >= seg.size) {
      const i = off - seg.size;
      if (i + n > this.pendingLen) return -1;
      this.locBuf = this.pending;
      return i;
    }
    const i = this.win.at(off, n, seg.size);
    this.locBuf = this.win.buf; // after at(): it may have grown the buffer
    return i;
  }

  /** Where a segment's readable bytes end: the pending records follow the active one's file. */
  private endOf(seg: Segment): number {
    return seg === this.active ? seg.size + this.pendingLen : seg.size;
  }

  private attachRead(seg: Segment): void {
    if (this.readSeg !== seg) {
      if (this.readFd >= 0) closeSync(this.readFd);
      this.readFd = -1;
      this.readSeg = null;
      this.win.detach();
      this.readFd = openSync(seg.path, 'r');
      if (seg.version === -1) seg.version = readHeaderVersion(this.readFd);
      this.readSeg = seg;
      this.win.attach(this.readFd);
    }
  }

  private readEntry(seg: Segment, slot: number): DurableEntry | null {
    this.attachRead(seg);
    const off = seg.offsets[slot];
    if (seg.version <= 0) return null; // a damaged header: the format of its records is not known
    const v = seg.version as SegmentVersion;
    const i = this.locate(seg, off, minRecordBytes(v));
    if (i < 0) return null;
    const len = this.locBuf.readUInt32LE(i);
    if (len < minRecordBytes(v) || len > this.endOf(seg) - off) return null;
    let j = this.locate(seg, off, len);
    const seq = seg.baseSeq + slot;
    let buf = this.locBuf;
    if (j < 0 || !recordCrcOk(buf, j, len, v) || !recordShapeOk(buf, j, len, v, off)) return null;
    if (recordSeq(buf, j, v, seg.baseSeq) !== seq) return null;
    const ref = recordRef(buf, j, v);
    let shared: SharedPart | null = null;
    if (ref >= 0) {
      const topicBytes = recordTopicBytes(buf, j, v);
      shared = this.sharedPart(seg, ref);
      if (shared === null || shared.topicBytes !== topicBytes) return null;
      j = this.locate(seg, off, len); // reading the full record may have moved the window
      if (j < 0) return null;
      buf = this.locBuf;
    }
    const message = decodeMessage(buf, j, len, v, this.slab, shared);
    if (message === null) return null;
    const storedAt = recordTime(buf, j, v);
    if (len > READ_CHUNK) this.win.shrink();
    return { seq, message, storedAt };
  }

  /** The topic and properties a shared record takes from the full record at `ref`; null if bad. */
  private sharedPart(seg: Segment, ref: number): SharedPart | null {
    if (this.sharedOf !== seg.baseSeq) {
      this.sharedParts.clear();
      this.sharedOf = seg.baseSeq;
    }
    const known = this.sharedParts.get(ref);
    if (known !== undefined) return known;
    const v = seg.version as SegmentVersion; // a shared record was read: the header is known
    const i = this.locate(seg, ref, minRecordBytes(v));
    if (i < 0) return null;
    const len = this.locBuf.readUInt32LE(i);
    if (len < minRecordBytes(v) || len > this.endOf(seg) - ref) return null;
    const j = this.locate(seg, ref, len);
    const buf = this.locBuf;
    if (j < 0 || !recordCrcOk(buf, j, len, v) || !recordShapeOk(buf, j, len, v, ref)) return null;
    if (recordRef(buf, j, v) >= 0) return null;
    const part = decodeSharedPart(buf, j, len, v);
    if (part === null) return null;
    if (this.sharedParts.size >= SHARED_CACHE) this.sharedParts.clear();
    this.sharedParts.set(ref, part);
    return part;
  }

  ack(seq: number): void {
    if (!Number.isInteger(seq) || seq <= this.cursor || seq >= this.nextSeq) return;
    const idx = this.segmentIndex(seq);
    if (idx < 0) return;
    const seg = this.segments[idx];
    const slot = seq - seg.baseSeq;
    // unreadable just now: the ack is not recorded, the record is delivered again after a
    // restart (a duplicate, never a loss)
    if (slot >= seg.slots || !this.tryLoad(seg)) return;
    if (seg.state[slot] !== LIVE) return;
    this.markDone(seg, slot);
    if (seq === this.cursor + 1) this.advanceCursor();
    this.noteAck();
  }

  private markDone(seg: Segment, slot: number): void {
    seg.state[slot] = DONE;
    seg.live--;
    seg.liveBytes -= seg.sizes[slot];
    this.liveCount--;
    this.liveBytes -= seg.sizes[slot];
  }

  /** Index of the segment whose range starts at or before `seq`, -1 if none. */
  private segmentIndex(seq: number): number {
    const segs = this.segments;
    let lo = 0;
    let hi = segs.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (segs[mid].baseSeq <= seq) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  /** Moves the cursor over acknowledged, dropped and absent seqs; removes passed segments. */
  private advanceCursor(): void {
    const segs = this.segments;
    let idx = Math.max(0, this.segmentIndex(this.cursor + 1));
    for (; idx < segs.length; idx++) {
      const seg = segs[idx];
      if (this.cursor + 1 < seg.baseSeq) this.cursor = seg.baseSeq - 1;
      if (seg.live === 0 && !seg.loaded) {
        this.cursor = Math.max(this.cursor, seg.endSeq);
        continue;
      }
      if (!this.tryLoad(seg)) break; // the cursor waits before it; the next move tries again
      const { state, slots } = seg;
      let slot = this.cursor + 1 - seg.baseSeq;
      while (slot < slots && state[slot] !== LIVE) slot++;
      this.cursor = Math.max(this.cursor, seg.baseSeq + slot - 1);
      if (slot < slots) break;
    }
    while (segs.length > 1 && this.cursor >= segs[1].baseSeq - 1) this.removeSegment(segs.shift()!);
  }

  /** Deletes the files of a segment taken out of `segments`. */
  private removeSegment(seg: Segment): void {
    seg.deleted = true;
    removeIndex(seg.path);
    if (this.readSeg === seg) {
      closeSync(this.readFd);
      this.readFd = -1;
      this.readSeg = null;
      this.win.detach();
    }
    try {
      unlinkSync(seg.path);
    } catch {
      // already gone: nothing to free
    }
  }

  private noteAck(): void {
    if (++this.acksSincePersist >= this.o.cursorEveryAcks) this.persistCursor();
    else if (this.cursorTimer === null && !this.closed) {
      this.cursorTimer = setTimeout(() => this.persistCursor(), this.o.cursorIntervalMs);
      this.cursorTimer.unref();
    }
  }

  private persistCursor(): void {
    if (this.cursorTimer) clearTimeout(this.cursorTimer);
    this.cursorTimer = null;
    if (this.closed || this.cursor === this.persistedCursor) return;
    this.acksSincePersist = 0;
    try {
      // a 16-byte write into the page cache, no fsync: cheaper than a promise round trip
      this.cursorFile.write(this.cursor);
      this.persistedCursor = this.cursor;
    } catch {
      this.cursorWriteErrors++;
    }
  }

  // ---------------------------------------------------------------- stats / close

  /** Stored-at time of the oldest live record (cursor + 1), read from the file or the pending buffer. */
  private oldestTime(): number {
    const seq = this.cursor + 1;
    const seg = this.segments[this.segmentIndex(seq)];
    if (!this.tryLoad(seg)) return this.o.now();
    const off = seg.offsets[seq - seg.baseSeq];
    if (seg === this.active && off >= seg.size)
      return recordTime(this.pending, off - seg.size, SEGMENT_VERSION);
    this.attachRead(seg);
    const v = seg.version;
    const i = v <= 0 ? -1 : this.win.at(off, minRecordBytes(v as SegmentVersion), seg.size);
    return i < 0 ? this.o.now() : recordTime(this.win.buf, i, v as SegmentVersion);
  }

  stats(now: number = this.o.now()): DurableQueueStats {
    return {
      count: this.liveCount,
      bytes: this.liveBytes,
      oldestAgeMs: this.liveCount > 0 && !this.closePromise ? Math.max(0, now - this.oldestTime()) : 0,
      droppedOldest: this.droppedOldest,
      rejectedNew: this.rejectedNew,
      cursor: this.cursor,
      nextSeq: this.nextSeq,
      segments: this.segments.length,
      loadedSegments: this.segments.reduce((n, seg) => n + (seg.loaded ? 1 : 0), 0),
      fsyncs: this.fsyncs,
      corruptOnRead: this.corruptOnRead,
      cursorWriteErrors: this.cursorWriteErrors,
      failed: this.episode !== null,
      writeError:
        this.episode === null
          ? null
          : { code: this.episode.code, message: this.episode.error, since: this.episode.since },
      writeFailures: this.writeFailures,
      failedPuts: this.failedPuts,
      recovery: { ...this.recovery },
    };
  }

  /** Writes and fsyncs what is pending (whatever the policy), persists the cursor, releases the lock. */
  close(): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.closed = true;
    this.closePromise = this.shutdown();
    return this.closePromise;
  }

  private async shutdown(): Promise<void> {
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    if (this.cursorTimer) clearTimeout(this.cursorTimer);
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.windowTimer = null;
    this.intervalTimer = null;
    this.cursorTimer = null;
    this.drops.end();
    try {
      await this.flush();
      this.resolveWaiters(this.writtenSeq);
    } catch {
      // fail() rejected the waiters; the files are closed below all the same
    }
    try {
      if (!this.failure && this.activeFd >= 0) fdatasyncSync(this.activeFd);
    } catch (err) {
      this.fail(err);
    }
    if (this.cutPending) {
      try {
        this.cutBack();
      } catch {
        // recovery cuts a torn tail; a whole rejected record may come back as a duplicate
      }
    }
    for (const fd of this.closeAfterSync.splice(0)) closeQuietly(fd);
    for (const seg of this.indexAfterSync.splice(0)) if (!seg.deleted && !this.failure) writeIndex(seg);
    try {
      // the in-place writes were not fsynced: this makes the last one durable
      this.cursorFile.writeDurably(this.cursor);
      this.persistedCursor = this.cursor;
    } catch {
      this.cursorWriteErrors++;
    }
    this.cursorFile.close();
    if (this.activeFd >= 0) closeQuietly(this.activeFd);
    this.activeFd = -1;
    if (this.readFd >= 0) closeQuietly(this.readFd);
    this.readFd = -1;
    this.readSeg = null;
    try {
      fsyncSync(this.dirFd);
    } finally {
      closeQuietly(this.dirFd);
      this.releaseLock();
    }
  }
}
