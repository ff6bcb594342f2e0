/**
 * The in-memory index of one segment file: per seq slot, the record's file offset, its message
 * bytes (for stats and maxBytes) and its state, 9 bytes a record, nothing of the message itself.
 * Only the segments the cursor and the reads are in hold these arrays (and the active one): a
 * sealed segment further on is a summary (slots, live count and bytes) until it is reached, and
 * then loaded from its index file (segment-index.ts). A million queued records in 8 MiB segments
 * cost two or three segments' arrays, well under 1 MB, instead of 9 MB.
 */
import { readSync } from 'node:fs';
import {
  MIN_RECORD_BYTES,
  minRecordBytes,
  recordCrcOk,
  recordMessageBytes,
  recordSeq,
  recordShapeOk,
  SEGMENT_HEADER_BYTES,
  SEGMENT_VERSION,
  type SegmentVersion,
  segmentHeaderVersion,
} from './record.ts';

/** Stored, not acknowledged. */
export const LIVE = 0;
/** Acknowledged, or dropped by a bound. */
export const DONE = 1;
/** No record holds this seq (lost to corruption, or never written). */
export const ABSENT = 2;

export function segmentName(baseSeq: number): string {
  return `${String(baseSeq).padStart(20, '0')}.log`;
}

export const SEGMENT_NAME = /^(\d{20})\.log$/;

/** Offsets are u32: bytes of a segment file past this are never records (recovery cuts them). */
export const MAX_SEGMENT_FILE_BYTES = 0xffff_ffff;

const NONE32 = new Uint32Array(0);
const NONE8 = new Uint8Array(0);

export class Segment {
  /** Seqs baseSeq .. baseSeq + slots - 1 have a slot. */
  slots = 0;
  /** Live records in this segment, and their topic + payload bytes (kept while unloaded too). */
  live = 0;
  liveBytes = 0;
  /** Bytes of the file that hold records (the header included); the next record goes here. */
  size = SEGMENT_HEADER_BYTES;
  /** False: the arrays below are empty and the summary above is all there is (see load()). */
  loaded = true;
  offsets: Uint32Array;
  sizes: Uint32Array;
  state: Uint8Array;
  /** Unlinked after the cursor passed it; a late index write must not recreate its files. */
  deleted = false;
  /**
   * The format of its records (its header's version byte): -1 until read (a sealed segment known
   * from its index), 0 for a damaged header (its records are then unreadable, as rot is).
   */
  version: SegmentVersion | 0 | -1 = SEGMENT_VERSION;

  constructor(
    readonly baseSeq: number,
    readonly path: string,
    capacity = 1024,
  ) {
    this.offsets = new Uint32Array(capacity);
    this.sizes = new Uint32Array(capacity);
    this.state = new Uint8Array(capacity);
  }

  /** A sealed segment known only by its index's summary; its arrays are loaded when reached. */
  static unloaded(baseSeq: number, path: string, fileSize: number, slots: number): Segment {
    const seg = new Segment(baseSeq, path, 0);
    seg.version = -1;
    seg.slots = slots;
    seg.size = fileSize;
    seg.loaded = false;
    return seg;
  }

  get endSeq(): number {
    return this.baseSeq + this.slots - 1;
  }

  /** Takes the arrays of a loaded index or scan; `live` and `liveBytes` are the caller's. */
  load(offsets: Uint32Array, sizes: Uint32Array, state: Uint8Array, slots: number): void {
    this.offsets = offsets;
    this.sizes = sizes;
    this.state = state;
    this.slots = slots;
    this.loaded = true;
  }

  /**
   * Drops the arrays of a sealed segment whose index file holds them (written just before) and
   * returns them: recovery scans the next segment into the same memory.
   */
  unload(): Segment {
    const spare = new Segment(this.baseSeq, this.path, 0);
    spare.offsets = this.offsets;
    spare.sizes = this.sizes;
    spare.state = this.state;
    this.offsets = NONE32;
    this.sizes = NONE32;
    this.state = NONE8;
    this.loaded = false;
    return spare;
  }

