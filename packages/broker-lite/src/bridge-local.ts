import { type Duplex, duplexPair } from 'node:stream';
import {
  encode,
  type Packet,
  PacketParser,
  type Properties,
  type PublishPacket,
  type QoS,
} from '@mqtt-edge/codec';
import type { AcceptOptions, ListenerInfo } from './connection.ts';

/**
 * The bridge's session on this broker: an MQTT 5 client over an in-memory duplex handed to
 * Broker.accept(), so what crosses the bridge takes the same path as any client's messages
 * (retained, persistence, backpressure) without a socket. It is an internal connection: no
 * password file, no ACL (as Mosquitto's bridges), and its own in-flight window. MQTT 5 for
 * no-local (what the bridge publishes here is not sent back to it) and retain-as-published.
 */

export interface LocalBroker {
  accept(
    socket: Duplex,
    info: ListenerInfo,
    remote: string,
    certificateCommonName: string | undefined,
    options: AcceptOptions,
  ): void;
}

export interface LocalLinkOwner {
  /** A message for the bridge. QoS 1/2: call link.ackIn(gen, packetId, qos) once it is safe. */
  localMessage(p: PublishPacket, gen: number): void;
  localUp(): void;
  localDown(reason: string): void;
}

export interface LocalLinkOptions {
  clientId: string;
  /** Keep the session (and its queued messages) across restarts. */
  persistent: boolean;
  subscriptions: Array<{ filter: string; qos: QoS }>;
  /**
   * Most QoS 1/2 publishes waiting for their ack, each way: towards the broker (more wait in a
   * bounded queue) and from it (the broker's window for this session; acks wait for the disk).
   */
  maxInflight?: number;
  /** Most publishes waiting beyond the in-flight window; past it new ones are dropped (counted). */
  maxQueued?: number;
}

const INFO: ListenerInfo = { protocol: 'mqtt', tls: false, useIdentityAsUsername: false };
const RESTART_MS = 1000;

interface OutPub {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties: Properties | undefined;
}

export class LocalLink {
  /** Changes with each connection: acks for an older one are not written to the new one. */
  gen = 0;
  up = false;
  dropped = 0;
  private sock: Duplex | null = null;
  private parser: PacketParser | null = null;
  private nextId = 1;
  private readonly inflight = new Map<number, 1 | 2>();
  private readonly queue: OutPub[] = [];
  private queueHead = 0;
  /** QoS 2 from the broker: ids being stored (no PUBREC yet) and ids awaiting PUBREL. */
  private readonly in2 = new Set<number>();
  private stopped = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly maxInflight: number;
  private readonly maxQueued: number;

  constructor(
    private readonly broker: LocalBroker,
    private readonly o: LocalLinkOptions,
    private readonly owner: LocalLinkOwner,
  ) {
    this.maxInflight = o.maxInflight ?? 1000;
    this.maxQueued = o.maxQueued ?? 10_000;
  }

  start(): void {
    if (this.stopped || this.sock !== null) return;
    const [ours, theirs] = duplexPair();
    const gen = ++this.gen;
    this.sock = ours;
    this.parser = new PacketParser({ protocolVersion: 5 });
    ours.on('data', (chunk: Uint8Array) => {
      if (this.gen !== gen) return;
      try {
        this.parser!.push(chunk, (p) => this.handle(p));
      } catch (err) {
        this.drop(`bad packet from the broker: ${(err as Error).message}`);
      }
    });
    ours.on('error', () => {});
    ours.on('close', () => {
      if (this.gen === gen) this.drop('the broker closed the bridge session');
    });
    this.broker.accept(theirs, INFO, `bridge:${this.o.clientId}`, undefined, {
      internal: true,
      maxInflight: this.maxInflight,
    });
    this.write({
      type: 'connect',
      protocolVersion: 5,
      clientId: this.o.clientId,
      clean: !this.o.persistent,
      keepalive: 0,
      properties: this.o.persistent ? { sessionExpiryInterval: 0xffff_ffff } : {},
    });
  }

  /** Publish to the broker as a client would. False when dropped (queue full or closed). */
  publish(
    topic: string,
    payload: Uint8Array,
    qos: QoS,
    retain: boolean,
    properties: Properties | undefined,
  ): boolean {
    if (this.stopped) return false;
    if (
      this.up &&
      this.queueHead === this.queue.length &&
      (qos === 0 || this.inflight.size < this.maxInflight)
    ) {
      this.send({ topic, payload, qos, retain, properties });
      return true;
    }
    if (this.queue.length - this.queueHead >= this.maxQueued) {
      this.dropped++;
      return false;
    }
    this.queue.push({ topic, payload, qos, retain, properties });
    return true;
  }

