/**
 * The durable queue as the MQTT client's outbox, with a hold: while held, the client reads
 * nothing new from it, so what is in flight can be acknowledged before a reload replaces the
 * client (the queue stays open, and puts go on being stored and ACKed to the devices).
 */
import type { DurableQueue, Outbox, OutboxEntry, OutboxMessage, OutboxStats } from '@mqtt-edge/client';

const NOTHING: OutboxEntry[] = [];

export class HeldOutbox implements Outbox {
  held = false;

  constructor(readonly queue: DurableQueue) {}

  put(message: OutboxMessage): Promise<number> {
    return this.queue.put(message);
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    return this.held ? NOTHING : this.queue.read(afterSeq, max);
  }

  ack(seq: number): void {
    this.queue.ack(seq);
  }

  stats(now?: number): OutboxStats {
    return this.queue.stats(now);
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
