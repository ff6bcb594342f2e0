import { type Duplex, duplexPair } from 'node:stream';
import {
  encode,
  type Packet,
  PacketParser,
  type Properties,
  type PublishPacket,
  type QoS,
  ReasonCode,
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
  /**
   * A QoS 1/2 message published with a token is done: taken by the broker (PUBACK / PUBREC
   * below 0x80: routed, and stored when persistence is on), or refused for good (`why`: larger
   * than the broker accepts, refused with another reason code than 0x97). Called once per token.
   */
  localDone(token: object, taken: boolean, why: string | undefined): void;
  /** The broker refused messages with 0x97 (its disk is full): they are sent again in `retryMs`. */
  localRefused(count: number, retryMs: number): void;
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
  /** Largest packet the broker accepts (Broker.maxPacketIn): a larger one would close the link. */
  maxPacket: number;
  /** Largest payload the broker takes (message_size_limit; 0: no limit): it refuses more with 0x97. */
  maxPayload: number;
  /** Milliseconds before messages the broker refused with 0x97 are sent again (default 1000). */
  retryMs?: number;
}

const INFO: ListenerInfo = { protocol: 'mqtt', tls: false, useIdentityAsUsername: false };
const RESTART_MS = 1000;

interface OutPub {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties: Properties | undefined;
  /** The owner's handle for localDone (QoS 1/2 only). */
  token: object | undefined;
  /** Order of arrival: what goes back into the queue goes back in this order. */
  seq: number;
}

const bySeq = (a: OutPub, b: OutPub): number => a.seq - b.seq;

export class LocalLink {
  /** Changes with each connection: acks for an older one are not written to the new one. */
  gen = 0;
  up = false;
  /** Messages dropped here: the queue was full, or a QoS 0 message too large for the broker. */
  dropped = 0;
  private sock: Duplex | null = null;
  private parser: PacketParser | null = null;
  private nextId = 1;
  private seq = 0;
  /** Our QoS 1/2 publishes by packet id until PUBACK / PUBCOMP; null: the SUBSCRIBE's id. */
  private readonly inflight = new Map<number, OutPub | null>();
  /** QoS 2 ids PUBREC'd by the broker (taken): only PUBREL / PUBCOMP remain, on any connection. */
  private readonly released = new Set<number>();
  private subscribeId = 0;
  private readonly queue: OutPub[] = [];
  private queueHead = 0;
  /** Refused with 0x97, waiting for retryTimer to go back to the front of the queue. */
  private refused: OutPub[] = [];
  private retryTimer: NodeJS.Timeout | null = null;
  /** QoS 2 from the broker: ids being stored (no PUBREC yet) and ids awaiting PUBREL. */
  private readonly in2 = new Set<number>();
  private stopped = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly maxInflight: number;
  private readonly maxQueued: number;
  private readonly retryMs: number;
  private readonly retryNow = (): void => this.retry();

