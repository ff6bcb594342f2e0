/**
 * Hostile packets built byte by byte, at sizes the encoder would take long to make (or refuses):
 * shared by the codec's and broker-lite's issue 12 tests.
 */

/** A variable byte integer. */
export function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** A fixed header for a packet of `rem` remaining bytes. */
export function fixedHeader(first: number, rem: number): number[] {
  return [first, ...varint(rem)];
}

/** An MQTT 5 CONNECT whose properties are `pairs` empty user properties (5 bytes each). */
export function connectWithUserProperties(count: number): Uint8Array {
  const pairs = Math.floor(count);
  const propLen = pairs * 5;
  const pl = varint(propLen);
  const rem = 10 + pl.length + propLen + 3; // variable header, properties, client id 'c'
  const head = fixedHeader(0x10, rem);
  const out = new Uint8Array(head.length + rem);
  out.set(head, 0);
  let p = head.length;
  out.set([0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 2, 0, 60], p);
  p += 10;
  out.set(pl, p);
  p += pl.length;
  for (let i = 0; i < pairs; i++) {
    out[p] = 0x26; // the four length bytes stay 0
    p += 5;
  }
  out.set([0, 1, 0x63], p);
  return out;
}
