import { utf8ByteLength } from '@mqtt-edge/codec';
import {
  type Outbox,
  type OutboxDropPolicy,
  type OutboxEntry,
  OutboxFullError,
  type OutboxMessage,
  type OutboxStats,
} from './outbox.ts';

export interface MemoryOutboxOptions {
  /** Most messages held; default 100,000. */
  maxCount?: number;
  /** Most topic + payload bytes held; default 64 MiB. */
  maxBytes?: number;
  /** What a full store does with a new message; default 'drop-oldest'. */
  policy?: OutboxDropPolicy;
  /** Clock for oldestAgeMs; default Date.now. */
  clock?: () => number;
}

interface Slot extends OutboxEntry {
  seq: number;
  message: OutboxMessage;
  bytes: number;
  at: number;
  /** Acked or dropped: skipped by read(), compacted away from the front. */
  gone: boolean;
}

/**
 * An outbox that can put synchronously: the session uses this to send a message in the same
 * call that accepted it (and so know its packet id at once).
 */
export interface SyncOutbox extends Outbox {
  putSync(message: OutboxMessage): number;
}

export function isSyncOutbox(outbox: Outbox): outbox is SyncOutbox {
  return typeof (outbox as Partial<SyncOutbox>).putSync === 'function';
}

/**
 * put() and close() return promises, which an ES5.1 engine (Duktape) has not: there they throw
 * a TypeError that says so. The session itself calls only putSync, read, ack and stats.
 */
function needPromise(method: string): void {
  if (typeof Promise !== 'function')
    throw new TypeError(`MemoryOutbox.${method}() returns a Promise, which this engine lacks: use putSync()`);
}

/**
 * The default outbox: messages in seq order in an array, acked slots marked and compacted from
 * the front, read() by binary search. Bounded by count and bytes.
 */
export class MemoryOutbox implements SyncOutbox {
  private slots: Slot[] = [];
  private head = 0;
  private live = 0;
  private nextSeq = 1;
  private bytes = 0;
  private droppedOldest = 0;
  private rejectedNew = 0;
  private readonly maxCount: number;
  private readonly maxBytes: number;
  private readonly policy: OutboxDropPolicy;
  private readonly clock: () => number;
  /** Called with the seq of each message a drop-oldest bound removed (the client rejects its promise). */
  onDrop: ((seq: number) => void) | null = null;

  constructor(options: MemoryOutboxOptions = {}) {
    this.maxCount = options.maxCount ?? 100_000;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.policy = options.policy ?? 'drop-oldest';
    this.clock = options.clock ?? Date.now;
  }

  putSync(message: OutboxMessage): number {
    const size = message.payload.length + Math.max(0, utf8ByteLength(message.topic));
    if (size > this.maxBytes || this.maxCount < 1) {
      this.rejectedNew++;
      throw new OutboxFullError(
        `message of ${size} bytes can never fit in an outbox of ${this.maxBytes} bytes`,
      );
    }
    while (this.live >= this.maxCount || this.bytes + size > this.maxBytes) {
      if (this.policy === 'reject-new') {
        this.rejectedNew++;
        throw new OutboxFullError(
          `outbox full (${this.live}/${this.maxCount} messages, ${this.bytes}/${this.maxBytes} bytes)`,
        );
      }
      this.dropOldest();
    }
    const slot: Slot = { seq: this.nextSeq++, message, bytes: size, at: this.clock(), gone: false };
    this.slots.push(slot);
    this.live++;
    this.bytes += size;
    return slot.seq;
  }

  /** The Outbox interface's asynchronous put (the session uses putSync). */
  put(message: OutboxMessage): Promise<number> {
    needPromise('put');
    try {
      return Promise.resolve(this.putSync(message)); // es5-check: feature-detected (needPromise)
    } catch (err) {
      return Promise.reject(err); // es5-check: feature-detected (needPromise)
    }
  }

  /** Index of the first slot with seq > afterSeq (slots are in seq order). */
  private after(afterSeq: number): number {
    const slots = this.slots;
    let lo = this.head;
    let hi = slots.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (slots[mid].seq <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    const out: OutboxEntry[] = [];
    const slots = this.slots;
    for (let i = this.after(afterSeq); i < slots.length && out.length < max; i++) {
      const s = slots[i];
      // A slot is an OutboxEntry (seq, message) with bookkeeping: handed out as it is, which
      // spares an object per message read.
      if (!s.gone) out.push(s);
    }
    return out;
  }

  ack(seq: number): void {
    // Acks mostly come for the oldest entries: check the head before searching.
    const slots = this.slots;
    const i = this.head < slots.length && slots[this.head].seq === seq ? this.head : this.after(seq - 1);
    const slot = slots[i];
    if (slot === undefined || slot.seq !== seq || slot.gone) return;
    this.remove(slot);
  }

  stats(now?: number): OutboxStats {
    const first = this.firstLive();
    return {
      count: this.live,
      bytes: this.bytes,
      oldestAgeMs: first === undefined ? 0 : Math.max(0, (now ?? this.clock()) - first.at),
      droppedOldest: this.droppedOldest,
      rejectedNew: this.rejectedNew,
    };
  }

  close(): Promise<void> {
    needPromise('close');
    return Promise.resolve(); // es5-check: feature-detected (needPromise)
  }

  private firstLive(): Slot | undefined {
    for (let i = this.head; i < this.slots.length; i++) if (!this.slots[i].gone) return this.slots[i];
    return undefined;
  }

  private dropOldest(): void {
    const first = this.firstLive();
    if (first === undefined) return;
    this.remove(first);
    this.droppedOldest++;
    this.onDrop?.(first.seq);
  }

  private remove(slot: Slot): void {
    slot.gone = true;
    this.live--;
    this.bytes -= slot.bytes;
    const slots = this.slots;
    while (this.head < slots.length && slots[this.head].gone) this.head++;
    if (this.head === slots.length) {
      this.slots = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > slots.length) {
      this.slots = slots.slice(this.head);
      this.head = 0;
    }
  }
}
