import type { Outbox, OutboxEntry, OutboxMessage, OutboxStats } from '@mqtt-edge/client';

/**
 * The durable queue seen through the Outbox interface, counting what the bridge needs: messages
 * put and messages the remote acknowledged (the client session acks the outbox on PUBACK /
 * PUBCOMP), and puts still being written.
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
  constructor(readonly inner: Outbox) {}

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
    return this.held ? [] : this.inner.read(afterSeq, max);
  }

  ack(seq: number): void {
    this.acks++;
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
