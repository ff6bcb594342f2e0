import type { Outbox, OutboxEntry, OutboxMessage, OutboxStats } from '@mqtt-edge/client';
import type { QoS } from '@mqtt-edge/codec';

/**
 * The durable queue seen through the Outbox interface, counting what the bridge needs: messages
 * put and messages the remote acknowledged (the client session acks the outbox on PUBACK /
 * PUBCOMP), and puts still being written. It also holds reads while the bridge moves to another
 * address, and sends messages above the remote's maximum QoS at that maximum (issue 16).
 */
export class CountingOutbox implements Outbox {
  puts = 0;
  acks = 0;
  /** put() calls not settled yet: the durable queue counts them in stats() before they are readable. */
  writing = 0;
  /** Reads give nothing (the session sends nothing new) while the bridge moves to another address. */
  private held = false;
  /** Called after each acknowledgement while reads are held (the bridge waits for its window to empty). */
  onDrained: (() => void) | null = null;
  /** The highest QoS the remote takes; messages above it are sent at it. */
  maxQos: QoS = 2;
  /**
   * QoS 2 entries handed to the session and not acknowledged yet (at most its send window): a
   * downgrade reaches those in flight too, which the session sends again from these objects.
   */
  private readonly qos2Out = new Map<number, OutboxEntry>();
  /** An ack that is the bridge giving up on a message, not the remote's acknowledgement. */
  private givingUp = -1;
  constructor(readonly inner: Outbox) {}

  /**
   * From now on messages above `max` go out at `max`, those in flight included (the read
   * entries are the queue's own copies, decoded for this read, so changing them is safe).
   */
  downgrade(max: QoS): void {
    this.maxQos = max;
    for (const e of this.qos2Out.values()) e.message.qos = max;
    this.qos2Out.clear();
  }

  /** The oldest message not acknowledged (one read from disk; for the rare check at a close). */
  head(): OutboxEntry | undefined {
    return this.inner.read(0, 1)[0];
  }

  /** Runs `fn`, whose ack of `seq` is the bridge dropping it, not counted as acknowledged. */
  givingUpOn(seq: number, fn: () => boolean): boolean {
    this.givingUp = seq;
    try {
      return fn();
    } finally {
      this.givingUp = -1;
    }
  }

  holdReads(on: boolean): void {
    this.held = on;
    if (!on) this.onDrained = null;
  }

  put(message: OutboxMessage): Promise<number> {
    this.writing++;
    return this.inner.put(message).then(
      (seq) => {
        this.writing--;
        this.puts++;
        return seq;
      },
      (err: unknown) => {
        this.writing--;
        throw err;
      },
    );
  }

  /** Messages on disk (put() resolved) and not yet acknowledged: what a connection could send now. */
  stored(): number {
    return Math.max(0, this.inner.stats().count - this.writing);
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    if (this.held) return [];
    const entries = this.inner.read(afterSeq, max);
    for (let i = 0; i < entries.length; i++) {
      const m = entries[i].message;
      if (m.qos !== 2) continue;
      if (this.maxQos < 2) m.qos = this.maxQos;
      else this.qos2Out.set(entries[i].seq, entries[i]);
    }
    return entries;
  }

  ack(seq: number): void {
    if (seq !== this.givingUp) this.acks++;
    if (this.qos2Out.size > 0) this.qos2Out.delete(seq);
    this.inner.ack(seq);
    if (this.held) this.onDrained?.();
  }

  stats(now?: number): OutboxStats {
    return this.inner.stats(now);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
