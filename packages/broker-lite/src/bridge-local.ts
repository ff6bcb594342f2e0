import {
  encodedLength,
  type Packet,
  type Properties,
  type PublishPacket,
  type QoS,
  ReasonCode,
} from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import { InternalClient, type InternalPeer } from './internal-client.ts';
import type { Message } from './message.ts';

/**
 * The bridge's session on this broker: an internal client (internal-client.ts), so what crosses
 * the bridge takes the same path as any client's messages (retained, persistence, the in-flight
 * window and queue towards it, back-pressure) by function calls, nothing encoded. No password
 * file, no ACL (as Mosquitto's bridges); no-local (what the bridge publishes here is not sent
 * back to it) and retain-as-published. What is left here is the bridge's own policy for what it
 * brings in: a bounded wait while the broker holds it back (paused, or refusing with 0x97 while
 * its disk is full), and the tokens the bridge acknowledges upstream with.
 */

export interface LocalLinkOwner {
  /**
   * A message for the bridge, the broker's own object (read it, do not change it), with the
   * delivery's QoS, retain flag and properties. QoS 1/2: call link.ackIn(gen, pid) once it is
   * safe; not from inside this call.
   */
  localMessage(
    msg: Message,
    qos: QoS,
    retain: boolean,
    properties: Properties | undefined,
    pid: number,
    gen: number,
  ): void;
  /**
   * A QoS 1/2 message published with a token is done: taken by the broker (routed, and stored
   * when persistence is on), or refused for good (`why`: larger than the broker accepts,
   * refused with another reason code than 0x97). Called once per token.
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
   * Most QoS 1/2 messages waiting for the broker's word, each way: towards the broker (its
   * answer waits for the persistence commit; more wait in a bounded queue) and from it (the
   * broker's in-flight window for this session; they wait for the bridge's disk).
   */
  maxInflight?: number;
  /** Most publishes waiting beyond the in-flight window; past it new ones are dropped (counted). */
  maxQueued?: number;
  /** Largest packet the broker accepts (Broker.maxPacketIn): what a client could not send is refused. */
  maxPacket: number;
  /** Largest payload the broker takes (message_size_limit; 0: no limit): it refuses more with 0x97. */
  maxPayload: number;
  /** retain_available: false refuses retained messages (a client would be disconnected). */
  retainAvailable: boolean;
  /** Milliseconds before messages the broker refused with 0x97 are sent again (default 1000). */
  retryMs?: number;
}

const RESTART_MS = 1000;
const PUBACK = 0x40;
const PUBREC = 0x50;
const PUBREL = 0x62;

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

export class LocalLink implements InternalPeer {
  /** Changes with each connection: acks for an older one do not reach the new one. */
  gen = 0;
  up = false;
  /** Messages dropped here: the queue was full, or a QoS 0 message the broker cannot take. */
  dropped = 0;
  private client: InternalClient | null = null;
  /** The CONNACK's reason code of the connection being made (-1: none yet). */
  private connack = -1;
  private seq = 0;
  /** Waiting for their turn: the window is full, the broker paused us, or a retry is due. */
  private queue: OutPub[] = [];
  /** QoS 1/2 publishes the broker took whose answer waits for its commit, in order (its acks keep it). */
  private answering: OutPub[] = [];
  /** The publish being handed to the broker: its answer, when it comes at once, is for it. */
  private sending: OutPub | null = null;
  private answered = false;
  /** Refused with 0x97, waiting for retryTimer to go back to the front of the queue. */
  private refused: OutPub[] = [];
  private retryTimer: NodeJS.Timeout | null = null;
  /** The broker reads from us (it pauses a publisher whose subscribers' queues are full). */
  private flows = true;
  /** Deliveries the bridge is done with, settled after the call that delivered them. */
  private settling: number[] = [];
  private kicked = false;
  private stopped = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly maxInflight: number;
  private readonly maxQueued: number;
  private readonly retryMs: number;
  private readonly retryNow = (): void => this.retry();
  private readonly kickNow = (): void => this.afterCall();

