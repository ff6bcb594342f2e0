/**
 * The codec's own UTF-8, because the targets (QuickJS, Moddable XS) may have no TextEncoder,
 * and because MQTT forbids more than TextDecoder would catch: U+0000, surrogate code points,
 * overlong forms. Reject-on-error is the spec's rule for a receiver [MQTT-1.5.4-1..3].
 */

/** Bytes `str` takes in UTF-8, or -1 when it holds a lone surrogate (not encodable). */
export function utf8ByteLength(str: string): number {
  let bytes = 0;
  const n = str.length;
  for (let i = 0; i < n; i++) {
    const c = str.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < n ? str.charCodeAt(i + 1) : 0;
      if (d < 0xdc00 || d > 0xdfff) return -1;
      i++;
      bytes += 4;
    } else if (c >= 0xdc00 && c <= 0xdfff) return -1;
    else bytes += 3;
  }
  return bytes;
}

/**
 * Writes `str` at `pos`; the caller sized `buf` with utf8ByteLength and checked it was not -1.
 * Returns the position after the last byte written.
 */
export function utf8Write(buf: Uint8Array, pos: number, str: string): number {
  const n = str.length;
  for (let i = 0; i < n; i++) {
    let c = str.charCodeAt(i);
    if (c < 0x80) {
      buf[pos++] = c;
    } else if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6);
      buf[pos++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdbff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (str.charCodeAt(++i) - 0xdc00);
      buf[pos++] = 0xf0 | (c >> 18);
      buf[pos++] = 0x80 | ((c >> 12) & 0x3f);
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      buf[pos++] = 0x80 | (c & 0x3f);
    } else {
      buf[pos++] = 0xe0 | (c >> 12);
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      buf[pos++] = 0x80 | (c & 0x3f);
    }
  }
  return pos;
}

/** Encodes a whole string into a fresh array; throws RangeError on a lone surrogate. */
export function utf8Encode(str: string): Uint8Array {
  const len = utf8ByteLength(str);
  if (len < 0) throw new RangeError('lone surrogate');
  const out = new Uint8Array(len);
  utf8Write(out, 0, str);
  return out;
}

/**
 * Decodes `buf[start, end)`. Returns the string, or null when the bytes are not well-formed
 * UTF-8 or contain U+0000 (callers turn null into a typed error with their offset).
 *
 * The bytes become a Latin-1 string natively (fromCharCode over runs of at most 4096, a size
 * every engine's argument limit takes), which is the answer for ASCII. Otherwise escape() turns
 * each byte past ASCII into `%XX` and decodeURIComponent checks the UTF-8 as strictly as MQTT
 * asks [MQTT-1.5.4-1] (no overlong forms, no surrogates, nothing above U+10FFFF: ECMA-262
 * Decode) while it builds the string natively: far less code than a decoder of our own.
 */
export function utf8Read(buf: Uint8Array, start: number, end: number): string | null {
  let ascii = true;
  for (let i = start; i < end; i++) {
    const c = buf[i];
    if (c === 0) return null;
    if (c > 0x7f) ascii = false;
  }
  let s = '';
  for (let i = start; i < end; i += 4096)
    s += String.fromCharCode.apply(null, buf.subarray(i, Math.min(end, i + 4096)) as unknown as number[]);
  if (ascii) return s;
  try {
    return decodeURIComponent(typeof escape === 'function' ? escape(s) : percent(buf, start, end));
  } catch {
    return null;
  }
}

/**
 * What escape() gives decodeURIComponent, where an engine leaves it out (it is in ES5.1's
 * Annex B, which an engine need not implement): '%XX' for '%' and every byte past ASCII.
 */
function percent(buf: Uint8Array, start: number, end: number): string {
  let t = '';
  for (let i = start; i < end; i++) {
    const c = buf[i];
    t += c > 0x7f || c === 0x25 ? `%${c.toString(16)}` : String.fromCharCode(c);
  }
  return t;
}
