/**
 * The small files beside the segments: the acknowledge cursor and the format marker.
 * Both are replaced atomically (write a temporary, fsync it, rename over, fsync the directory)
 * so a crash leaves either the old or the new content, never a mix.
 *
 * Cursor file `cursor`, 16 bytes: magic "MEQC", u32 seq low, u32 seq high, u32 CRC-32C of the
 * first 12 bytes. Every seq <= cursor was acknowledged (or dropped by a bound).
 */
import { closeSync, fsync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from './crc32c.ts';
import { DurableQueueError } from './errors.ts';

export const CURSOR_FILE = 'cursor';
export const META_FILE = 'meta.json';
const CURSOR_MAGIC = 0x4351454d; // "MEQC" read as little-endian u32
const FORMAT = 'mqtt-edge-durable-queue';
const VERSION = 1;

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
  let b: Buffer;
  try {
    b = readFileSync(join(dir, CURSOR_FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (b.length !== 16 || b.readUInt32LE(0) !== CURSOR_MAGIC || crc32c(b, 0, 12) !== b.readUInt32LE(12)) {
    return 'invalid';
  }
  const seq = b.readUInt32LE(4) + b.readUInt32LE(8) * 0x100000000;
  return seq <= Number.MAX_SAFE_INTEGER ? seq : 'invalid';
}

export async function writeCursor(dir: string, dirFd: number, seq: number): Promise<void> {
  const tmp = join(dir, `${CURSOR_FILE}.tmp`);
  const fh = await open(tmp, 'w', 0o644);
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
  const fd = openSync(tmp, 'w', 0o644);
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
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    write();
    return false;
  }
  let meta: unknown;
  try {
    meta = JSON.parse(text);
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
