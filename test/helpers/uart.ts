/**
 * What a UART receiver clocked at the wrong rate reads: bytes sent as 8N1 at `txBaud` (start
 * bit 0, eight data bits LSB first, stop bit 1, back to back), received at `rxBaud`. The
 * receiver waits for a falling edge (16x oversampling), samples each bit in its middle, and on a
 * low stop bit reports the framing error as a NUL byte, as Linux does by default (IGNPAR and
 * PARMRK unset). This is the byte stream an agent sees from a device at another baud rate.
 */
export function misclock(bytes: Uint8Array, txBaud: number, rxBaud: number): Uint8Array {
  // Two idle bits first so the first start bit is an edge, a few after so the last byte ends.
  const bits: number[] = [1, 1];
  for (const b of bytes) {
    bits.push(0);
    for (let k = 0; k < 8; k++) bits.push((b >> k) & 1);
    bits.push(1);
  }
  bits.push(1, 1, 1, 1);
  const level = (t: number) => bits[Math.floor(t * txBaud)] ?? 1;
  const end = bits.length / txBaud;
  const bit = 1 / rxBaud;
  const step = bit / 16;
  const out: number[] = [];
  let prev = 1;
  for (let t = 0; t < end; ) {
    const l = level(t);
    if (prev === 1 && l === 0 && level(t + bit / 2) === 0) {
      let v = 0;
      for (let k = 0; k < 8; k++) v |= level(t + bit * (1.5 + k)) << k;
      const stop = level(t + bit * 9.5);
      out.push(stop === 1 ? v : 0);
      t += bit * 9.5;
      prev = stop;
      continue;
    }
    prev = l;
    t += step;
  }
  return Uint8Array.from(out);
}
