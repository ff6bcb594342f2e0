/** Small fs helpers the queue's files share. */
import { closeSync, fdatasync, fsync, writeSync } from 'node:fs';

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
