import type { PublishPacket } from '@mqtt-edge/codec';
import { IdMap } from './collections.ts';

/**
 * `manualAcks`: the PUBACK / PUBREC of an incoming QoS 1/2 PUBLISH waits until the application
 * calls ack() with the packet (a store-and-forward caller acknowledges once the message is safe
 * with it), and acknowledgements leave in the order the PUBLISHes were received on the
 * connection (MQTT 3.1.1 / 5.0 section 4.6): one not yet acknowledged holds back those behind it.
 *
 * Per connection: the packets owed an ack, in order. A packet acknowledged after its connection
 * ended is no longer owed there: the server re-sends a QoS 1 PUBLISH it has no PUBACK for (a new
 * packet, delivered again), and a QoS 2 one under the same id, which is answered with the
 * original packet's ack (`unacked`, kept across connections while the server keeps the session).
 */
export class IncomingAcks {
  private owed: PublishPacket[] = [];
  private done: boolean[] = [];
  private head = 0;
  /** QoS 2 packets delivered to the application and not acknowledged by it, by packet id. */
  private unacked: IdMap<PublishPacket> | null = null;

  /** A new connection: nothing is owed on it yet. */
  reset(sessionPresent: boolean): void {
    this.owed = [];
    this.done = [];
    this.head = 0;
    if (!sessionPresent) this.unacked = null;
  }

  /** A new QoS 1/2 PUBLISH handed to the application. */
  received(p: PublishPacket): void {
    if (p.qos === 2) (this.unacked ??= new IdMap()).set(p.packetId as number, p);
    this.owed.push(p);
    this.done.push(false);
  }

  /**
   * A QoS 2 PUBLISH under an id already received (DUP): owed again on this connection, answered
   * once the application acknowledged the original (at once if it did).
   */
  duplicate(p: PublishPacket): void {
    const orig = this.unacked?.get(p.packetId as number);
    if (orig === undefined) {
      this.owed.push(p);
      this.done.push(true);
    } else if (this.owed.indexOf(orig, this.head) < 0) {
      this.owed.push(orig);
      this.done.push(false);
    }
  }

  /** The application acknowledges `p`; false when no connection owes it (nothing to send). */
  ack(p: PublishPacket): boolean {
    if (p.qos === 2 && this.unacked?.get(p.packetId as number) === p)
      this.unacked.delete(p.packetId as number);
    // Acks mostly come in order: the search starts at the oldest owed.
    const i = this.owed.indexOf(p, this.head);
    if (i < 0) return false;
    this.done[i] = true;
    return i === this.head;
  }

  /** The next ack that may be sent now (in order), or undefined. */
  next(): PublishPacket | undefined {
    if (this.head >= this.owed.length || !this.done[this.head]) return undefined;
    const p = this.owed[this.head];
    this.head++;
    if (this.head === this.owed.length) {
      this.owed.length = 0;
      this.done.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.owed.length) {
      this.owed.splice(0, this.head);
      this.done.splice(0, this.head);
      this.head = 0;
    }
    return p;
  }

  /** PUBLISHes received on this connection and not acknowledged yet. */
  get pending(): number {
    return this.owed.length - this.head;
  }
}
