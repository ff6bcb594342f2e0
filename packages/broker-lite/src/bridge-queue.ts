import type { Outbox, OutboxEntry, OutboxMessage, OutboxStats } from '@mqtt-edge/client';

/**
 * The durable queue seen through the Outbox interface, counting what the bridge needs: messages
 * put and messages the remote acknowledged (the client session acks the outbox on PUBACK /
 * PUBCOMP).
 */
export class CountingOutbox implements Outbox {
  puts = 0;
  acks = 0;
  constructor(readonly inner: Outbox) {}

  put(message: OutboxMessage): Promise<number> {
    return this.inner.put(message).then((seq) => {
      this.puts++;
      return seq;
    });
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    return this.inner.read(afterSeq, max);
  }

  ack(seq: number): void {
    this.acks++;
    this.inner.ack(seq);
  }

  stats(now?: number): OutboxStats {
    return this.inner.stats(now);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
