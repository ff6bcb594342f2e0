/**
 * The session's tables, in what ES5.1 gives (the core runs on Duktape, which has no Map or Set):
 * values by packet id, and values by string, both iterable in insertion order as a Map is (the
 * session resends in-flight publishes and pending requests in their original order).
 */

// The table of an IdMap is keyed by a random multiplicative hash: a server chooses the ids of
// its QoS 2 publishes, and with plain `id & mask` it could pile them into one probe run.
const SALT = (Math.random() * 0x10000) | 0;
/** Odd, below 2^32: (id ^ SALT) * MULT < 2^48 is exact in a double, `>>>` takes it mod 2^32. */
const MULT = ((Math.random() * 0x80000000) | 0) * 2 + 1;
const MIN_SLOTS = 8;

/**
 * Values by packet id (1..65535): open addressing with linear probing in typed arrays, at most
 * half full, deletion by backward shift (no tombstones). get/has/set/delete are O(1) and
 * allocate nothing; ids() lists the keys in insertion order (a stamp per slot, sorted then:
 * only reconnects and cancellations ask).
 */
export class IdMap<V> {
  size = 0;
  private keys: Int32Array;
  private vals: Array<V | undefined>;
  private stamps: Float64Array;
  /** 32 - log2(slots): the hash's top bits pick the slot. */
  private shift: number;
  private stamp = 0;

  constructor() {
    this.keys = new Int32Array(MIN_SLOTS);
    this.vals = new Array(MIN_SLOTS);
    this.stamps = new Float64Array(MIN_SLOTS);
    this.shift = 32 - 3;
  }

  /** The slot holding `id`, or -1 - (the free slot where it would go). */
  private slotOf(id: number): number {
    const keys = this.keys;
    const mask = keys.length - 1;
    for (let i = ((id ^ SALT) * MULT) >>> this.shift; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === id) return i;
      if (k === 0) return -1 - i;
    }
  }

  has(id: number): boolean {
    return this.slotOf(id) >= 0;
  }

  get(id: number): V | undefined {
    const i = this.slotOf(id);
    return i < 0 ? undefined : this.vals[i];
  }

  /** Sets the value; a new id goes last in insertion order, a known one keeps its place. */
  set(id: number, value: V): void {
    let i = this.slotOf(id);
    if (i < 0) {
      if ((this.size + 1) * 2 > this.keys.length) {
        this.resize(this.keys.length * 2);
        i = this.slotOf(id);
      }
      i = -1 - i;
      this.keys[i] = id;
      this.stamps[i] = ++this.stamp;
      this.size++;
    }
    this.vals[i] = value;
  }

  delete(id: number): boolean {
    let i = this.slotOf(id);
    if (i < 0) return false;
    const { keys, vals, stamps } = this;
    const mask = keys.length - 1;
    // Move back each later entry of the run that may sit at i (its home is not between i and it).
    for (let j = (i + 1) & mask; keys[j] !== 0; j = (j + 1) & mask) {
      const home = ((keys[j] ^ SALT) * MULT) >>> this.shift;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        keys[i] = keys[j];
        vals[i] = vals[j];
        stamps[i] = stamps[j];
        i = j;
      }
    }
    keys[i] = 0;
    vals[i] = undefined;
    this.size--;
    // A burst's table is given back once it is mostly empty (a small device keeps little).
    if (keys.length > MIN_SLOTS && this.size * 8 < keys.length)
      this.resize(Math.max(MIN_SLOTS, keys.length / 4));
    return true;
  }

  clear(): void {
    this.size = 0;
    this.keys = new Int32Array(MIN_SLOTS);
    this.vals = new Array(MIN_SLOTS);
    this.stamps = new Float64Array(MIN_SLOTS);
    this.shift = 32 - 3;
  }

  /** The id of a value `match` accepts, in no particular order; undefined when none does. */
  find(match: (value: V) => boolean): number | undefined {
    const { keys, vals } = this;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0 && match(vals[i] as V)) return keys[i];
    return undefined;
  }

  /** The ids in insertion order (a new array). */
  ids(): number[] {
    const slots: number[] = [];
    const { keys, stamps } = this;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) slots.push(i);
    slots.sort((a, b) => stamps[a] - stamps[b]);
    for (let n = 0; n < slots.length; n++) slots[n] = keys[slots[n]];
    return slots;
  }

  private resize(slots: number): void {
    const { keys, vals, stamps } = this;
    this.keys = new Int32Array(slots);
    this.vals = new Array(slots);
    this.stamps = new Float64Array(slots);
    let shift = 32;
    for (let n = slots; n > 1; n /= 2) shift--;
    this.shift = shift;
    const mask = slots - 1;
    for (let j = 0; j < keys.length; j++) {
      const id = keys[j];
      if (id === 0) continue;
      let i = ((id ^ SALT) * MULT) >>> shift;
      while (this.keys[i] !== 0) i = (i + 1) & mask;
      this.keys[i] = id;
      this.vals[i] = vals[j];
      this.stamps[i] = stamps[j];
    }
  }
}

/**
 * Values by string in insertion order: a dictionary without a prototype maps a key to its
 * place in two lists (deleted places are holes, compacted once they outnumber the live ones).
 * '__proto__' has a field of its own: where it is a property of every object (Espruino)
 * storing it would set the dictionary's prototype.
 */
export class StringMap<V> {
  size = 0;
  private at: Record<string, number | undefined> = Object.create(null);
  private protoAt = -1;
  private keys: Array<string | undefined> = [];
  private vals: Array<V | undefined> = [];

  private place(key: string): number {
    const i = key === '__proto__' ? this.protoAt : this.at[key];
    return i === undefined ? -1 : i;
  }

  get(key: string): V | undefined {
    const i = this.place(key);
    return i < 0 ? undefined : this.vals[i];
  }

  set(key: string, value: V): void {
    let i = this.place(key);
    if (i < 0) {
      i = this.keys.length;
      this.keys.push(key);
      this.vals.push(value);
      if (key === '__proto__') this.protoAt = i;
      else this.at[key] = i;
      this.size++;
    } else this.vals[i] = value;
  }

  delete(key: string): boolean {
    const i = this.place(key);
    if (i < 0) return false;
    this.keys[i] = undefined;
    this.vals[i] = undefined;
    if (key === '__proto__') this.protoAt = -1;
    else delete this.at[key];
    this.size--;
    if (this.keys.length > 16 && this.size * 2 < this.keys.length) this.compact();
    return true;
  }

  /** The values in insertion order (a new array). */
  values(): V[] {
    const out: V[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i] !== undefined) out.push(this.vals[i] as V);
    return out;
  }

  private compact(): void {
    const { keys, vals } = this;
    this.keys = [];
    this.vals = [];
    this.at = Object.create(null);
    this.protoAt = -1;
    this.size = 0;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      if (k !== undefined) this.set(k, vals[i] as V);
    }
  }
}
