import { decodeBody } from './body.ts';
import { crc32c } from './crc32c.ts';
import { type FrameErrorKind, SerialFrameError } from './errors.ts';
import { CRC_SIZE, type Frame, HEADER_SIZE, MAX_FRAME_SIZE, MIN_FRAME_SIZE, TYPE_KIND } from './frames.ts';

export interface FrameDecoderStats {
  /** Bytes pushed. */
  bytes: number;
  framesOk: number;
  crcErrors: number;
  cobsErrors: number;
  /** Runs longer than the limit without a delimiter; their bytes are discarded up to the next 0x00. */
  oversize: number;
  shortFrames: number;
  /** CBOR not decodable or body not the schema of its type. */
  bodyErrors: number;
  unknownTypes: number;
  /** Bytes that belonged to a rejected run. */
  discardedBytes: number;
}

export interface FrameDecoderOptions {
  /** Largest decoded frame accepted, default and upper bound `MAX_FRAME_SIZE`. */
  maxFrameSize?: number;
  /** Told about every rejected run; the decoder has already counted it and moved on. */
  onError?: (error: SerialFrameError) => void;
}

/**
 * Streaming decoder: push byte chunks of any size, get typed frames. COBS is undone as bytes
 * arrive into one buffer of `maxFrameSize` bytes, which is all the memory it holds. Any bad run
 * (COBS, CRC, size, body, type) is counted, reported to `onError` and skipped up to the next
 * 0x00; nothing it is fed makes it throw, and a valid frame after garbage is never lost (the
 * garbage ends at the 0x00 that precedes the valid frame, or merges into at most the run
 * before it).
 */
export class FrameDecoder {
  readonly stats: FrameDecoderStats = {
    bytes: 0,
    framesOk: 0,
    crcErrors: 0,
    cobsErrors: 0,
    oversize: 0,
    shortFrames: 0,
    bodyErrors: 0,
    unknownTypes: 0,
    discardedBytes: 0,
  };
  private readonly buf: Uint8Array;
  private readonly onError: ((error: SerialFrameError) => void) | undefined;
  private len = 0;
  /** Data bytes left in the current COBS block; 0 means the next byte is a code byte. */
  private left = 0;
  private code = 0;
  /** Bytes of the current run seen so far (encoded), for `discardedBytes`. */
  private runBytes = 0;
  private runStart = 0;
  private skipping = false;

  constructor(options: FrameDecoderOptions = {}) {
    const max = options.maxFrameSize ?? MAX_FRAME_SIZE;
    if (!Number.isInteger(max) || max < MIN_FRAME_SIZE || max > MAX_FRAME_SIZE) {
      throw new RangeError(`maxFrameSize must be an integer in ${MIN_FRAME_SIZE}..${MAX_FRAME_SIZE}`);
    }
    this.buf = new Uint8Array(max);
    this.onError = options.onError;
  }

  /** Feeds bytes; returns the frames completed by them, in order. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    const base = this.stats.bytes;
    this.stats.bytes += chunk.length;
    const buf = this.buf;
    const max = buf.length;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0) {
        const f = this.endRun(base + i);
        if (f !== undefined) frames.push(f);
        continue;
      }
      if (this.runBytes++ === 0) this.runStart = base + i;
      if (this.skipping) continue;
      if (this.left === 0) {
        // A code byte. The block before it, unless it was a full 254-byte block, ended in a zero.
        if (this.runBytes > 1 && this.code !== 0xff) {
          if (this.len === max) {
            this.overflow();
            continue;
          }
          buf[this.len++] = 0;
        }
        this.code = b;
        this.left = b - 1;
        continue;
      }
      if (this.len === max) {
        this.overflow();
        continue;
      }
      buf[this.len++] = b;
      this.left--;
    }
    return frames;
  }

  /** Forgets a partial run (e.g. after the port was reopened): its bytes count as discarded. */
  reset(): void {
    this.stats.discardedBytes += this.runBytes;
    this.resetRun();
  }

  private overflow(): void {
    this.skipping = true;
    this.stats.oversize++;
    this.report('oversize', `run exceeds ${this.buf.length} decoded bytes without a delimiter`);
  }

  private resetRun(): void {
    this.len = 0;
    this.left = 0;
    this.code = 0;
    this.runBytes = 0;
    this.skipping = false;
  }

  private reject(kind: FrameErrorKind, message: string, header?: SerialFrameError['header']): undefined {
    this.stats.discardedBytes += this.runBytes + 1;
    this.report(kind, message, header);
    this.resetRun();
    return undefined;
  }

  private report(kind: FrameErrorKind, message: string, header?: SerialFrameError['header']): void {
    if (this.onError === undefined) return;
    try {
      this.onError(new SerialFrameError(kind, message, this.runStart, header));
    } catch {
      // A throwing logger must not take the reader down with it.
    }
  }

  private endRun(_at: number): Frame | undefined {
    if (this.runBytes === 0) return undefined; // back-to-back delimiters are idle fill
    if (this.skipping) {
      this.stats.discardedBytes += this.runBytes + 1;
      this.resetRun();
      return undefined;
    }
    const s = this.stats;
    if (this.left !== 0) {
      s.cobsErrors++;
      return this.reject(
        'cobs',
        `COBS block of ${this.code - 1} bytes cut short by 0x00 (${this.left} missing)`,
      );
    }
    const buf = this.buf;
    const len = this.len;
    if (len < MIN_FRAME_SIZE) {
      s.shortFrames++;
      return this.reject('short', `${len} decoded bytes, minimum ${MIN_FRAME_SIZE}`);
    }
    const crcAt = len - CRC_SIZE;
    const want = (buf[crcAt] | (buf[crcAt + 1] << 8) | (buf[crcAt + 2] << 16) | (buf[crcAt + 3] << 24)) >>> 0;
    const got = crc32c(buf, 0, crcAt);
    if (want !== got) {
      s.crcErrors++;
      return this.reject(
        'crc',
        `CRC-32C ${hex32(want)} in frame, ${hex32(got)} computed over ${crcAt} bytes`,
      );
    }
    const kind = TYPE_KIND[buf[0]];
    const seq = (buf[1] << 8) | buf[2];
    if (kind === undefined) {
      s.unknownTypes++;
      const code = buf[0];
      return this.reject('unknown-type', `type byte 0x${code.toString(16).padStart(2, '0')}`, {
        typeCode: code,
        seq,
      });
    }
    const r = decodeBody(kind, seq, buf.subarray(HEADER_SIZE, crcAt));
    if (!r.ok) {
      s.bodyErrors++;
      const header =
        r.bootId === undefined ? { typeCode: buf[0], seq } : { typeCode: buf[0], seq, bootId: r.bootId };
      return this.reject('body', `${kind} seq ${seq}: ${r.error}`, header);
    }
    s.framesOk++;
    this.resetRun();
    return r.frame;
  }
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
