/**
 * The small files beside the segments: the acknowledge cursor and the format marker.
 * Both are replaced atomically (write a temporary, fsync it, rename over, fsync the directory)
 * so a crash leaves either the old or the new content, never a mix.
 *
 * Cursor file `cursor`, 528 bytes: two 16-byte slots at offsets 0 and 512 (different sectors),
 * each magic "MEQC", u32 seq low, u32 seq high, u32 CRC-32C of the slot's first 12 bytes; the
 * larger valid seq is the cursor. Every seq <= cursor was acknowledged (or dropped by a bound).
 * It is created once (atomically, like the marker) and then written in place, the slots in turn,
 * without an fsync of its own (issue 18.4: a new file and two fsyncs per acknowledge batch cost a
 * flash page and metadata each time; a page overwritten while dirty costs nothing more). A torn
 * write spoils one slot, the other holds the value before. A version-1 queue's 16-byte cursor
 * (one slot) is still read, and replaced by the two-slot file at open.
 */
import {
  chmodSync,
  closeSync,
  fdatasyncSync,
  fsyncSync,
  openSync,
  renameSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { crc32c } from './crc32c.ts';
import { DurableQueueError } from './errors.ts';
import { closeQuietly, DIR_MODE, FILE_MODE, readSmallFile, writeFully } from './io.ts';

export const CURSOR_FILE = 'cursor';
export const META_FILE = 'meta.json';
const CURSOR_MAGIC = 0x4351454d; // "MEQC" read as little-endian u32
const FORMAT = 'mqtt-edge-durable-queue';
/**
 * 2 since issue 18.4 (segments may hold version 2 records, which version 1's code would take for
 * damage): a version 1 queue is marked 2 when opened, so older code refuses it instead.
 */
const VERSION = 2;
const CURSOR_SLOT_BYTES = 16;
/** The second slot's offset: another 512-byte sector than the first. */
const CURSOR_SLOT_STRIDE = 512;
export const CURSOR_FILE_BYTES = CURSOR_SLOT_STRIDE + CURSOR_SLOT_BYTES;
/** The marker is ~60 bytes; a larger one is not ours and is not read whole. */
const META_MAX_BYTES = 4096;

function encodeCursor(seq: number, b: Buffer, at: number): void {
  b.writeUInt32LE(CURSOR_MAGIC, at);
  b.writeUInt32LE(seq >>> 0, at + 4);
  b.writeUInt32LE(Math.floor(seq / 0x100000000), at + 8);
  b.writeUInt32LE(crc32c(b, at, at + 12), at + 12);
}

/** The cursor, `null` when the file is missing, `'invalid'` when present but no slot is valid. */
export function readCursor(dir: string): number | null | 'invalid' {
  let b: Buffer | null;
  try {
    b = readSmallFile(join(dir, CURSOR_FILE), CURSOR_FILE_BYTES);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'EISDIR') return 'invalid';
    throw err;
  }
  if (b === null || (b.length !== CURSOR_SLOT_BYTES && b.length !== CURSOR_FILE_BYTES)) return 'invalid';
  const a = readSlot(b, 0);
  const z = b.length === CURSOR_FILE_BYTES ? readSlot(b, CURSOR_SLOT_STRIDE) : -1;
  const seq = Math.max(a, z);
  return seq >= 0 ? seq : 'invalid';
}

/** A slot's seq, -1 when it is torn or not one. */
function readSlot(b: Buffer, at: number): number {
  if (b.readUInt32LE(at) !== CURSOR_MAGIC || crc32c(b, at, at + 12) !== b.readUInt32LE(at + 12)) return -1;
  const seq = b.readUInt32LE(at + 4) + b.readUInt32LE(at + 8) * 0x100000000;
  return seq <= Number.MAX_SAFE_INTEGER ? seq : -1;
}

/**
 * The cursor file held open and written in place. `write()` puts the value in the slot not
 * written last and does not fsync: losing the latest values to a power cut only brings acknowledged
 * messages back as duplicates, which a crash may; `sync()` (close) makes it durable. The file is
 * made (atomically, fsynced) on the first write when it is missing or not the two-slot size.
 */
export class CursorFile {
  private fd = -1;
  private next = 0;
  private readonly slot = Buffer.alloc(CURSOR_SLOT_BYTES);

  constructor(
    private readonly dir: string,
    private readonly dirFd: number,
  ) {}

  write(seq: number): void {
    if (this.fd < 0 && this.reopen()) {
      // fall through to the in-place write
    } else if (this.fd < 0) {
      const both = Buffer.alloc(CURSOR_FILE_BYTES);
      encodeCursor(seq, both, 0);
      encodeCursor(seq, both, CURSOR_SLOT_STRIDE);
      atomicWriteSync(this.dir, this.dirFd, CURSOR_FILE, both);
      this.fd = openSync(join(this.dir, CURSOR_FILE), 'r+');
      return;
    }
    encodeCursor(seq, this.slot, 0);
    writeFully(this.fd, this.slot, CURSOR_SLOT_BYTES, this.next * CURSOR_SLOT_STRIDE);
    this.next ^= 1;
  }

  /** Opens a two-slot file left by an earlier open; the slot to write first is the older one. */
  private reopen(): boolean {
    const path = join(this.dir, CURSOR_FILE);
    let b: Buffer | null;
    try {
      b = readSmallFile(path, CURSOR_FILE_BYTES);
    } catch {
      return false;
    }
    if (b === null || b.length !== CURSOR_FILE_BYTES) return false;
    this.fd = openSync(path, 'r+');
    this.next = readSlot(b, 0) > readSlot(b, CURSOR_SLOT_STRIDE) ? 1 : 0;
    return true;
  }

  /** Writes `seq` and fdatasyncs it. */
  writeDurably(seq: number): void {
    const fresh = this.fd < 0;
    this.write(seq);
    if (!fresh) fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) closeQuietly(this.fd);
    this.fd = -1;
  }
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
  if (m?.format === FORMAT && m.version === 1) {
    write(); // an upgrade, not a repair
    return false;
  }
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
