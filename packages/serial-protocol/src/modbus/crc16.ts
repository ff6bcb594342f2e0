/**
 * CRC-16/MODBUS: polynomial 0x8005 reflected (0xA001), initial 0xFFFF, no final XOR; check value
 * 0x4B37. On the wire the low byte goes first. A 256-entry table: one lookup per byte.
 */
const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** The CRC of `bytes[start..end)`. */
export function crc16modbus(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ TABLE[(crc ^ bytes[i]) & 0xff];
  return crc;
}

/** Whether the two bytes after `bytes[start..end)` are its CRC, low byte first. */
export function crc16Matches(bytes: Uint8Array, start: number, end: number): boolean {
  const crc = crc16modbus(bytes, start, end);
  return bytes[end] === (crc & 0xff) && bytes[end + 1] === crc >>> 8;
}
