/**
 * Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999), plain COBS (not COBS/R): the
 * encoding of n bytes holds no 0x00 and is at most n + ceil(n / 254) bytes long (plus 1 when
 * n is 0), so a 0x00 can delimit frames and a receiver resynchronises at the next one.
 */

/** Worst-case encoded length of `n` input bytes, without the 0x00 delimiter. */
export function cobsMaxEncodedLength(n: number): number {
  return n + Math.floor(n / 254) + 1;
}

/**
 * Encodes `src[start, end)` into `dst` at `dstOffset`; returns the offset just past the last byte
 * written. `dst` must have `cobsMaxEncodedLength(end - start)` bytes free. Writes no delimiter.
 */
export function cobsEncodeInto(
  src: Uint8Array,
  dst: Uint8Array,
  dstOffset = 0,
  start = 0,
  end = src.length,
): number {
  let codeAt = dstOffset;
  let out = dstOffset + 1;
  let code = 1;
  // Set when the last input byte completed a 254-byte block: that block carries no implied
  // zero, so the empty block opened after it must not be written (the n + ceil(n/254) bound).
  let fullBlockEnded = false;
  for (let i = start; i < end; i++) {
    const b = src[i];
    fullBlockEnded = false;
    if (b === 0) {
      dst[codeAt] = code;
      codeAt = out++;
      code = 1;
      continue;
    }
    dst[out++] = b;
    if (++code === 0xff) {
      dst[codeAt] = code;
      codeAt = out++;
      code = 1;
      fullBlockEnded = true;
    }
  }
  if (fullBlockEnded) return codeAt;
  dst[codeAt] = code;
  return out;
}

export function cobsEncode(src: Uint8Array): Uint8Array {
  const dst = new Uint8Array(cobsMaxEncodedLength(src.length));
  const n = cobsEncodeInto(src, dst);
  return n === dst.length ? dst : dst.slice(0, n);
}

/** Why a COBS run is not valid. */
export type CobsFault = 'zero-in-run' | 'truncated-block' | 'too-long';

/**
 * Decodes one COBS run (no delimiter inside) into `dst`; returns the decoded length or a fault.
 * `dst` may be `src` itself (decoding never writes ahead of reading).
 */
export function cobsDecodeInto(
  src: Uint8Array,
  dst: Uint8Array,
  start = 0,
  end = src.length,
): number | CobsFault {
  let out = 0;
  let i = start;
  while (i < end) {
    const code = src[i++];
    if (code === 0) return 'zero-in-run';
    const blockEnd = i + code - 1;
    if (blockEnd > end) return 'truncated-block';
    if (out + code - 1 > dst.length) return 'too-long';
    for (; i < blockEnd; i++) {
      const b = src[i];
      if (b === 0) return 'zero-in-run';
      dst[out++] = b;
    }
    if (code !== 0xff && i < end) {
      if (out >= dst.length) return 'too-long';
      dst[out++] = 0;
    }
  }
  return out;
}

export function cobsDecode(src: Uint8Array): Uint8Array | CobsFault {
  const dst = new Uint8Array(src.length);
  const n = cobsDecodeInto(src, dst);
  return typeof n === 'number' ? dst.subarray(0, n) : n;
}

/** Exact encoded length of `src[start, end)` (without delimiter), for sizing an output once. */
export function cobsEncodedLength(src: Uint8Array, start = 0, end = src.length): number {
  let n = 1;
  let code = 1;
  let fullBlockEnded = false;
  for (let i = start; i < end; i++) {
    fullBlockEnded = false;
    n++;
    if (src[i] === 0) {
      code = 1;
      continue;
    }
    if (++code === 0xff) {
      n++;
      code = 1;
      fullBlockEnded = true;
    }
  }
  return fullBlockEnded ? n - 1 : n;
}
