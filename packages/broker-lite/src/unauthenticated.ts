/**
 * What connections hold before their CONNACK (issue 12.2): nobody has checked who they are, so
 * all of them together get a fixed budget, max_unauthenticated_bytes. A connection is charged
 * every byte it sends until its CONNACK (what its parser buffers, its decoded CONNECT and the
 * packets it pipelines behind it are all made of those bytes) plus what those packets cost
 * decoded beyond their bytes (decodedExtra); the charge is dropped at CONNACK or close. Over the budget, the
 * connection holding the most is closed (5.0: CONNACK 0x89 server busy) until the rest fits, so
 * small, ordinary CONNECTs still get in while someone trickles big ones.
 */
import { type Packet, type Properties, ReasonCode } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';

/**
 * Heap bytes charged for each item of a decoded packet that costs more than its wire bytes: a
 * user property is two V8 objects and a slot (72 bytes for as few as 5 wire bytes), a 5.0
 * subscription an object of five fields and a slot (72 for 4), a topic filter of UNSUBSCRIBE
 * a string and a slot (32 for 4). Measured with heap snapshots of decoded packets.
 */
export const ITEM_HEAP_BYTES = 80;

/**
 * What holding `p` decoded costs beyond its bytes on the wire (which were charged as they
 * arrived): its lists, item by item. Everything else in a packet is a few objects, or strings
 * and views about the size of their bytes.
 */
export function decodedExtra(p: Packet): number {
  let items = 0;
  const props = (p as { properties?: Properties }).properties;
  if (props !== undefined)
    items += (props.userProperties?.length ?? 0) + (props.subscriptionIdentifiers?.length ?? 0);
  if (p.type === 'subscribe') items += p.subscriptions.length;
  else if (p.type === 'unsubscribe') items += p.topicFilters.length;
  else if (p.type === 'connect') items += p.will?.properties?.userProperties?.length ?? 0;
  return items * ITEM_HEAP_BYTES;
}

export class UnauthenticatedBudget {
  private readonly held = new Map<Connection, number>();
  /** Bytes charged to connections not yet CONNACKed, all together. */
  bytes = 0;
  /** The most `bytes` has been after a charge was settled. */
  peak = 0;
  private closedSinceLog = 0;
  private lastLog = 0;

  constructor(
    private readonly b: Broker,
    /** 0 = no limit. */
    private readonly max: number,
  ) {}

  get connections(): number {
    return this.held.size;
  }

  /**
   * Charges `n` bytes to `conn`; over the budget, closes the biggest holders until it fits.
   * False when that closed `conn` itself: then its bytes must not be looked at.
   */
  charge(conn: Connection, n: number): boolean {
    this.held.set(conn, (this.held.get(conn) ?? 0) + n);
    this.bytes += n;
    if (this.max > 0 && this.bytes > this.max) this.evict();
    if (this.bytes > this.peak) this.peak = this.bytes;
    return !conn.ending;
  }

  /** `conn` got its CONNACK or is closing: it holds nothing the budget covers any more. */
  release(conn: Connection): void {
    const n = this.held.get(conn);
    if (n === undefined) return;
    this.bytes -= n;
    this.held.delete(conn);
  }

  private evict(): void {
    while (this.bytes > this.max) {
      let victim: Connection | null = null;
      let most = -1;
      // the oldest of equal holders: Map iterates in insertion order
      for (const [c, n] of this.held) {
        if (n > most) {
          most = n;
          victim = c;
        }
      }
      if (victim === null) return;
      this.release(victim);
      this.logClose(victim, most);
      victim.refuseBeforeConnack(ReasonCode.ServerBusy);
    }
  }

  /** One line a second at most: an attack would otherwise write one per connection. */
  private logClose(conn: Connection, n: number): void {
    this.closedSinceLog++;
    const now = Date.now();
    if (now - this.lastLog < 1000) return;
    this.b.log('notice', 'closing a connection before CONNACK: max_unauthenticated_bytes reached', {
      remote: conn.remote,
      heldBytes: n,
      maxUnauthenticatedBytes: this.max,
      pendingConnections: this.held.size,
      closedSinceLastLog: this.closedSinceLog,
    });
    this.lastLog = now;
    this.closedSinceLog = 0;
  }
}
