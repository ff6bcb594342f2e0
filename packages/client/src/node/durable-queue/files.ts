/**
 * The small files beside the segments: the acknowledge cursor and the format marker.
 * Both are replaced atomically (write a temporary, fsync it, rename over, fsync the directory)
 * so a crash leaves either the old or the new content, never a mix.
 *
 * Cursor file `cursor`, 16 bytes: magic "MEQC", u32 seq low, u32 seq high, u32 CRC-32C of the
 * first 12 bytes. Every seq <= cursor was acknowledged (or dropped by a bound).
 */
import { chmodSync, closeSync, fsync, fsyncSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from './crc32c.ts';
import { DurableQueueError } from './errors.ts';
import { DIR_MODE, FILE_MODE, readSmallFile } from './io.ts';

export const CURSOR_FILE = 'cursor';
export const META_FILE = 'meta.json';
const CURSOR_MAGIC = 0x4351454d; // "MEQC" read as little-endian u32
const FORMAT = 'mqtt-edge-durable-queue';
const VERSION = 1;
/** The marker is ~60 bytes; a larger one is not ours and is not read whole. */
const META_MAX_BYTES = 4096;

export function encodeCursor(seq: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(CURSOR_MAGIC, 0);
  b.writeUInt32LE(seq >>> 0, 4);
  b.writeUInt32LE(Math.floor(seq / 0x100000000), 8);
  b.writeUInt32LE(crc32c(b, 0, 12), 12);
  return b;
}

/** The cursor, `null` when the file is missing, `'invalid'` when present but unreadable. */
export function readCursor(dir: string): number | null | 'invalid' {
  let b: Buffer | null;
  try {
    b = readSmallFile(join(dir, CURSOR_FILE), 16);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'EISDIR') return 'invalid';
    throw err;
  }
  if (
    b === null ||
    b.length !== 16 ||
    b.readUInt32LE(0) !== CURSOR_MAGIC ||
    crc32c(b, 0, 12) !== b.readUInt32LE(12)
  ) {
    return 'invalid';
  }
  const seq = b.readUInt32LE(4) + b.readUInt32LE(8) * 0x100000000;
  return seq <= Number.MAX_SAFE_INTEGER ? seq : 'invalid';
}

export async function writeCursor(dir: string, dirFd: number, seq: number): Promise<void> {
  const tmp = join(dir, `${CURSOR_FILE}.tmp`);
  const fh = await open(tmp, 'w', FILE_MODE);
  try {
    await fh.write(encodeCursor(seq), 0, 16, 0);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, CURSOR_FILE));
  // the directory's fsync makes the rename itself durable
  await new Promise<void>((resolve, reject) => fsync(dirFd, (err) => (err ? reject(err) : resolve())));
}

export function writeCursorSync(dir: string, dirFd: number, seq: number): void {
  atomicWriteSync(dir, dirFd, CURSOR_FILE, encodeCursor(seq));
}

function atomicWriteSync(dir: string, dirFd: number, name: string, data: Uint8Array): void {
  const tmp = join(dir, `${name}.tmp`);
  const fd = openSync(tmp, 'w', FILE_MODE);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
  fsyncSync(dirFd);
}

/**
 * Checks or creates the format marker. A marker naming another format or version is refused
 * (that directory is not ours to rewrite); an unreadable one is rewritten, because refusing
 * would keep an unattended agent down over a file that carries no data.
 * Returns true when the marker had to be rewritten.
 */
export function checkMeta(dir: string, dirFd: number): boolean {
  const path = join(dir, META_FILE);
  const write = () =>
    atomicWriteSync(
      dir,
      dirFd,
      META_FILE,
      Buffer.from(`${JSON.stringify({ format: FORMAT, version: VERSION })}\n`),
    );
  let bytes: Buffer | null;
  try {
    bytes = readSmallFile(path, META_MAX_BYTES);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    write();
    return false;
  }
  if (bytes === null) {
    write();
    return true;
  }
  let meta: unknown;
  try {
    meta = JSON.parse(bytes.toString('utf8'));
  } catch {
    write();
    return true;
  }
  const m = meta as { format?: unknown; version?: unknown } | null;
  if (m?.format !== FORMAT || m.version !== VERSION) {
    throw new DurableQueueError(
      'FORMAT',
      `${path}: expected ${FORMAT} version ${VERSION}, found ${String(m?.format)} version ${String(m?.version)}`,
    );
  }
  return false;
}

/**
 * Directories 0700, the queue's files 0600 (issue 12.7): they hold payloads and topics. A queue
 * an earlier version left readable by others is tightened when opened; a file that is not ours
 * to change (another owner) is left as it is, the open does not fail over it.
 */
export function restrictModes(dir: string, names: readonly string[]): void {
  tighten(dir, DIR_MODE);
  for (const n of names) tighten(join(dir, n), FILE_MODE);
}

function tighten(path: string, mode: number): void {
  try {
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, mode);
  } catch {
    // gone meanwhile, or owned by someone else: nothing this open can or must do about it
  }
}
