/**
 * A Bloom filter over path hashes: the hash of a topic's levels from the root,
 * folded level by level with hashStep (Walk.full for a whole topic, Node.phash for a trie node).
 * SubscriptionIndex marks every exact filter and every trie node in it, and asks it before a
 * lookup that would otherwise read a slot of a big table: at a million subscriptions those
 * slots come from DRAM (a cache and TLB miss each), while the bits, a bit or two per entry, stay
 * in cache. A clear bit skips the lookup; a set bit costs the lookup it would have cost anyway.
 *
 * Removal leaves a stale bit (a wasted lookup, never a lost match). The owner rebuilds the bits
 * from its live entries once `due()` says so, so that marks since the last rebuild never
 * outgrow the bits.
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

  /**
   * Whether the next mark should be a rebuild instead: at 4 bits per key marked (a wrong yes
   * for about 15% of absent keys). A rebuild leaves 5.7 bits or more per key, so the live keys
   * can grow by 40% or more before the next one: rebuilds stay amortised O(1) per mark.
   */
  due(): boolean {
    return this.marks >= this.bits.length << 3;
  }

  /**
   * Clears the bits, sized for `live` keys, about 8 bits each (the power of two of words
   * nearest to live / 4: 5.7 to 11.3 bits); mark them all again after. Not more: the bits are
   * asked once or more per topic, and at a million keys 16 bits each would be 2 MB, past a
   * core's L2 here, so every question would cost an L3 access. A wrong yes costs one table
   * probe; a bigger filter that misses L2 costs that on every question.
   */
  reset(live: number): void {
    this.bits = new Int32Array(1 << Math.round(Math.log2(Math.max(1, live / 4))));
    this.marks = 0;
  }
}

/**
 * Two bits per key, both in the key's word (one memory access per question): the word from the
 * low bits of the hash, the two bit positions from its high bits (the hashes are products, so
 * their high bits are the best mixed). At 6-11 bits per key this answers a wrong yes for about
 * 3-9% of absent keys, against 9-15% with one bit.
 */
function mask(h: number): number {
  return (1 << (h >>> 27)) | (1 << ((h >>> 22) & 31));
}
