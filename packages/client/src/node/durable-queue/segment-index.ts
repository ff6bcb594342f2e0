/**
 * A sealed segment's index, `<first seq>.idx`, so that reopening a big queue reads 8 bytes per
 * record instead of the whole log: on an SD card after a power cut the page cache is empty and
 * scanning 150 MB would take seconds. Written once a sealed segment is known durable (after its
 * last fsync; at once under fsync 'never'), not fsynced itself: a torn or missing index fails
 * its checks and the segment is scanned instead. Records of an indexed segment are CRC-checked
 * when read() loads them, not at open.
 *
 *   0  4  magic "MEQI"
 *   4  1  version 1
 *   5  3  zero
 *   8  8  first seq (u32 low, u32 high), equal to the segment's name
 *  16  4  slots N: seqs first .. first + N - 1
 *  20  4  byte size of the segment file it describes (a mismatch voids the index)
 *  24  4N record offsets, 0xFFFFFFFF for a seq no record holds
 *      4N topic + payload bytes of each record
 *      4  CRC-32C of everything before
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { crc32c } from './crc32c.ts';
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from './record.ts';
import { ABSENT, LIVE, Segment } from './segment.ts';

const MAGIC = 0x4951454d; // "MEQI" as little-endian u32
const HEAD = 24;
const NO_RECORD = 0xffffffff;

export function indexPath(segmentPath: string): string {
  return `${segmentPath.slice(0, -4)}.idx`;
}

export function encodeIndex(seg: Segment): Buffer {
  const n = seg.slots;
  const b = Buffer.alloc(HEAD + 8 * n + 4);
  b.writeUInt32LE(MAGIC, 0);
  b[4] = 1;
  b.writeUInt32LE(seg.baseSeq >>> 0, 8);
  b.writeUInt32LE(Math.floor(seg.baseSeq / 0x100000000), 12);
  b.writeUInt32LE(n, 16);
  b.writeUInt32LE(seg.size, 20);
  for (let i = 0; i < n; i++) {
    b.writeUInt32LE(seg.state[i] === ABSENT ? NO_RECORD : seg.offsets[i], HEAD + 4 * i);
    b.writeUInt32LE(seg.sizes[i], HEAD + 4 * n + 4 * i);
  }
  b.writeUInt32LE(crc32c(b, 0, b.length - 4), b.length - 4);
  return b;
}

/** Best effort: an index that cannot be written only makes the next open slower. */
export function writeIndex(seg: Segment): void {
  try {
    writeFileSync(indexPath(seg.path), encodeIndex(seg), { mode: 0o644 });
  } catch {
    // the segment is scanned instead
  }
}

export function removeIndex(segmentPath: string): void {
  try {
    unlinkSync(indexPath(segmentPath));
  } catch {
    // none was written
  }
}

/**
 * The segment as its index describes it, or null when the index is missing or does not match
 * the file byte for byte in every checkable way (then the caller scans the segment).
 */
export function loadIndex(path: string, baseSeq: number, fileSize: number, seqCeil: number): Segment | null {
  let b: Buffer;
  try {
    b = readFileSync(indexPath(path));
  } catch {
    return null;
  }
  if (b.length < HEAD + 4 || b.readUInt32LE(0) !== MAGIC || b[4] !== 1) return null;
  const n = b.readUInt32LE(16);
  if (b.length !== HEAD + 8 * n + 4 || n === 0) return null;
  if (b.readUInt32LE(8) + b.readUInt32LE(12) * 0x100000000 !== baseSeq) return null;
  if (b.readUInt32LE(20) !== fileSize || baseSeq + n > seqCeil) return null;
  if (crc32c(b, 0, b.length - 4) !== b.readUInt32LE(b.length - 4)) return null;
  const seg = new Segment(baseSeq, path, n);
  const { offsets, sizes } = seg;
  let prev = SEGMENT_HEADER_BYTES - 1;
  for (let i = 0; i < n; i++) {
    const off = b.readUInt32LE(HEAD + 4 * i);
    sizes[i] = b.readUInt32LE(HEAD + 4 * n + 4 * i);
    offsets[i] = off;
    if (off === NO_RECORD) {
      seg.state[i] = ABSENT;
      continue;
    }
    if (off <= prev || off + RECORD_HEADER_BYTES > fileSize) return null;
    prev = off;
    seg.state[i] = LIVE;
    seg.live++;
  }
  seg.slots = n;
  seg.size = fileSize;
  return seg;
}
