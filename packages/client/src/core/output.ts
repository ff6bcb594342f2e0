const EMPTY = new Uint8Array(0);

/**
 * Bytes waiting for the transport. Encoded packets are copied in back to back so a burst of
 * publishes leaves as one write. take() hands the filled buffer itself to the caller (no copy)
 * and the next push starts a new one, sized like the last: an idle client holds no buffer.
 */
export class OutputBuffer {
  private buf: Uint8Array = EMPTY;
  private pos = 0;
  private hint = 256;

  get length(): number {
    return this.pos;
  }

  push(bytes: Uint8Array): void {
    const need = this.pos + bytes.length;
    if (need > this.buf.length) {
      let size = Math.max(this.hint, this.buf.length * 2);
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      if (this.pos > 0) next.set(this.buf.subarray(0, this.pos));
      this.buf = next;
    }
    this.buf.set(bytes, this.pos);
    this.pos = need;
  }

  take(): Uint8Array | null {
    if (this.pos === 0) return null;
    const out = this.buf.subarray(0, this.pos);
    // Next burst: about as big as this one, within 256 B .. 1 MiB.
    this.hint = Math.min(1 << 20, Math.max(256, this.pos));
    this.buf = EMPTY;
    this.pos = 0;
    return out;
  }

  clear(): void {
    this.buf = EMPTY;
    this.pos = 0;
  }
}
