/**
 * Which 16-bit sequence numbers of one boot were already stored. One bit per seq (8 KiB); seqs
 * compare in serial-number arithmetic (RFC 1982), so a bit is trusted only while its seq lies
 * within the 32,768 below the highest seen: as the highest advances, the bits half the space
 * ahead of it are cleared, and a seq that comes round again after a wrap is new.
 *
 * Why a window and not "everything <= highest": a device retransmits out of order (its ring is
 * oldest-first, new readings go out as they come), so a seq below the highest may be new.
 */
const SPACE = 0x10000;
const HALF = 0x8000;

export class SeqWindow {
  private readonly bits = new Uint32Array(SPACE / 32);
  private highest = -1;

  has(seq: number): boolean {
    if (this.highest < 0) return false;
    const d = (this.highest - seq) & 0xffff;
    if (d >= HALF) return false; // ahead of the highest: new
    return (this.bits[seq >>> 5] & (1 << (seq & 31))) !== 0;
  }

  add(seq: number): void {
    seq &= 0xffff;
    if (this.highest < 0) {
      this.highest = seq;
    } else {
      const ahead = (seq - this.highest) & 0xffff;
      if (ahead !== 0 && ahead < HALF) {
        // Clear (highest + HALF, seq + HALF]: those seqs are now "behind by more than half".
        for (let i = 1; i <= ahead; i++) {
          const s = (this.highest + HALF + i) & 0xffff;
          this.bits[s >>> 5] &= ~(1 << (s & 31));
        }
        this.highest = seq;
      }
    }
    this.bits[seq >>> 5] |= 1 << (seq & 31);
  }

  clear(): void {
    this.bits.fill(0);
    this.highest = -1;
  }
}