  push(seq: number, offset: number, messageBytes: number): void {
    const slot = seq - this.baseSeq;
    if (slot >= this.offsets.length) this.grow(Math.max(slot + 1, this.offsets.length * 2));
    // seqs skipped by corruption get ABSENT slots: fill() is cheap and gaps are rare and bounded
    if (slot > this.slots) this.state.fill(ABSENT, this.slots, slot);
    this.offsets[slot] = offset;
    this.sizes[slot] = messageBytes;
    this.state[slot] = LIVE;
    this.slots = slot + 1;
    this.live++;
    this.liveBytes += messageBytes;
  }

  /** Live records and bytes with a seq above `cursor`; slots at or below it become DONE. */
  settle(cursor: number): void {
    const { state, sizes, baseSeq } = this;
    let live = 0;
    let bytes = 0;
    for (let s = 0; s < this.slots; s++) {
      if (state[s] !== LIVE) continue;
      if (baseSeq + s <= cursor) state[s] = DONE;
      else {
        live++;
        bytes += sizes[s];
      }
    }
    this.live = live;
    this.liveBytes = bytes;
  }

  /** Releases the spare capacity of a segment that will not grow any more. */
  trim(): void {
    if (this.offsets.length > this.slots) this.grow(this.slots);
  }

  private grow(capacity: number): void {
    const o = new Uint32Array(capacity);
    const s = new Uint32Array(capacity);
    const t = new Uint8Array(capacity);
    const n = Math.min(this.slots, capacity);
    o.set(this.offsets.subarray(0, n));
    s.set(this.sizes.subarray(0, n));
    t.set(this.state.subarray(0, n));
    this.offsets = o;
    this.sizes = s;
    this.state = t;
  }
}

/**
 * A read-ahead window over one file, so that walking records costs one pread per `chunk` bytes.
 * Data below a file's size never changes (append-only), so a window stays valid while the file grows.
 */
export class FileWindow {
  buf: Buffer;
  private start = 0;
  private len = 0;
  private fd = -1;

  constructor(private readonly chunk: number) {
    this.buf = Buffer.allocUnsafe(chunk);
  }

  /** Points the window at another file. Always forgets the old bytes: fd numbers are reused. */
  attach(fd: number): void {
    this.fd = fd;
    this.len = 0;
  }

  detach(): void {
    this.fd = -1;
    this.shrink();
  }

  /** Gives back the memory a large record made the window grow to. */
  shrink(): void {
    this.len = 0;
    if (this.buf.length > this.chunk) this.buf = Buffer.allocUnsafe(this.chunk);
  }

  /**
   * Makes file bytes [pos, pos + n) available and returns their index in `buf`, or -1 when the
   * file is shorter. The caller bounds n by the file size it knows, so a hostile length field
   * never makes this allocate more than the file holds.
   */
  at(pos: number, n: number, fileSize: number): number {
    if (pos >= this.start && pos + n <= this.start + this.len) return pos - this.start;
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(n);
    const want = Math.min(this.buf.length, fileSize - pos);
    let got = 0;
    while (got < want) {
      const r = readSync(this.fd, this.buf, got, want - got, pos + got);
      if (r === 0) break;
      got += r;
    }
    this.start = pos;
    this.len = got;
    return got >= n ? 0 : -1;
  }
}

/** The record version the header of the segment open on `fd` names; 0 if unreadable or damaged. */
export function readHeaderVersion(fd: number): SegmentVersion | 0 {
  const h = Buffer.alloc(SEGMENT_HEADER_BYTES);
  try {
    return readSync(fd, h, 0, SEGMENT_HEADER_BYTES, 0) === SEGMENT_HEADER_BYTES
      ? segmentHeaderVersion(h, 0)
      : 0;
  } catch {
    return 0;
  }
}

export interface ScanResult {
  segment: Segment;
  headerOk: boolean;
  /** End of the last good record: what follows is cut. */
  validEnd: number;
  /** Stretches of bad bytes between good records, skipped by resynchronising. */
  corruptRegions: number;
  corruptBytes: number;
}

