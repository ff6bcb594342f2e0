/** One DATA frame waiting for its ACK. */
export interface Pending {
  seq: number;
  wire: Uint8Array;
  sentAt: number;
  sends: number;
  /** A HELD (issue 18.4) said not to send it again before this time; 0: no hold. */
  heldUntil: number;
}

/** When an entry is next due for sending: its retransmission timeout, or its hold if later. */
export function dueAt(p: Pending, retransmitMs: number): number {
  return Math.max(p.sentAt + retransmitMs, p.heldUntil);
}

/**
 * The unacknowledged-DATA ring of a small MCU: fixed capacity, no allocation per entry beyond
 * the frame, oldest overwritten when full (the firmware counts it: that reading is lost, and
 * the agent sees the gap in seq).
 */
export class PendingRing {
  private readonly slots: Array<Pending | undefined>;
  private head = 0; // oldest
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 4096)
      throw new RangeError('ring capacity 1..4096');
    this.slots = new Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Adds an entry; returns the entry it overwrote, if the ring was full. */
  push(p: Pending): Pending | undefined {
    let lost: Pending | undefined;
    if (this.count === this.capacity) {
      lost = this.slots[this.head];
      this.slots[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
    }
    this.slots[(this.head + this.count) % this.capacity] = p;
    this.count++;
    return lost;
  }

  /** Removes the entry with this seq; false if there is none (a duplicate or stale ACK). */
  ack(seq: number): boolean {
    const i = this.indexOf(seq);
    if (i < 0) return false;
    // Close the gap by shifting the older entries up one slot: keeps oldest-first order.
    for (let j = i; j > 0; j--) {
      this.slots[(this.head + j) % this.capacity] = this.slots[(this.head + j - 1) % this.capacity];
    }
    this.slots[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return true;
  }

  /** The entry with this seq, if the ring holds it. */
  find(seq: number): Pending | undefined {
    const i = this.indexOf(seq);
    return i < 0 ? undefined : this.slots[(this.head + i) % this.capacity];
  }

  /** Where the entry with this seq is, counted from the oldest; -1 if the ring does not hold it. */
  private indexOf(seq: number): number {
    for (let i = 0; i < this.count; i++)
      if (this.slots[(this.head + i) % this.capacity]?.seq === seq) return i;
    return -1;
  }

  /** Oldest first. */
  *entries(): IterableIterator<Pending> {
    for (let i = 0; i < this.count; i++) yield this.slots[(this.head + i) % this.capacity]!;
  }

  clear(): void {
    this.slots.fill(undefined);
    this.head = 0;
    this.count = 0;
  }
}
