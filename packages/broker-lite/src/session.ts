import type { QoS } from '@mqtt-edge/codec';
import type { Connection } from './connection.ts';
import type { Delivery } from './message.ts';
import type { ListenerSecurity } from './options.ts';

const STORED = 1;
const INTERNAL = 2;
const BRIDGE = 4;

/** The queue of every session that has nothing queued (never written to). */
const EMPTY_QUEUE: Array<Delivery | undefined> = [];

/** Session expiry meaning "never" (3.1.1 clean session 0, 5.0 0xFFFFFFFF). */
export const NEVER_EXPIRES = 0xffffffff;

/** One subscription: the value the subscription index holds. */
export class Subscription {
  constructor(
    readonly session: Session,
    /** As the client sent it, `$share/...` included. */
    readonly filter: string,
    public qos: QoS,
    public noLocal: boolean,
    public retainAsPublished: boolean,
    public retainHandling: 0 | 1 | 2,
    public id: number | undefined,
    readonly shared: boolean,
  ) {}
}

/**
 * What the broker keeps for a client id across connections: subscriptions, QoS 1/2 messages
 * in flight to it and queued behind them, QoS 2 packet ids received and not yet released.
 */
export class Session {
  /** Seconds the session outlives its connection; NEVER_EXPIRES = kept until a clean start. */
  expiryInterval = 0;
  // Created on first use: an idle clean session costs no Map.
  private _subs: Map<string, Subscription> | null = null;
  private _inflight: Map<number, Delivery> | null = null;
  /** Waiting behind the in-flight window; `queue[qHead..]` are live. Shared empty until used. */
  queue: Array<Delivery | undefined> = EMPTY_QUEUE;
  qHead = 0;
  queuedBytes = 0;
  /** QoS 2 packet ids received (PUBREC sent) and not yet released by PUBREL. */
  incomingQos2: Set<number> | null = null;
  conn: Connection | null = null;
  /** Wall-clock ms at which an offline session ends; 0 while connected or never. */
  expiresAt = 0;
  username: string | undefined;
  /**
   * per_listener_settings: the login rules and ACL of the listener it last connected on; null
   * for the broker's (and for a session restored from disk until its client is back).
   */
  security: ListenerSecurity | null = null;
  /** Publishers whose sockets are paused until this session's queue drains. */
  blocked: Connection[] | null = null;
  private nextPid = 1;

  /** stored, internal and bridge, as bits: 8 bytes per session, not 24. */
  private bits = 0;

  constructor(readonly clientId: string) {}

  private bit(b: number, on: boolean): void {
    this.bits = on ? this.bits | b : this.bits & ~b;
  }

  /** True once the session has a record in the persistence log. */
  get stored(): boolean {
    return (this.bits & STORED) !== 0;
  }
  set stored(v: boolean) {
    this.bit(STORED, v);
  }
  /** Last connected by an internal peer (AcceptOptions.internal): outside the ACL, not taken over. */
  get internal(): boolean {
    return (this.bits & INTERNAL) !== 0;
  }
  set internal(v: boolean) {
    this.bit(INTERNAL, v);
  }
  /**
   * Last connected as a Mosquitto bridge (3.1 / 3.1.1 CONNECT with the bridge bit, its
   * try_private): its subscriptions are no-local and retain-as-published, so what the bridge
   * brings in is not sent back to it, and retained flags cross intact (what Mosquitto does).
   */
  get bridge(): boolean {
    return (this.bits & BRIDGE) !== 0;
  }
  set bridge(v: boolean) {
    this.bit(BRIDGE, v);
  }
  get subs(): Map<string, Subscription> {
    if (this._subs === null) this._subs = new Map();
    return this._subs;
  }

  get inflight(): Map<number, Delivery> {
    if (this._inflight === null) this._inflight = new Map();
    return this._inflight;
  }

  /** Messages in flight, without creating the map. */
  get inflightCount(): number {
    return this._inflight === null ? 0 : this._inflight.size;
  }

  get hasSubscriptions(): boolean {
    return this._subs !== null && this._subs.size > 0;
  }

  /** Subscriptions, without creating the map. */
  get subscriptionCount(): number {
    return this._subs === null ? 0 : this._subs.size;
  }

  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  get queueLength(): number {
    return this.queue.length - this.qHead;
  }

  enqueue(d: Delivery): void {
    if (this.queue === EMPTY_QUEUE) this.queue = [];
    this.queue.push(d);
    this.queuedBytes += d.msg.payload.length + d.msg.topic.length;
  }

  dequeue(): Delivery | undefined {
    if (this.qHead >= this.queue.length) return undefined;
    const d = this.queue[this.qHead];
    this.queue[this.qHead++] = undefined;
    if (this.qHead === this.queue.length) {
      this.queue = EMPTY_QUEUE;
      this.qHead = 0;
    } else if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
    if (d !== undefined) this.queuedBytes -= d.msg.payload.length + d.msg.topic.length;
    return d;
  }

  /** A packet id not in flight (1..65535, cycling). */
  allocPid(): number {
    for (;;) {
      const pid = this.nextPid;
      this.nextPid = pid === 65_535 ? 1 : pid + 1;
      if (this._inflight === null || !this._inflight.has(pid)) return pid;
    }
  }
}