/**
 * Rebuilds a segment's index from its file. A record is accepted when its length fits in the
 * file, its CRC matches, its shape is sound and its seq follows the previous one. After a bad
 * record, the scan resynchronises byte by byte; a candidate's seq must be one that could have
 * followed (at most one lost record per smallest record's worth of skipped bytes, below
 * `seqCeil`), which with the CRC makes a false match in garbage vanishingly unlikely and bounds
 * the ABSENT slots it can create. The header says the records' version; a damaged header is
 * scanned as each version, and the one that finds records wins. With `spare`, the scan fills
 * that segment's arrays (grown if need be) instead of new ones and leaves them untrimmed:
 * recovery scans segment after segment into one set of arrays.
 */
export function scanSegment(
  fd: number,
  fileSize: number,
  baseSeq: number,
  seqCeil: number,
  path: string,
  win: FileWindow,
  maxRecordBytes: number,
  spare: Segment | null = null,
): ScanResult {
  win.attach(fd);
  const h = fileSize >= SEGMENT_HEADER_BYTES ? win.at(0, SEGMENT_HEADER_BYTES, fileSize) : -1;
  const version = h >= 0 ? segmentHeaderVersion(win.buf, h) : 0;
  const scan = (v: SegmentVersion, arrays: Segment | null) =>
    scanRecords(v, fileSize, baseSeq, seqCeil, path, win, maxRecordBytes, arrays);
  if (version !== 0) return { ...scan(version, spare), headerOk: true };
  const current = scan(SEGMENT_VERSION, null);
  if (current.segment.slots > 0) return { ...current, headerOk: false };
  const older = scan(1, null);
  return { ...(older.segment.slots > 0 ? older : current), headerOk: false };
}

function scanRecords(
  v: SegmentVersion,
  fileSize: number,
  baseSeq: number,
  seqCeil: number,
  path: string,
  win: FileWindow,
  maxRecordBytes: number,
  spare: Segment | null,
): Omit<ScanResult, 'headerOk'> {
  // exact capacity for a full segment of small records, grown if needed, trimmed after
  const segment = new Segment(baseSeq, path, spare ? 0 : Math.max(16, Math.ceil(fileSize / 128)));
  segment.version = v;
  if (spare) segment.load(spare.offsets, spare.sizes, spare.state, 0);
  const minBytes = minRecordBytes(v);
  let lastSeq = baseSeq - 1;
  let lastEnd = SEGMENT_HEADER_BYTES;
  let corruptRegions = 0;
  let corruptBytes = 0;

  const accept = (p: number): number => {
    const i = win.at(p, minBytes, fileSize);
    if (i < 0) return 0;
    const b = win.buf;
    const len = b.readUInt32LE(i);
    if (len < minBytes || len > fileSize - p || len > maxRecordBytes) return 0;
    const seq = recordSeq(b, i, v, baseSeq);
    const maxSeq = lastSeq + 1 + Math.floor((p - lastEnd) / minBytes);
    if (seq <= lastSeq || seq > maxSeq || seq >= seqCeil) return 0;
    const j = win.at(p, len, fileSize);
    if (j < 0 || !recordCrcOk(win.buf, j, len, v) || !recordShapeOk(win.buf, j, len, v, p)) return 0;
    segment.push(seq, p, recordMessageBytes(win.buf, j, len, v));
    lastSeq = seq;
    return len;
  };

  let pos = SEGMENT_HEADER_BYTES;
  while (pos + MIN_RECORD_BYTES <= fileSize) {
    const len = accept(pos);
    if (len > 0) {
      pos += len;
      lastEnd = pos;
      continue;
    }
    let q = pos + 1;
    let found = 0;
    for (; q + MIN_RECORD_BYTES <= fileSize; q++) {
      found = accept(q);
      if (found > 0) break;
    }
    if (found === 0) break;
    corruptRegions++;
    corruptBytes += q - lastEnd;
    pos = q + found;
    lastEnd = pos;
  }
  segment.size = lastEnd;
  if (!spare) segment.trim();
  return { segment, validEnd: lastEnd, corruptRegions, corruptBytes };
}
