/**
 * Bytes waiting for the transport. Encoded packets are copied in back to back so a burst of
 * publishes leaves as one write; take() hands the caller its own copy.
 */
export class OutputBuffer {
  private buf = new Uint8Array(4096);
  private pos = 0;

  get length(): number {
    return this.pos;
  }

  push(bytes: Uint8Array): void {
    const need = this.pos + bytes.length;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.pos));
      this.buf = next;
    }
    this.buf.set(bytes, this.pos);
    this.pos = need;
  }

  take(): Uint8Array | null {
    if (this.pos === 0) return null;
    const out = this.buf.slice(0, this.pos);
    this.pos = 0;
    // A burst can grow the buffer to megabytes; do not keep that forever for an idle client.
    if (this.buf.length > 1 << 20) this.buf = new Uint8Array(4096);
    return out;
  }

  clear(): void {
    this.pos = 0;
  }
}
