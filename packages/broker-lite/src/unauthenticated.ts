/**
 * What connections hold before their CONNACK (issue 12.2): nobody has checked who they are, so
 * all of them together get a fixed budget, max_unauthenticated_bytes. A connection is charged
 * every byte it sends until its CONNACK (what its parser buffers, its decoded CONNECT and the
 * packets it pipelines behind it are all made of those bytes) plus the decoded cost of its
 * CONNECT's user properties; the charge is dropped at CONNACK or close. Over the budget, the
 * connection holding the most is closed (5.0: CONNACK 0x89 server busy) until the rest fits, so
 * small, ordinary CONNECTs still get in while someone trickles big ones.
 */
import { ReasonCode } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection } from './connection.ts';

/**
 * Heap bytes a decoded user property costs beyond its wire bytes: a [key, value] pair is two
 * V8 objects (~64 bytes) and a slot in its list (8), measured in the codec's limits test.
 */
export const USER_PROPERTY_HEAP_BYTES = 80;

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