  constructor(
    private readonly broker: LocalBroker,
    private readonly o: LocalLinkOptions,
    private readonly owner: LocalLinkOwner,
  ) {
    this.maxInflight = o.maxInflight ?? 1000;
    this.maxQueued = o.maxQueued ?? 10_000;
    this.retryMs = o.retryMs ?? 1000;
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

  /**
   * Publish to the broker as a client would; QoS 1/2 with a `token` for localDone. False when
   * dropped (queue full, counted in `dropped`) or the link is closed: localDone is not called.
   */
  publish(
    topic: string,
    payload: Uint8Array,
    qos: QoS,
    retain: boolean,
    properties: Properties | undefined,
    token?: object,
  ): boolean {
    if (this.stopped) return false;
    const m: OutPub = { topic, payload, qos, retain, properties, token, seq: this.seq++ };
    if (
      this.up &&
      this.queueHead === this.queue.length &&
      this.retryTimer === null &&
      (qos === 0 || this.inflight.size < this.maxInflight)
    ) {
      this.send(m);
      return true;
    }
    if (this.queue.length - this.queueHead >= this.maxQueued) {
      this.dropped++;
      return false;
    }
    this.queue.push(m);
    return true;
  }

  /** The message the broker sent is safe on our side: acknowledge it. */
  ackIn(gen: number, packetId: number, qos: QoS): void {
    if (gen !== this.gen || this.sock === null) return;
    if (qos === 1) this.write({ type: 'puback', packetId });
    else if (qos === 2) this.write({ type: 'pubrec', packetId });
  }

  /** QoS 1/2 publishes the link holds before it drops new ones: its window and its queue. */
  get capacity(): number {
    return this.maxInflight + this.maxQueued;
  }

  /** Publishes not yet taken by the broker: queued, in flight, waiting to be retried. */
  get queued(): number {
    return this.queue.length - this.queueHead + this.inflight.size + this.refused.length;
  }

  close(): void {
    this.stopped = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
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
    const why = this.refusal(m);
    let bytes: Uint8Array | undefined;
    if (why === undefined) {
      if (m.qos > 0) p.packetId = this.nextFreeId();
      try {
        bytes = encode(p, 5);
      } catch {
        // Over MQTT's largest packet once re-encoded here (a longer topic, the path property).
      }
    }
    // A packet the broker would refuse by its size closes the whole link (MQTT 5: 0x95), and
    // one over message_size_limit is refused with 0x97 like a full disk: neither ever goes in.
    if (bytes === undefined || bytes.length > this.o.maxPacket) {
      this.gone(m, why ?? 'larger than the local broker accepts (max_packet_size)');
      return;
    }
    if (m.qos > 0) this.inflight.set(p.packetId as number, m);
    this.sock?.write(bytes);
  }

  private refusal(m: OutPub): string | undefined {
    const max = this.o.maxPayload;
    return max > 0 && m.payload.length > max ? 'payload larger than message_size_limit' : undefined;
  }

  /** A message the broker can never take: counted and done. */
  private gone(m: OutPub, why: string): void {
    if (m.token === undefined) this.dropped++;
    else this.owner.localDone(m.token, false, why);
  }

  private nextFreeId(): number {
    let id = this.nextId;
    while (this.inflight.has(id)) id = id === 65_535 ? 1 : id + 1;
    this.nextId = id === 65_535 ? 1 : id + 1;
    return id;
  }

  private pump(): void {
    const q = this.queue;
    while (this.up && this.retryTimer === null && this.queueHead < q.length) {
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

  /** Puts messages back at the front of the queue, in their order of arrival. */
  private requeue(list: OutPub[]): void {
    if (list.length === 0) return;
    list.sort(bySeq);
    this.queue.splice(this.queueHead, 0, ...list);
  }

  /** The broker took (or for good refused) a publish of ours: PUBACK, or PUBREC / PUBCOMP. */
  private settled(packetId: number, rc: number): void {
    const m = this.inflight.get(packetId);
    if (m === undefined || m === null) return;
    this.inflight.delete(packetId);
    this.released.delete(packetId);
    if (rc === ReasonCode.QuotaExceeded) {
      // The broker's persistence cannot write (a full disk): not taken; sent again later, in
      // order, and nothing else goes until then (what would pass it now would pass it for good).
      this.refused.push(m);
      if (this.retryTimer === null) {
        this.retryTimer = setTimeout(this.retryNow, this.retryMs);
        this.owner.localRefused(this.refused.length, this.retryMs);
      }
      return;
    }
    if (m.token !== undefined)
      this.owner.localDone(
        m.token,
        rc < 0x80,
        rc < 0x80 ? undefined : `refused by the local broker (reason 0x${rc.toString(16)})`,
      );
  }

  private retry(): void {
    this.retryTimer = null;
    const list = this.refused;
    this.refused = [];
    this.requeue(list);
    this.pump();
  }

  private handle(p: Packet): void {
    switch (p.type) {
      case 'connack':
        if (p.reasonCode !== 0) {
          this.drop(`the broker refused the bridge session (reason 0x${p.reasonCode.toString(16)})`);
          return;
        }
        // QoS 2 taken on an earlier connection: released there or here (the session has it,
        // or answers 0x92 when it does not).
        for (const id of this.released) this.write({ type: 'pubrel', packetId: id });
        if (this.o.subscriptions.length === 0) {
          // An `in`-only bridge: nothing to subscribe to here, only to publish.
          this.linkUp();
          return;
        }
        this.subscribeId = this.nextFreeId();
        this.inflight.set(this.subscribeId, null);
        this.write({
          type: 'subscribe',
          packetId: this.subscribeId,
          subscriptions: this.o.subscriptions.map((s) => ({
            topicFilter: s.filter,
            qos: s.qos,
            noLocal: true,
            retainAsPublished: true,
          })),
        });
        return;
      case 'suback':
        if (p.packetId === this.subscribeId && !this.up) {
          this.inflight.delete(p.packetId);
          this.linkUp();
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
        this.settled(p.packetId, p.reasonCode ?? 0);
        this.pump();
        return;
      case 'pubcomp':
        if (this.released.delete(p.packetId)) {
          this.inflight.delete(p.packetId);
          this.pump();
        }
        return;
      case 'pubrec': {
        const rc = p.reasonCode ?? 0;
        if (rc >= 0x80) {
          this.settled(p.packetId, rc);
          this.pump();
          return;
        }
        const m = this.inflight.get(p.packetId);
        if (m === undefined || m === null) return;
        if (!this.released.has(p.packetId)) {
          this.released.add(p.packetId);
          if (m.token !== undefined) this.owner.localDone(m.token, true, undefined);
        }
        this.write({ type: 'pubrel', packetId: p.packetId });
        return;
      }
      case 'disconnect':
        this.drop(
          `the broker disconnected the bridge session (reason 0x${(p.reasonCode ?? 0).toString(16)})`,
        );
        return;
      default:
        return;
    }
  }

  private linkUp(): void {
    this.up = true;
    this.owner.localUp();
    this.pump();
  }

  private drop(reason: string): void {
    const s = this.sock;
    if (s === null) return;
    this.gen++;
    this.sock = null;
    this.parser = null;
    const wasUp = this.up;
    this.up = false;
    // Publishes in flight to the broker are not lost with the connection: the ones it had not
    // taken go again on the next one, in order (a QoS 1 it took but had not acknowledged yet
    // arrives twice: at least once); PUBREC'd QoS 2 ids keep their place for the PUBREL.
    const again: OutPub[] = [];
    for (const [id, m] of this.inflight) {
      if (this.released.has(id)) continue;
      this.inflight.delete(id);
      if (m !== null) again.push(m);
    }
    this.requeue(again);
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
