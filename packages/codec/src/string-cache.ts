/**
 * Decoded-string cache. Gateways see the same few topics, client ids and property keys over and
 * over; a small direct-mapped table keyed by the bytes turns a repeat into a hash, a compare and
 * no allocation. Only well-formed strings are stored, so a hit needs no UTF-8 check.
 */
import { utf8Read } from './utf8.ts';

const SLOTS = 256;
/** Longer strings are decoded each time: comparing them costs about what decoding does. */
const WIDTH = 64;

// Allocated on first use: 16 KiB of keys, kept flat so a miss allocates only the string.
let keys: Uint8Array | null = null;
const lengths = new Uint8Array(SLOTS);
const values: string[] = [];

/** Whether the last readString saw a '+' or '#' byte (topic filters use it to skip a pass). */
export let sawWildcard = false;
/** How many '/' bytes the last readString saw: a topic's levels less one, counted in its pass. */
export let sawSlashes = 0;

/**
 * utf8Read through the cache: the string, or null when ill-formed or holding U+0000. With
 * `name` set (a topic name), undefined when the bytes hold a wildcard, found in the same pass.
 */
export function readString(
  buf: Uint8Array,
  start: number,
  end: number,
  name?: boolean,
): string | null | undefined {
  const n = end - start;
  let h = n;
  let wild = false;
  let slashes = 0;
  for (let i = start; i < end; i++) {
    const b = buf[i];
    // FNV-1a's multiply by 0x01000193 (2^24 + 0x193) without Math.imul (not in ES5.1): exact
    // in a double before `| 0` wraps it, and V8 compiles it to integer operations.
    const x = h ^ b;
    h = ((x << 24) + x * 0x193) | 0;
    // '#', '+' and '/' are all below '0': one compare for letters and digits
    if (b < 0x30) {
      if (b === 0x2f) slashes++;
      else if (b === 0x23 || b === 0x2b) wild = true;
    }
  }
  sawWildcard = wild;
  sawSlashes = slashes;
  if (wild && name) return undefined;
  // Past WIDTH bytes a string is not cached (the hash above was wasted, one multiply a byte).
  if (n === 0 || n > WIDTH) return utf8Read(buf, start, end);
  const slot = (h ^ (h >>> 15)) & (SLOTS - 1);
  const at = slot * WIDTH;
  if (keys === null) keys = new Uint8Array(SLOTS * WIDTH);
  if (lengths[slot] === n) {
    let i = 0;
    while (i < n && keys[at + i] === buf[start + i]) i++;
    if (i === n) return values[slot];
  }
  const s = utf8Read(buf, start, end);
  if (s === null) return null;
  for (let i = 0; i < n; i++) keys[at + i] = buf[start + i];
  lengths[slot] = n;
  values[slot] = s;
  return s;
}
