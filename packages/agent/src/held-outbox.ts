/**
 * The durable queue as the MQTT client's outbox, with a hold: while held, the client reads
 * nothing new from it, so what is in flight can be acknowledged before a reload replaces the
 * client (the queue stays open, and puts go on being stored and ACKed to the devices).
 */
import type { DurableQueue, Outbox, OutboxEntry, OutboxMessage, OutboxStats } from '@mqtt-edge/client';

const NOTHING: OutboxEntry[] = [];

export class HeldOutbox implements Outbox {
  held = false;
  /** Messages handed to the client to send (a resend of what was in flight at a reconnect is not read again). */
  sent = 0;
  /** Messages the broker acknowledged (QoS 1/2) or that were written (QoS 0): gone from the queue. */
  acked = 0;

  constructor(readonly queue: DurableQueue) {}

  put(message: OutboxMessage): Promise<number> {
    return this.queue.put(message);
  }

  read(afterSeq: number, max: number): OutboxEntry[] {
    if (this.held) return NOTHING;
    const entries = this.queue.read(afterSeq, max);
    this.sent += entries.length;
    return entries;
  }

  ack(seq: number): void {
    this.acked++;
    this.queue.ack(seq);
  }

  stats(now?: number): OutboxStats {
    return this.queue.stats(now);
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
