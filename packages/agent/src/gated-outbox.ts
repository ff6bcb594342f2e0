/**
 * The durable queue as the client's outbox, with one rule added: read() hands the session only
 * entries whose put() has resolved. The queue's own read() returns records as soon as they are
 * written to the page cache, before their fsync; sending those early is harmless for the data
 * (the device is not acked until put() resolves) but lets a PUBACK arrive before the put()
 * resolved, which the client does not expect. Puts resolve in seq order, so one number gates.
 */
import type {
  DurableQueue,
  DurableQueueStats,
  Outbox,
  OutboxEntry,
  OutboxMessage,
  OutboxStats,
} from '@mqtt-edge/client';

export class GatedOutbox implements Outbox {
  private resolvedUpTo: number;
  /** Called after every resolved put (the agent then asks the client to send). */
  onStored: (() => void) | undefined;

  constructor(readonly queue: DurableQueue) {
    // Everything recovered from disk at open is durable already.
    this.resolvedUpTo = queue.stats().nextSeq - 1;
  }

  put(message: OutboxMessage): Promise<number> {
    return this.queue.put(message).then((seq) => {
      if (seq > this.resolvedUpTo) this.resolvedUpTo = seq;
      this.onStored?.();
      return seq;
    });
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    if (afterSeq >= this.resolvedUpTo) return [];
    const out = this.queue.read(afterSeq, max);
    let n = out.length;
    while (n > 0 && out[n - 1].seq > this.resolvedUpTo) n--;
    if (n < out.length) out.length = n;
    return out;
  }

  ack(seq: number): void {
    this.queue.ack(seq);
  }

  stats(now?: number): OutboxStats {
    return this.queue.stats(now);
  }

  fullStats(now?: number): DurableQueueStats {
    return this.queue.stats(now);
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
