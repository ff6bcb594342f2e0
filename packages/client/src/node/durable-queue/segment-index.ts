/**
 * A sealed segment's index, `<first seq>.idx`, so that reopening a big queue reads 8 bytes per
 * record instead of the whole log: on an SD card after a power cut the page cache is empty and
 * scanning 150 MB would take seconds. Written once a sealed segment is known durable (after its
 * last fsync; at once under fsync 'never'), not fsynced itself: a torn or missing index fails
 * its checks and the segment is scanned instead. Records of an indexed segment are CRC-checked
 * when read() loads them, not at open.
 *
 * The open only checks each index and sums it (summarizeIndex); the per-record arrays of a
 * sealed segment are loaded (loadIndex) when the cursor or a read reaches it. Both stream the
 * file through one small reused buffer: a whole-file read per segment would leave malloc'd
 * memory behind that glibc does not give back.
 *
 *   0  4  magic "MEQI"
 *   4  1  version 2 (version 1 kept offsets and sizes apart; it is ignored, the segment scanned)
 *   5  3  zero
 *   8  8  first seq (u32 low, u32 high), equal to the segment's name
 *  16  4  slots N: seqs first .. first + N - 1
 *  20  4  byte size of the segment file it describes (a mismatch voids the index)
 *  24  8N per slot: record offset (0xFFFFFFFF for a seq no record holds), topic + payload bytes
 *      4  CRC-32C of everything before
 */
