import type { Properties, QoS } from '@mqtt-edge/codec';
import { CoreError } from './errors.ts';

/** A message the client has accepted to publish and must not forget until the broker acked it. */
export interface OutboxMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: Properties;
}

/** A stored message with the store's sequence number: increasing, never reused. */
export interface OutboxEntry {
  seq: number;
  message: OutboxMessage;
}

export type OutboxDropPolicy = 'drop-oldest' | 'reject-new';

export interface OutboxStats {
  /** Messages stored and not yet acknowledged. */
  count: number;
  /** Payload + topic bytes of those messages. */
  bytes: number;
  /** Age in ms of the oldest unacknowledged message at `now`, 0 when empty. */
  oldestAgeMs: number;
  /** Messages removed unsent by a drop-oldest bound (count or bytes or age). */
  droppedOldest: number;
  /** put() calls refused by a reject-new bound. */
  rejectedNew: number;
}

/**
 * Where the client keeps messages between publish() and the broker's acknowledgement.
 * The memory store is the default; the durable queue (node side) implements the same
 * interface so that what was acked by put() survives a crash.
 *
 * Contract:
 * - put() resolves with the entry's seq once the message is as durable as the store promises;
 *   it rejects with OutboxFullError under a reject-new bound (nothing stored).
 * - read(afterSeq, max) returns up to `max` stored, unacknowledged entries with seq > afterSeq,
 *   in seq order. Reading does not remove.
 * - ack(seq) removes one entry; acks may come out of order. Acking an unknown seq is a no-op.
 * - Entries a drop-oldest bound removed are gone from read() and counted in stats.
 * - A store whose read() may return an entry before its put() resolved (the durable queue with
 *   readBeforeCommit) sets `seq` on the promise put() returns (a PutPromise), so the caller can
 *   match an acknowledgement that comes first. A put() that rejects later stored nothing that
 *   stays: its seq is not read again, and an ack of it is a no-op.
 */
export interface PutPromise extends Promise<number> {
  /** The seq the entry took, known when put() returns; absent if the store does not say. */
  seq?: number;
}

export interface Outbox {
  put(message: OutboxMessage): Promise<number>;
  read(afterSeq: number, max: number): OutboxEntry[];
  ack(seq: number): void;
  stats(now?: number): OutboxStats;
  close(): Promise<void>;
}

export class OutboxFullError extends CoreError {
  override readonly name = 'OutboxFullError';
  readonly code = 'OUTBOX_FULL';
}
