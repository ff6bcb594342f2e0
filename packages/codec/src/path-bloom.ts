/**
 * A Bloom filter over path hashes: the hash of a topic's levels from the root,
 * folded level by level with hashStep (Walk.full for a whole topic, Node.phash for a trie node).
 * SubscriptionIndex marks every exact filter and every trie node in it, and asks it before a
 * lookup that would otherwise read a slot of a big table: at a million subscriptions those
 * slots come from DRAM (a cache and TLB miss each), while the bits, a bit or two per entry, stay
 * in cache. A clear bit skips the lookup; a set bit costs the lookup it would have cost anyway.
 *
 * Removal leaves a stale bit (a wasted lookup, never a lost match). The owner rebuilds the bits
 * from its live entries once `due()` says so: after four marks per 32-bit word, so the filter
 * stays above 8 bits per key marked since the last rebuild.
 */
export class PathBloom {
  // Fields assigned in the constructor: see the note on Many in subscription-index.ts.
  declare bits: Int32Array;
  declare private marks: number;
  constructor() {
    this.bits = new Int32Array(1);
    this.marks = 0;
  }

  has(h: number): boolean {
    const m = mask(h);
    return (this.bits[h & (this.bits.length - 1)] & m) === m;
  }

  mark(h: number): void {
    this.marks++;
    this.bits[h & (this.bits.length - 1)] |= mask(h);
  }

  /** Whether the next mark should be a rebuild instead. */
  due(): boolean {
    return this.marks >= this.bits.length << 2;
  }

  /** Clears the bits, sized for `live` keys (8 to 16 bits each); mark them all again after. */
  reset(live: number): void {
    this.bits = new Int32Array(1 << (32 - Math.clz32(live >> 2)));
    this.marks = 0;
  }
}

/**
 * Two bits per key, both in the key's word (one memory access per question): the word from the
 * low bits of the hash, the two bit positions from its high bits (the hashes are products, so
 * their high bits are the best mixed). At 8-16 bits per key this answers a wrong yes for about
 * 2-4% of absent keys, against 6-12% with one bit.
 */
function mask(h: number): number {
  return (1 << (h >>> 27)) | (1 << ((h >>> 22) & 31));
}