  constructor(
    private readonly broker: Broker,
    private readonly o: LocalLinkOptions,
    private readonly owner: LocalLinkOwner,
  ) {
    this.maxInflight = o.maxInflight ?? 1000;
    this.maxQueued = o.maxQueued ?? 10_000;
    this.retryMs = o.retryMs ?? 1000;
  }

  start(): void {
    if (this.stopped || this.client !== null) return;
    this.gen++;
    const client = new InternalClient(
      this.broker,
      {
        clientId: this.o.clientId,
        persistent: this.o.persistent,
        maxInflight: this.maxInflight,
        remote: `bridge:${this.o.clientId}`,
      },
      this,
    );
    this.client = client;
    this.connack = -1;
    if (!client.connect()) {
      this.client = null;
      this.restartLater();
      return;
    }
    if (this.client !== client) return; // refused, and dropped meanwhile
    if (this.connack !== 0) {
      this.drop(`the broker refused the bridge session (reason 0x${this.connack.toString(16)})`);
      return;
    }
    // An `in`-only bridge has nothing to subscribe to here, only to publish.
    if (this.o.subscriptions.length > 0) client.subscribe(this.o.subscriptions);
    if (this.client !== client) return;
    this.up = true;
    this.owner.localUp();
    this.kick();
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
    if (this.queue.length === 0 && this.mayGo(m)) {
      this.send(m);
      return true;
    }
    if (this.queue.length >= this.maxQueued) {
      this.dropped++;
      return false;
    }
    this.queue.push(m);
    return true;
  }

  /** The message delivered under `pid` is safe on the bridge's side: its slot in the window is free. */
  ackIn(gen: number, pid: number): void {
    if (gen !== this.gen || pid === 0 || this.client === null) return;
    this.settling.push(pid);
    this.kick();
  }

  /** QoS 1/2 publishes the link holds before it drops new ones: its window and its queue. */
  get capacity(): number {
    return this.maxInflight + this.maxQueued;
  }

  /** Publishes not yet taken by the broker: queued, waiting for its answer, to be retried. */
  get queued(): number {
    return this.queue.length + this.answering.length + this.refused.length;
  }

  close(): void {
    this.stopped = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const client = this.client;
    if (client !== null) {
      this.gen++;
      this.client = null;
      this.up = false;
      client.disconnect();
    }
  }

  // ---- InternalPeer: the broker calls these ----------------------------------------------

  /** @internal */
  packet(p: Packet): void {
    if (p.type === 'connack') this.connack = p.reasonCode;
    else if (p.type === 'disconnect')
      this.drop(`the broker disconnected the bridge session (reason 0x${(p.reasonCode ?? 0).toString(16)})`);
  }

  /** @internal */
  message(msg: Message, qos: QoS, retain: boolean, properties: Properties | undefined, pid: number): void {
    this.owner.localMessage(msg, qos, retain, properties, pid, this.gen);
  }

  /** @internal */
  ack(first: number, pid: number, reasonCode: number): void {
    if (first === PUBREL) {
      // A QoS 2 delivery released before a restart by a version that went through PUBREC: done.
      this.ackIn(this.gen, pid);
      return;
    }
    if (first !== PUBACK && first !== PUBREC) return;
    if (this.sending !== null) {
      this.answered = true;
      this.settled(this.sending, reasonCode);
      return;
    }
    const m = this.answering.shift();
    if (m === undefined) return;
    this.settled(m, reasonCode);
    this.kick();
  }

  /** @internal */
  flowing(on: boolean): void {
    this.flows = on;
    if (on) this.kick();
  }

  /** @internal */
  closed(): void {
    this.drop('the broker closed the bridge session');
  }

  // ---- sending ---------------------------------------------------------------------------

  private mayGo(m: OutPub): boolean {
    return (
      this.up &&
      this.flows &&
      this.retryTimer === null &&
      (m.qos === 0 || this.answering.length < this.maxInflight)
    );
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
    if (m.qos > 0) p.packetId = 1;
    if (m.properties !== undefined) p.properties = m.properties;
    const why = this.refusal(p);
    if (why !== undefined) {
      this.gone(m, why);
      return;
    }
    this.sending = m;
    this.answered = false;
    const handled = (this.client as InternalClient).publish(p);
    this.sending = null;
    if (!handled) {
      // The connection is closing (or failed on it): sent again on the next one.
      this.requeue([m]);
      this.drop('the broker closed the bridge session');
    }
    // Taken, its answer waiting for the broker's commit (answers come back in this order).
    else if (m.qos > 0 && !this.answered) this.answering.push(m);
  }

