/**
 * The exact-filter table: string -> value, open addressing with linear probing on an Int32Array
 * of [hash, entry + 1] pairs, the keys and values side by side in one array. The caller gives
 * the hash (the index computes the topic's anyway), a probe compares 32-bit hashes in one
 * cache line and a hit compares the string once, with its value on the key's line.
 */
export class ExactTable<T> {
  // Fields assigned in the constructor: see the note on Many in subscription-index.ts.
  declare slots: Int32Array;
  /** Key of entry e at 2e, its value at 2e + 1; freed entries are undefined. */
  declare kv: unknown[];
  declare free: number[];
  declare size: number;
  constructor() {
    this.slots = new Int32Array(16);
    this.kv = [];
    this.free = [];
    this.size = 0;
  }

  /** The slot holding `key`, or ~(the empty slot where it would go). */
  private find(key: string, h: number): number {
    const s = this.slots;
    const mask = (s.length >> 1) - 1;
    for (let i = (h ^ (h >>> 16)) & mask; ; i = (i + 1) & mask) {
      const e = s[2 * i + 1];
      if (e === 0) return ~i;
      if (s[2 * i] === h && this.kv[2 * e - 2] === key) return i;
    }
  }

  get(key: string, h: number): T | undefined {
    const i = this.find(key, h);
    return i < 0 ? undefined : (this.kv[2 * this.slots[2 * i + 1] - 1] as T);
  }

  set(key: string, h: number, value: T): void {
    let i = this.find(key, h);
    if (i >= 0) {
      this.kv[2 * this.slots[2 * i + 1] - 1] = value;
      return;
    }
    i = ~i;
    const e = this.free.length > 0 ? (this.free.pop() as number) : this.kv.length >> 1;
    this.kv[2 * e] = key;
    this.kv[2 * e + 1] = value;
    this.slots[2 * i] = h;
    this.slots[2 * i + 1] = e + 1;
    // At most half full: a miss ends on an empty slot after one or two probes.
    if (++this.size * 2 > this.slots.length >> 1) this.resize(this.slots.length);
  }

  delete(key: string, h: number): boolean {
    let i = this.find(key, h);
    if (i < 0) return false;
    const s = this.slots;
    const e = s[2 * i + 1] - 1;
    this.kv[2 * e] = this.kv[2 * e + 1] = undefined;
    this.free.push(e);
    // Backward-shift deletion: no tombstones, probe runs stay as short as if never filled.
    const mask = (s.length >> 1) - 1;
    for (let j = (i + 1) & mask; s[2 * j + 1] !== 0; j = (j + 1) & mask) {
      const k = (s[2 * j] ^ (s[2 * j] >>> 16)) & mask;
      if (((j - k) & mask) >= ((j - i) & mask)) {
        s[2 * i] = s[2 * j];
        s[2 * i + 1] = s[2 * j + 1];
        i = j;
      }
    }
    s[2 * i] = s[2 * i + 1] = 0;
    if (--this.size === 0) {
      this.kv = [];
      this.free = [];
    }
    if (this.size * 8 < s.length >> 1 && s.length > 16) this.resize(s.length >> 2);
    return true;
  }

  /** Calls `f` with the hash of each key. */
  hashes(f: (h: number) => void): void {
    const s = this.slots;
    for (let i = 0; i < s.length; i += 2) if (s[i + 1] !== 0) f(s[i]);
  }

  /** Rehashes into `pairs` slots, compacting the entries (so freed ones give memory back). */
  private resize(pairs: number): void {
    const old = this.slots;
    const oldKv = this.kv;
    const s = new Int32Array(pairs * 2);
    const kv: unknown[] = [];
    const mask = pairs - 1;
    for (let i = 0; i < old.length; i += 2) {
      const e = old[i + 1];
      if (e === 0) continue;
      const h = old[i];
      let j = (h ^ (h >>> 16)) & mask;
      while (s[2 * j + 1] !== 0) j = (j + 1) & mask;
      s[2 * j] = h;
      s[2 * j + 1] = (kv.length >> 1) + 1;
      kv.push(oldKv[2 * e - 2], oldKv[2 * e - 1]);
    }
    this.slots = s;
    this.kv = kv;
    this.free = [];
  }
}
