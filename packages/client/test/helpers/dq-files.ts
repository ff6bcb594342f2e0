/** Helpers for durable queue tests that look at the queue's files. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

/** A function making fresh temporary directories, all removed after each test. */
export function tmpDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}

/**
 * Whole records at the start of a segment file, walked by their length fields: how many, where
 * the last one ends, and the file's size (equal to `end` when nothing torn follows them).
 */
export function recordsIn(path: string): { count: number; end: number; size: number } {
  const b = readFileSync(path);
  let p = 8;
  let count = 0;
  while (p + 4 <= b.length) {
    const len = b.readUInt32LE(p);
    if (len < (b[4] === 1 ? 28 : 21) || p + len > b.length) break;
    p += len;
    count++;
  }
  return { count, end: p, size: b.length };
}

/**
 * The seq of the record at `p` of a segment file's bytes `b` (record.ts): version 1 records hold
 * it whole, version 2 records as the difference from the segment's first seq, its file name.
 */
export function recordSeqAt(b: Buffer, p: number, segmentName: string): number {
  if (b[4] === 1) return b.readUInt32LE(p + 8) + b.readUInt32LE(p + 12) * 0x100000000;
  return Number(segmentName.slice(0, 20)) + b.readUInt32LE(p + 8);
}