  /**
   * Why the broker cannot take `p` from a client, checked here: one larger than it accepts
   * would close a client's connection (MQTT 5: 0x95), a payload over message_size_limit is
   * refused with 0x97 as for a full disk, a retained one where retain_available is false closes
   * the connection too. None of them would ever go in.
   */
  private refusal(p: PublishPacket): string | undefined {
    const o = this.o;
    if (o.maxPayload > 0 && p.payload.length > o.maxPayload) return 'payload larger than message_size_limit';
    if (p.retain && !o.retainAvailable) return 'retained, and retain_available is false here';
    let bytes: number;
    try {
      bytes = encodedLength(p, 5);
    } catch {
      // Over MQTT's largest packet here (a longer topic, the path property).
      return 'larger than the local broker accepts (max_packet_size)';
    }
    return bytes > o.maxPacket ? 'larger than the local broker accepts (max_packet_size)' : undefined;
  }

  /** A message the broker can never take: counted and done. */
  private gone(m: OutPub, why: string): void {
    if (m.token === undefined) this.dropped++;
    else this.owner.localDone(m.token, false, why);
  }

  /** The broker took (or for good refused) a publish of ours: its PUBACK / PUBREC. */
  private settled(m: OutPub, rc: number): void {
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

  /**
   * Calls into the broker that the broker's own calls asked for (settling a delivery, sending
   * what waited for room) run after them: routing is not re-entered, and a delivery is in the
   * session's window before it is settled.
   */
  private kick(): void {
    if (this.kicked) return;
    this.kicked = true;
    queueMicrotask(this.kickNow);
  }

  private afterCall(): void {
    this.kicked = false;
    const client = this.client;
    if (client === null) return;
    const done = this.settling;
    if (done.length > 0) {
      this.settling = [];
      for (let i = 0; i < done.length; i++) client.settle(done[i]);
    }
    this.pump();
  }

  /**
   * Sends from the queue as much as the window holds. A round goes on past a refusal (0x97)
   * met in it, as a client's would: its answers come after it sent its window. The next round,
   * when the answers taken at once left room, after this call.
   */
  private pump(): void {
    if (!this.up || this.retryTimer !== null) return;
    let room = this.maxInflight - this.answering.length;
    // this.queue, not a copy of it: a send that fails puts the queue together again.
    while (this.queue.length > 0 && this.up && this.flows) {
      if (this.queue[0].qos > 0 && room-- <= 0) {
        if (this.answering.length < this.maxInflight) this.kick();
        return;
      }
      this.send(this.queue.shift() as OutPub);
    }
  }

  /** Puts messages back into the queue in their order of arrival (what waits stays in order). */
  private requeue(list: OutPub[]): void {
    if (list.length === 0) return;
    list.sort(bySeq);
    const q = this.queue;
    const merged: OutPub[] = [];
    let i = 0;
    let j = 0;
    while (i < list.length && j < q.length) merged.push(list[i].seq < q[j].seq ? list[i++] : q[j++]);
    while (i < list.length) merged.push(list[i++]);
    while (j < q.length) merged.push(q[j++]);
    this.queue = merged;
  }

  private retry(): void {
    this.retryTimer = null;
    const list = this.refused;
    this.refused = [];
    this.requeue(list);
    this.pump();
  }

  private drop(reason: string): void {
    const client = this.client;
    if (client === null) return;
    client.detach();
    this.client = null;
    this.gen++;
    const wasUp = this.up;
    this.up = false;
    this.flows = true;
    this.settling = [];
    // What waited for the broker's answer goes again on the next connection, in order (the
    // broker took it but its acknowledgement is lost with the connection: at least once).
    this.requeue(this.answering);
    this.answering = [];
    if (wasUp || !this.stopped) this.owner.localDown(reason);
    this.restartLater();
  }

  private restartLater(): void {
    if (this.stopped || this.restartTimer !== null) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.start();
    }, RESTART_MS);
    this.restartTimer.unref();
  }
}
