/**
 * The broker's API for a client inside its own process (a bridge's local side): a session like
 * any client's (subscriptions, the in-flight window and queue towards it, persistence,
 * back-pressure, the takeover rules), reached by function calls both ways instead of bytes.
 * What the broker sends it arrives as objects (the message the broker holds, CONNACK, SUBACK,
 * acks); what it publishes goes through the same checks, routing and acknowledgement as a
 * client's PUBLISH (handle-publish.ts's takePublish). Nothing is encoded or parsed.
 */
import { EventEmitter } from 'node:events';
import { type Packet, type Properties, type PublishPacket, type QoS, ReasonCode } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import type { Connection, ConnSocket, ListenerInfo } from './connection.ts';
import { settleDelivery } from './handle-acks.ts';
import { takePublish } from './handle-publish.ts';
import type { Message } from './message.ts';

/** What the broker hands an internal client. */
export interface InternalPeer {
  /** CONNACK, SUBACK, DISCONNECT, as the broker would send them to an MQTT 5 client. */
  packet(p: Packet): void;
  /**
   * A message for the peer: the broker's own object (shared with other subscribers: read it,
   * do not change it), with this delivery's QoS, retain flag and MQTT 5 properties. QoS 1/2:
   * InternalClient.settle(pid) once the peer is done with it; until then it holds a slot of
   * the in-flight window. Called from inside routing: settle later, not from here.
   */
  message(msg: Message, qos: QoS, retain: boolean, properties: Properties | undefined, pid: number): void;
  /**
   * The broker's answer to a QoS 1/2 publish (`first`: 0x40 PUBACK or 0x50 PUBREC, the reason
   * code as MQTT 5 says it). At once from inside publish(), or later in order of publishing
   * when it waits for the persistence commit.
   */
  ack(first: number, pid: number, reasonCode: number): void;
  /** The broker stopped (false) or resumed (true) taking this peer's publishes (back-pressure). */
  flowing(on: boolean): void;
  /** The session's connection ended (the broker closes, or the peer did). */
  closed(): void;
}

export interface InternalClientOptions {
  clientId: string;
  /** Keep the session, and what is queued for it, across restarts (when the broker persists). */
  persistent: boolean;
  /** QoS 1/2 in flight towards the peer, in place of max_inflight_messages. */
  maxInflight: number;
  /** Its name in log lines, in place of a peer address. */
  remote: string;
}

const INFO: ListenerInfo = { protocol: 'mqtt', tls: false, useIdentityAsUsername: false };

/**
 * Stands in for the socket of the connection that carries the session: no bytes cross it; it
 * passes pause / resume (back-pressure) to the peer and closes as a socket does.
 */
class NoWire extends EventEmitter implements ConnSocket {
  readonly writableLength = 0;
  destroyed = false;
  writableEnded = false;
  constructor(private readonly client: InternalClient) {
    super();
  }
  pause(): this {
    this.client.wireFlowing(false);
    return this;
  }
  resume(): this {
    this.client.wireFlowing(true);
    return this;
  }
  write(): boolean {
    return true;
  }
  end(): this {
    return this.destroy();
  }
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = this.writableEnded = true;
    // After the call that ended it, as a socket's 'close'.
    setImmediate(() => {
      this.emit('close');
      this.client.wireClosed();
    });
    return this;
  }
}

export class InternalClient {
  private conn: Connection | null = null;

  constructor(
    private readonly broker: Broker,
    private readonly o: InternalClientOptions,
    private readonly peer: InternalPeer,
  ) {}

  /**
   * Connects as an MQTT 5 client would, without authentication (an internal peer: outside the
   * ACL, not counted against max_connections, its client id kept from outside clients); the
   * CONNACK reaches peer.packet before this returns. False when the broker is closing.
   */
  connect(): boolean {
    const o = this.o;
    const wire = new NoWire(this);
    const conn = this.broker.accept(wire, INFO, o.remote, undefined, {
      internal: true,
      maxInflight: o.maxInflight,
    });
    if (conn === undefined) return false;
    conn.peer = this.peer;
    this.conn = conn;
    conn.dispatch({
      type: 'connect',
      protocolVersion: 5,
      clientId: o.clientId,
      clean: !o.persistent,
      keepalive: 0,
      properties: o.persistent ? { sessionExpiryInterval: 0xffff_ffff } : {},
    });
    // max_keepalive would give it one; it sends no packets to keep anything alive with.
    conn.keepaliveMs = 0;
    return true;
  }

  /** No-local and retain-as-published subscriptions; the SUBACK reaches peer.packet, then retained messages. */
  subscribe(subscriptions: ReadonlyArray<{ filter: string; qos: QoS }>): void {
    this.conn?.dispatch({
      type: 'subscribe',
      packetId: 1,
      subscriptions: subscriptions.map((s) => ({
        topicFilter: s.filter,
        qos: s.qos,
        noLocal: true,
        retainAsPublished: true,
      })),
    });
  }

  /**
   * Publishes `p` (its packetId is the peer's own tag, handed back in peer.ack) as the
   * session's client. False when not connected, or when handling it failed (an internal error:
   * logged, and the connection is closed, as a client's would be).
   */
  publish(p: PublishPacket): boolean {
    const conn = this.conn;
    if (conn === null || conn.session === null || conn.ending) return false;
    const b = this.broker;
    const c = b.counters;
    c.packetsIn++;
    c.msgsInQos[p.qos]++;
    c.pubBytesIn += p.payload.length;
    try {
      takePublish(conn, conn.session, p, p.topic, p.properties);
      return true;
    } catch (err) {
      b.log('error', 'internal error handling a packet', { clientId: conn.clientId, error: String(err) });
      conn.fail(ReasonCode.ImplementationSpecificError, 'internal error');
      return false;
    }
  }

  /** The peer is done with the message delivered under `pid` (any QoS): its slot is free. */
  settle(pid: number): void {
    const conn = this.conn;
    if (conn !== null && !conn.closed) settleDelivery(conn, pid);
  }

  /** A DISCONNECT: the session stays (persistent) or ends. The peer hears nothing more. */
  disconnect(): void {
    const conn = this.conn;
    this.detach();
    conn?.dispatch({ type: 'disconnect', reasonCode: 0 });
  }

  /** The peer hears nothing more of this connection (it saw it end another way). */
  detach(): void {
    const conn = this.conn;
    this.conn = null;
    // Acks released by a later commit, or anything else sent while it closes, go nowhere.
    if (conn !== null) conn.peer = null;
  }

  /** @internal NoWire */
  wireFlowing(on: boolean): void {
    if (this.conn !== null) this.peer.flowing(on);
  }

  /** @internal NoWire */
  wireClosed(): void {
    if (this.conn === null) return;
    this.conn = null;
    this.peer.closed();
  }
}
