/** Small fs helpers the queue's files share. */
import { closeSync, fdatasync, fstatSync, fsync, openSync, readSync, writeSync } from 'node:fs';

/** Files the queue creates hold payloads and topics: only the owner reads them (issue 12.7). */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

export function fdatasyncP(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}
export function fsyncP(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closing is all that is left to do with it
  }
}
export function writeFully(fd: number, buf: Uint8Array, len: number, position: number): void {
  let done = 0;
  while (done < len) done += writeSync(fd, buf, done, len - done, position + done);
}

/**
 * A small file's bytes, or null when it is larger than `max`: what its size claims is never
 * allocated (a rotten or hostile cursor, marker or lock file can be gigabytes, sparse).
 * Throws what open() throws (ENOENT included).
 */
export function readSmallFile(path: string, max: number): Buffer | null {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > max) return null;
    const b = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const r = readSync(fd, b, got, size - got, got);
      if (r === 0) break;
      got += r;
    }
    return b.subarray(0, got);
  } finally {
    closeQuietly(fd);
  }
}