  /** The message the broker sent is safe on our side: acknowledge it. */
  ackIn(gen: number, packetId: number, qos: QoS): void {
    if (gen !== this.gen || this.sock === null) return;
    if (qos === 1) this.write({ type: 'puback', packetId });
    else if (qos === 2) this.write({ type: 'pubrec', packetId });
  }

  get queued(): number {
    return this.queue.length - this.queueHead + this.inflight.size;
  }

  close(): void {
    this.stopped = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const s = this.sock;
    if (s !== null) {
      this.write({ type: 'disconnect', reasonCode: 0 });
      this.gen++;
      this.sock = null;
      this.up = false;
      s.end();
    }
  }

  private write(p: Packet): void {
    this.sock?.write(encode(p, 5));
  }

  private send(m: OutPub): void {
    const p: PublishPacket = {
      type: 'publish',
      topic: m.topic,
      payload: m.payload,
      qos: m.qos,
      retain: m.retain,
      dup: false,
    };
    if (m.properties !== undefined) p.properties = m.properties;
    if (m.qos > 0) {
      let id = this.nextId;
      while (this.inflight.has(id)) id = id === 65_535 ? 1 : id + 1;
      this.nextId = id === 65_535 ? 1 : id + 1;
      p.packetId = id;
      this.inflight.set(id, m.qos as 1 | 2);
    }
    this.write(p);
  }

  private pump(): void {
    const q = this.queue;
    while (this.up && this.queueHead < q.length) {
      const m = q[this.queueHead];
      if (m.qos > 0 && this.inflight.size >= this.maxInflight) break;
      q[this.queueHead++] = undefined as unknown as OutPub;
      this.send(m);
    }
    if (this.queueHead === q.length) {
      q.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > q.length) {
      q.splice(0, this.queueHead);
      this.queueHead = 0;
    }
  }

  private handle(p: Packet): void {
    switch (p.type) {
      case 'connack':
        if (p.reasonCode !== 0) {
          this.drop(`the broker refused the bridge session (reason 0x${p.reasonCode.toString(16)})`);
          return;
        }
        if (this.o.subscriptions.length === 0) {
          // An `in`-only bridge: nothing to subscribe to here, only to publish.
          this.up = true;
          this.owner.localUp();
          this.pump();
          return;
        }
        this.write({
          type: 'subscribe',
          packetId: 1,
          subscriptions: this.o.subscriptions.map((s) => ({
            topicFilter: s.filter,
            qos: s.qos,
            noLocal: true,
            retainAsPublished: true,
          })),
        });
        // Our publishes use ids from 2 until the SUBACK (id 1) is in.
        this.inflight.set(1, 1);
        this.nextId = 2;
        return;
      case 'suback':
        if (p.packetId === 1 && !this.up) {
          this.inflight.delete(1);
          this.up = true;
          this.owner.localUp();
          this.pump();
        }
        return;
      case 'publish':
        if (p.qos === 2 && this.in2.has(p.packetId!)) return;
        if (p.qos === 2) this.in2.add(p.packetId!);
        this.owner.localMessage(p, this.gen);
        return;
      case 'pubrel':
        this.in2.delete(p.packetId);
        this.write({ type: 'pubcomp', packetId: p.packetId });
        return;
      case 'puback':
      case 'pubcomp':
        if (this.inflight.delete(p.packetId)) this.pump();
        return;
      case 'pubrec':
        if ((p.reasonCode ?? 0) >= 0x80) {
          if (this.inflight.delete(p.packetId)) this.pump();
          return;
        }
        this.write({ type: 'pubrel', packetId: p.packetId });
        return;
      case 'disconnect':
        this.drop(
          `the broker disconnected the bridge session (reason 0x${(p.reasonCode ?? 0).toString(16)})`,
        );
        return;
      default:
        return;
    }
  }

  private drop(reason: string): void {
    const s = this.sock;
    if (s === null) return;
    this.gen++;
    this.sock = null;
    this.parser = null;
    const wasUp = this.up;
    this.up = false;
    // Publishes in flight to the broker are given up: at most once on this side, like any QoS 1
    // client that loses its session; the remote acked them already.
    this.dropped += this.inflight.size;
    this.inflight.clear();
    this.in2.clear();
    s.destroy();
    if (wasUp || !this.stopped) this.owner.localDown(reason);
    if (!this.stopped) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        this.start();
      }, RESTART_MS);
      this.restartTimer.unref();
    }
  }
}