import { closeSync, fstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { crc32c } from './crc32c.ts';
import { FILE_MODE, writeFully } from './io.ts';
import { MIN_RECORD_BYTES, SEGMENT_HEADER_BYTES } from './record.ts';
import { ABSENT, DONE, LIVE, type Segment } from './segment.ts';

const MAGIC = 0x4951454d; // "MEQI" as little-endian u32
const VERSION = 2;
const HEAD = 24;
const NO_RECORD = 0xffffffff;
/** A multiple of 8 (one slot) and below glibc's default mmap threshold. */
const CHUNK = 64 << 10;

let scratch: Buffer | null = null;
/** One buffer for every index read and write: all of them are synchronous, none overlap. */
function buffer(): Buffer {
  scratch ??= Buffer.allocUnsafe(CHUNK);
  return scratch;
}

export function indexPath(segmentPath: string): string {
  return `${segmentPath.slice(0, -4)}.idx`;
}

/** The index file's bytes, in CHUNK-sized pieces handed to `sink` (reused: copy before keeping). */
function encodeIndex(seg: Segment, sink: (b: Buffer, len: number) => void): void {
  const b = buffer();
  const n = seg.slots;
  b.writeUInt32LE(MAGIC, 0);
  b[4] = VERSION;
  b[5] = 0;
  b[6] = 0;
  b[7] = 0;
  b.writeUInt32LE(seg.baseSeq >>> 0, 8);
  b.writeUInt32LE(Math.floor(seg.baseSeq / 0x100000000), 12);
  b.writeUInt32LE(n, 16);
  b.writeUInt32LE(seg.size, 20);
  let len = HEAD;
  let crc = 0;
  const { offsets, sizes, state } = seg;
  for (let i = 0; i < n; i++) {
    if (len + 8 > CHUNK) {
      crc = crc32c(b, 0, len, crc);
      sink(b, len);
      len = 0;
    }
    const absent = state[i] === ABSENT;
    b.writeUInt32LE(absent ? NO_RECORD : offsets[i], len);
    b.writeUInt32LE(absent ? 0 : sizes[i], len + 4);
    len += 8;
  }
  if (len + 4 > CHUNK) {
    crc = crc32c(b, 0, len, crc);
    sink(b, len);
    len = 0;
  }
  crc = crc32c(b, 0, len, crc);
  b.writeUInt32LE(crc, len);
  sink(b, len + 4);
}

/**
 * Best effort: an index that cannot be written only makes the next open slower. Returns true
 * when the whole file was written. Only a loaded segment can be indexed.
 */
export function writeIndex(seg: Segment): boolean {
  if (!seg.loaded) return false;
  let fd = -1;
  try {
    fd = openSync(indexPath(seg.path), 'w', FILE_MODE);
    let pos = 0;
    encodeIndex(seg, (b, len) => {
      writeFully(fd, b, len, pos);
      pos += len;
    });
    return true;
  } catch {
    removeIndex(seg.path); // a half-written index would only fail its CRC, but say it plainly
    return false;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

export function removeIndex(segmentPath: string): void {
  try {
    unlinkSync(indexPath(segmentPath));
  } catch {
    // none was written
  }
}

/** What an index says about its segment's records above a cursor. */
export interface IndexSummary {
  slots: number;
  /** Records above the cursor, and their topic + payload bytes. */
  live: number;
  liveBytes: number;
}

/**
 * Streams a segment's index, checking it against the segment file byte for byte in every
 * checkable way; `slot` sees every slot in order (offset NO_RECORD for an absent seq). Returns
 * the summary, or null when the index is missing or fails a check (the caller scans the segment).
 */
function readIndex(
  path: string,
  baseSeq: number,
  fileSize: number,
  seqCeil: number,
  cursor: number,
  start: (slots: number) => void,
  slot: (i: number, offset: number, messageBytes: number) => void,
): IndexSummary | null {
  let fd: number;
  try {
    fd = openSync(indexPath(path), 'r');
  } catch {
    return null;
  }
  try {
    const b = buffer();
    const total = fstatSync(fd).size;
    if (total < HEAD + 4 || readFully(fd, b, HEAD, 0) !== HEAD) return null;
    if (b.readUInt32LE(0) !== MAGIC || b[4] !== VERSION) return null;
    const n = b.readUInt32LE(16);
    // Every slot is a record of at least MIN_RECORD_BYTES, or a seq the scan skipped over at
    // least that many bytes for: a count the segment cannot hold is refused before it is read.
    if (n === 0 || n > (fileSize - SEGMENT_HEADER_BYTES) / MIN_RECORD_BYTES) return null;
    if (total !== HEAD + 8 * n + 4) return null;
    if (b.readUInt32LE(8) + b.readUInt32LE(12) * 0x100000000 !== baseSeq) return null;
    if (b.readUInt32LE(20) !== fileSize || baseSeq + n > seqCeil) return null;
    let crc = crc32c(b, 0, HEAD);
    start(n);
    let prev = SEGMENT_HEADER_BYTES - 1;
    let live = 0;
    let liveBytes = 0;
    let i = 0;
    let pos = HEAD;
    const end = HEAD + 8 * n;
    while (pos < end) {
      const want = Math.min(CHUNK, end - pos);
      if (readFully(fd, b, want, pos) !== want) return null;
      crc = crc32c(b, 0, want, crc);
      for (let k = 0; k < want; k += 8, i++) {
        const off = b.readUInt32LE(k);
        const size = b.readUInt32LE(k + 4);
        if (off !== NO_RECORD) {
          if (off <= prev || off + MIN_RECORD_BYTES > fileSize) return null;
          prev = off;
          if (baseSeq + i > cursor) {
            live++;
            liveBytes += size;
          }
        }
        slot(i, off, size);
      }
      pos += want;
    }
    if (readFully(fd, b, 4, end) !== 4 || b.readUInt32LE(0) !== crc) return null;
    return { slots: n, live, liveBytes };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, b: Buffer, len: number, position: number): number {
  let got = 0;
  while (got < len) {
    const r = readSync(fd, b, got, len - got, position + got);
    if (r === 0) break;
    got += r;
  }
  return got;
}

/** Checks the index of a sealed segment and counts what is live above `cursor`; null: scan it. */
export function summarizeIndex(
  path: string,
  baseSeq: number,
  fileSize: number,
  seqCeil: number,
  cursor: number,
): IndexSummary | null {
  return readIndex(
    path,
    baseSeq,
    fileSize,
    seqCeil,
    cursor,
    () => {},
    () => {},
  );
}

/**
 * Fills an unloaded segment's arrays from its index; seqs <= cursor come back DONE. Returns
 * what it loaded (the caller settles `live` and `liveBytes`), or null, the segment left
 * unloaded, when the index is gone or fails a check.
 */
export function loadIndex(seg: Segment, seqCeil: number, cursor: number): IndexSummary | null {
  let offsets = new Uint32Array(0);
  let sizes = new Uint32Array(0);
  let state = new Uint8Array(0);
  const base = seg.baseSeq;
  const r = readIndex(
    seg.path,
    base,
    seg.size,
    seqCeil,
    cursor,
    (n) => {
      offsets = new Uint32Array(n);
      sizes = new Uint32Array(n);
      state = new Uint8Array(n);
    },
    (i, off, size) => {
      offsets[i] = off;
      sizes[i] = size;
      state[i] = off === NO_RECORD ? ABSENT : base + i > cursor ? LIVE : DONE;
    },
  );
  if (r !== null) seg.load(offsets, sizes, state, r.slots);
  return r;
}
