/**
 * What open() does before the queue takes writes: checks the format marker, reads the cursor,
 * loads each sealed segment from its index or scans it, cuts torn tails, drops empty segments,
 * and decides the next seq (never one that was used before, not even by a record lost since).
 */
import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readdirSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { DurableQueueError } from './errors.ts';
import { CURSOR_FILE, checkMeta, META_FILE, readCursor, restrictModes } from './files.ts';
import { writeFully } from './io.ts';
import { LOCK_FILE } from './lock.ts';
import { MAX_SEQ, SEGMENT_HEADER_BYTES, type SegmentVersion, writeSegmentHeader } from './record.ts';
import { FileWindow, MAX_SEGMENT_FILE_BYTES, SEGMENT_NAME, Segment, scanSegment } from './segment.ts';
import { removeIndex, summarizeIndex, writeIndex } from './segment-index.ts';

/** Below glibc's default mmap threshold, like every buffer the open allocates (see segment-index.ts). */
const SCAN_CHUNK = 128 << 10;

/** What recovery found and repaired when the queue was opened. */
export interface RecoveryStats {
  /** Segments whose end held a torn or bad record, cut off. */
  truncatedTails: number;
  truncatedBytes: number;
  /** Bad stretches between good records, skipped (their records are lost; counted here). */
  corruptRegions: number;
  corruptBytes: number;
  /** Segment files with a damaged 8-byte header (rewritten when records follow it). */
  badHeaders: number;
  /** Segment files removed: empty after repair, or wholly below the cursor. */
  removedSegments: number;
  /** Sealed segments known from their index file instead of being scanned. */
  indexedSegments: number;
  /** 'missing' and 'invalid' restart from 0: everything on disk is delivered again. */
  cursor: 'ok' | 'missing' | 'invalid' | 'past-end';
  metaRewritten: boolean;
}

export interface Recovered {
  /** In seq order; the last one takes new records. */
  segments: Segment[];
  nextSeq: number;
  cursor: number;
  /** The cursor as the file holds it, -1 when there is none to trust. */
  persistedCursor: number;
  liveCount: number;
  liveBytes: number;
  recovery: RecoveryStats;
}

export function recoverQueue(dir: string, dirFd: number, maxRecordBytes: number): Recovered {
  const recovery: RecoveryStats = {
    truncatedTails: 0,
    truncatedBytes: 0,
    corruptRegions: 0,
    corruptBytes: 0,
    badHeaders: 0,
    removedSegments: 0,
    indexedSegments: 0,
    cursor: 'ok',
    metaRewritten: false,
  };
  const segments: Segment[] = [];
  recovery.metaRewritten = checkMeta(dir, dirFd);
  for (const tmp of [`${CURSOR_FILE}.tmp`, `${META_FILE}.tmp`]) {
    try {
      unlinkSync(join(dir, tmp));
    } catch {
      // usually absent
    }
  }
  const c = readCursor(dir);
  const cursor = typeof c === 'number' ? c : 0;
  if (c === null) recovery.cursor = 'missing';
  else if (c === 'invalid') recovery.cursor = 'invalid';

  const files = readdirSync(dir);
  restrictModes(
    dir,
    files.filter(
      (n) => n === CURSOR_FILE || n === META_FILE || n === LOCK_FILE || /^\d{20}\.(log|idx)$/.test(n),
    ),
  );
  const names = files
    .filter((n) => SEGMENT_NAME.test(n) && Number(n.slice(0, 20)) >= 1 && Number(n.slice(0, 20)) <= MAX_SEQ)
    .filter((n) => statSync(join(dir, n)).isFile())
    .sort();
  const logs = new Set(names);
  for (const n of files) {
    if (/^\d{20}\.idx$/.test(n) && !logs.has(`${n.slice(0, 20)}.log`))
      removeIndex(join(dir, `${n.slice(0, 20)}.log`));
  }
  const scanWin = new FileWindow(SCAN_CHUNK);
  // the arrays of the last segment scanned and let go: the next scan fills them again
  let spare: Segment | null = null;
  let lastSeq = 0;
  for (let i = 0; i < names.length; i++) {
    const path = join(dir, names[i]);
    const baseSeq = Number(names[i].slice(0, 20));
    const ceil = i + 1 < names.length ? Number(names[i + 1].slice(0, 20)) : MAX_SEQ + 1;
    const isLast = i === names.length - 1;
    if (!isLast) {
      const fileSize = statSync(path).size;
      const sum = summarizeIndex(path, baseSeq, fileSize, ceil, cursor);
      if (sum !== null) {
        recovery.indexedSegments++;
        const seg = Segment.unloaded(baseSeq, path, fileSize, sum.slots);
        seg.live = sum.live;
        seg.liveBytes = sum.liveBytes;
        lastSeq = Math.max(lastSeq, seg.endSeq);
        segments.push(seg);
        continue;
      }
    }
    const fd = openSync(path, 'r+');
    try {
      const size = fstatSync(fd).size;
      const scanned = Math.min(size, MAX_SEGMENT_FILE_BYTES);
      const r = scanSegment(fd, scanned, baseSeq, ceil, path, scanWin, maxRecordBytes, spare);
      spare = null;
      const seg = r.segment;
      recovery.corruptRegions += r.corruptRegions;
      recovery.corruptBytes += r.corruptBytes;
      if (!r.headerOk) recovery.badHeaders++;
      if (seg.slots === 0 && !isLast) {
        closeSync(fd);
        unlinkSync(path);
        removeIndex(path);
        spare = seg.unload();
        recovery.removedSegments++;
        if (size > SEGMENT_HEADER_BYTES || !r.headerOk) {
          recovery.truncatedTails++;
          recovery.truncatedBytes += Math.max(0, size - SEGMENT_HEADER_BYTES);
        }
        continue;
      }
      if (r.validEnd < size) {
        recovery.truncatedTails++;
        recovery.truncatedBytes += size - r.validEnd;
        ftruncateSync(fd, r.validEnd);
      }
      if (!r.headerOk) {
        const h = Buffer.alloc(SEGMENT_HEADER_BYTES);
        writeSegmentHeader(h, seg.version as SegmentVersion); // a scan's: 1 or 2
        writeFully(fd, h, SEGMENT_HEADER_BYTES, 0);
      }
      if (r.validEnd < size || !r.headerOk) fdatasyncSync(fd);
      if (seg.slots > 0) lastSeq = Math.max(lastSeq, seg.endSeq);
      seg.settle(cursor);
      if (isLast) removeIndex(path);
      // the index now holds what the arrays hold: keep only the summary until the cursor comes
      else if (writeIndex(seg)) spare = seg.unload();
      if (seg.loaded) seg.trim();
      segments.push(seg);
    } finally {
      try {
        closeSync(fd);
      } catch {
        // closed above when the segment was removed
      }
    }
  }
  if (cursor > lastSeq && lastSeq > 0) recovery.cursor = 'past-end';
  const last = segments[segments.length - 1];
  const nextSeq = Math.max(1, lastSeq + 1, cursor + 1, last ? last.baseSeq : 1);
  if (nextSeq > MAX_SEQ) throw new DurableQueueError('FORMAT', `queue ${dir}: seq space exhausted`);

  let liveCount = 0;
  let liveBytes = 0;
  for (const seg of segments) {
    liveCount += seg.live;
    liveBytes += seg.liveBytes;
  }
  return {
    segments,
    nextSeq,
    cursor,
    persistedCursor: typeof c === 'number' ? c : -1,
    liveCount,
    liveBytes,
    recovery,
  };
}
