import { EventEmitter } from 'node:events';
import {
  type Properties,
  type PublishPacket,
  type QoS,
  type Subscription,
  validateTopicFilter,
  validateTopicName,
} from '@mqtt-edge/codec';
import { ConnackError } from '../core/errors.ts';
import type { ClosedEvent, ConnectedEvent, SessionEvent } from '../core/events.ts';
import { isSyncOutbox, MemoryOutbox } from '../core/memory-outbox.ts';
import type { SessionOptions } from '../core/options.ts';
import { toBytes } from '../core/options.ts';
import { type Outbox, OutboxFullError, type OutboxMessage, type PutPromise } from '../core/outbox.ts';
import { ClientSession } from '../core/session.ts';
import { type BackoffOptions, backoffDelay } from './backoff.ts';
import {
  checkServer,
  defaultPort,
  resolveTarget,
  type ServerAddress,
  type Target,
  type TransportOptions,
} from './target.ts';
import { openTransport, type Transport, type TransportOwner } from './transport.ts';

export interface ClientOptions extends Omit<SessionOptions, 'outbox'>, TransportOptions, BackoffOptions {
  /**
   * Where unacknowledged messages live; default a MemoryOutbox (the session's own). Any other
   * store (a DurableQueue) is the client's: it reads the entries the session asks for and feeds
   * them in, and acks them in the store as the session reports them done.
   */
  outbox?: Outbox;
  /** Reconnect after a lost connection; default true. */
  reconnect?: boolean;
  /** publish/subscribe while disconnected wait for the connection (default true) or reject. */
  queueWhileDisconnected?: boolean;
  /**
   * QoS 0 publishes while disconnected: queued in the outbox like QoS 1/2 (default true, and
   * bounded by the outbox) or rejected with a NOT_CONNECTED error (false).
   */
  queueQoS0?: boolean;
  /**
   * Failover: the brokers to try, in order. An attempt that does not reach CONNACK moves on to
   * the next (wrapping round); after a connection that was up, the next attempt goes to the same
   * broker again. Overrides host and port (protocol, TLS and path apply to all).
   */
  servers?: ServerAddress[];
  /**
   * Called before every connection attempt (the first included) for the broker to try; wins
   * over `servers`. For failover policies of one's own (a bridge's round_robin).
   */
  resolveServer?: () => ServerAddress;
  /**
   * ms for the transport's handshake (TCP, TLS, WebSocket upgrade) before CONNECT is sent;
   * default `connectTimeout`, which then times the CONNACK alone. A shorter one leaves an
   * address that does not even answer sooner than a server that is slow to accept a session.
   */
  handshakeTimeout?: number;
}

export interface PublishOptions {
  qos?: QoS;
  retain?: boolean;
  /** 5.0 properties (message expiry, content type, response topic, user properties, ...). */
  properties?: Properties;
}

export interface PublishResult {
  /** The packet id the flow used (undefined for QoS 0). */
  packetId: number | undefined;
  /** PUBACK / PUBCOMP reason code (5.0; 0 otherwise). */
  reasonCode: number;
  properties: Properties | undefined;
}

/**
 * The promise publish() returns. `packetId` is set before publish() returns when the PUBLISH
 * was written at once (connected, room in the send window, nothing queued ahead); a message
 * that waits in the outbox gets its id when it is sent, and the resolved result carries it.
 */
export type PublishPromise = Promise<PublishResult> & { packetId: number | undefined };

export interface SubscribeRequest {
  filter: string;
  qos?: QoS;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
}

export interface SubscribeResult {
  packetId: number;
  /** One per filter: the granted QoS (0..2) or a failure reason code (0x80 and up). */
  reasonCodes: number[];
  granted: Array<{ filter: string; qos: number }>;
  properties: Properties | undefined;
}

export interface UnsubscribeResult {
  packetId: number;
  reasonCodes: number[] | undefined;
  properties: Properties | undefined;
}

export interface EndOptions {
  /** 5.0 DISCONNECT reason code; default 0 (normal). 0x04 asks the server to publish the will. */
  reasonCode?: number;
  properties?: Properties;
  /** Close the socket without DISCONNECT. */
  force?: boolean;
}

const writeOutOf = (c: MqttClient): void => c.writeOut();
const onTimerOf = (c: MqttClient): void => c.onTimer();
const destroyTransportOf = (c: MqttClient): void => c.destroyTransport();
const pumpOf = (c: MqttClient): void => c.pumpNow();

const QOS0_WRITTEN: PublishPromise = Object.assign(
  Promise.resolve<PublishResult>({ packetId: undefined, reasonCode: 0, properties: undefined }),
  { packetId: undefined },
);

export class ClientError extends Error {
  override readonly name = 'ClientError';
  constructor(
    readonly code: 'NOT_CONNECTED' | 'CLIENT_ENDED',
    message: string,
  ) {
    super(message);
  }
}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

/**
 * The executor of every publish() promise: one shared function instead of a closure (and its
 * context) per message; it runs synchronously inside `new Promise`, so publish() takes the
 * capability from `captured` at once.
 */
let captured: Waiter<PublishResult> | null = null;
function captureWaiter(resolve: (r: PublishResult) => void, reject: (e: Error) => void): void {
  captured = { resolve, reject };
}

type RequestWaiter =
  | { kind: 'subscribe'; filters: string[]; resolve(v: SubscribeResult): void; reject(e: Error): void }
  | { kind: 'unsubscribe'; resolve(v: UnsubscribeResult): void; reject(e: Error): void };

interface MqttClientEvents {
  connect: [ConnectedEvent];
  /**
   * The socket, TLS or WebSocket error that ended a connection or an attempt (refused, reset,
   * certificate not trusted, handshake timeout). An attempt that failed before MQTT started has
   * no `close` event: this is where its reason is. Never thrown when unheard.
   */
  transportError: [Error];
  message: [topic: string, payload: Uint8Array, packet: PublishPacket];
  close: [ClosedEvent | undefined];
  error: [Error];
  reconnect: [];
  offline: [];
  end: [];
  /**
   * A message nobody awaits (put by enqueue(), or left in the outbox by an earlier client) left
   * the outbox: the server acknowledged it (QoS 1/2; `reasonCode` 0x80 and up is a refusal), it
   * was written (QoS 0), or the client refused to send it (`error`). Emitted only when heard.
   */
  settled: [seq: number, reasonCode: number, error: Error | undefined];
}

/**
 * The Node client: a ClientSession wired to a socket and one timer. Events as MQTT.js users know
 * them: connect, message, close, error, reconnect, offline, end.
 */
export class MqttClient extends EventEmitter<MqttClientEvents> implements TransportOwner {
  readonly session: ClientSession;
  /**
   * The outbox when it is not the session's own (a DurableQueue): read here and fed to the
   * session (feedOutbox), acked here on its `published` events. Null with a MemoryOutbox.
   */
  private readonly store: Outbox | null;
  private readonly target: Target;
  /** Index into opts.servers of the current attempt; -1 before the first. */
  private serverIndex = -1;
  /** The current attempt reached CONNACK (failover stays on that server). */
  private attemptConnected = false;
  /** The session dropped something the server refused (the bridge marker): retry at once. */
  private retryNow = false;
  private pumpScheduled = false;
  private transport: Transport | null = null;
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private attempts = 0;
  private ending = false;
  /** A refusal retrying will not cure: no more reconnects, pending requests fail with it. */
  private fatal: Error | null = null;
  /** end() completed or a fatal refusal: nothing reconnects until reconnect(). */
  private ended = false;
  private flushing = false;
  private flushAgain = false;
  private wasOnline = false;
  private readonly publishWaiters = new Map<number, Waiter<PublishResult>>();
  /** SUBSCRIBE / UNSUBSCRIBE by packet id (one map: ids are shared, and an idle client is small). */
  private requestWaiters: Map<number, RequestWaiter> | null = null;
  private endWaiters: Array<() => void> | null = null;
  /** reconnect() was called while end() was still closing the connection. */
  private reconnectAfterEnd = false;
  private writeScheduled = false;
  private lastTopic = '';
  /** @internal the handshake took too long */
  destroyTransport(): void {
    this.handshakeTimer = null;
    const err = new Error(
      `no connection to ${this.target.host}:${this.target.port} within ${this.handshakeMs()} ms`,
    ) as Error & { code: string };
    err.code = 'HANDSHAKE_TIMEOUT';
    this.transport?.destroy(err);
  }

  /** @internal timer callback (shared, with the client as argument: no closure per client). */
  onTimer(): void {
    this.timer = null;
    this.session.tick(Date.now());
    this.flush();
  }
  /** @internal writes what the session has queued (also called through setImmediate). */
  writeOut(): void {
    this.writeScheduled = false;
    const out = this.session.takeOutput();
    if (out !== null) this.transport?.write(out);
  }

  constructor(private readonly opts: ClientOptions & { fromUrl?: Partial<Target> }) {
    super();
    const given = opts.outbox;
    const own = given === undefined || isSyncOutbox(given) ? given : null;
    this.store = own === null ? given! : null;
    this.session = new ClientSession({ ...opts, outbox: own });
    const outbox = this.session.outbox;
    if (outbox instanceof MemoryOutbox && outbox.onDrop === null)
      outbox.onDrop = (seq) => {
        const w = this.publishWaiters.get(seq);
        if (w === undefined) return;
        this.publishWaiters.delete(seq);
        w.reject(new OutboxFullError(`message ${seq} dropped by the outbox's drop-oldest bound`));
      };
    this.target = resolveTarget(opts, opts.fromUrl ?? {});
    if (opts.servers !== undefined) {
      if (opts.servers.length === 0) throw new RangeError('servers must list at least one broker');
      for (const s of opts.servers) checkServer(s);
    }
    this.openTransport(true);
  }

  get connected(): boolean {
    return this.session.state === 'connected';
  }

  get outbox(): Outbox {
    return this.store ?? this.session.outbox!;
  }

  /** The broker of the current (or last) connection attempt. */
  get server(): { host: string; port: number } {
    return { host: this.target.host, port: this.target.port };
  }

  // ---- commands --------------------------------------------------------------------------

  publish(topic: string, payload: string | Uint8Array, options: PublishOptions = {}): PublishPromise {
    if ((options.qos === undefined || options.qos === 0) && this.connected)
      return this.publishQoS0Now(topic, payload, options);
    const promise = new Promise<PublishResult>(captureWaiter) as PublishPromise;
    const waiter = captured!;
    captured = null;
    const { resolve, reject } = waiter;
    promise.packetId = undefined;
    try {
      const message = this.toMessage(topic, payload, options);
      const qos = message.qos;
      this.checkCanQueue(qos);
      const store = this.store;
      if (store === null || (qos === 0 && this.connected)) {
        const ticket = this.session.publish(message, Date.now());
        if (ticket.error !== undefined) reject(ticket.error);
        else if (ticket.seq === undefined)
          resolve({ packetId: undefined, reasonCode: 0, properties: undefined });
        else this.publishWaiters.set(ticket.seq, waiter);
        promise.packetId = ticket.packetId;
        this.flush();
      } else {
        const put = store.put(message);
        const early = (put as PutPromise).seq;
        if (early !== undefined) {
          // The store may hand the entry out before put() resolves (readBeforeCommit): its
          // acknowledgement can come first, so the waiter is in place now. Sent at once.
          this.publishWaiters.set(early, waiter);
          this.schedulePump();
        }
        put.then(
          (seq) => {
            if (early === undefined) this.publishWaiters.set(seq, waiter);
            this.session.outboxChanged(Date.now());
            this.flush();
            promise.packetId = this.session.packetIdOf(seq);
          },
          (err: Error) => {
            // stored nothing (a put that failed after its entry was sent and acknowledged has
            // already resolved the waiter: the broker took it, the promise keeps that)
            if (early !== undefined && this.publishWaiters.get(early) === waiter)
              this.publishWaiters.delete(early);
            reject(err);
          },
        );
      }
    } catch (err) {
      reject(err as Error);
    }
    return promise;
  }

  /** Validates and builds what publish() and enqueue() hand to the outbox; throws on bad input. */
  private toMessage(topic: string, payload: string | Uint8Array, options: PublishOptions): OutboxMessage {
    // A publisher mostly repeats its topics: validate a new one only.
    if (topic !== this.lastTopic) {
      validateTopicName(topic);
      this.lastTopic = topic;
    }
    const qos = options.qos ?? 0;
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new RangeError('qos must be 0, 1 or 2');
    const message: OutboxMessage = { topic, payload: toBytes(payload), qos, retain: options.retain ?? false };
    if (options.properties !== undefined) message.properties = options.properties;
    return message;
  }

  /**
   * Puts a message into the outbox and resolves with its outbox sequence once the outbox holds
   * it (a DurableQueue: on disk). Works in every state, also while no connection is up or coming
   * (reconnect false, after end()): the outbox outlives connections. The message leaves when
   * connected, and the server's acknowledgement acks it in the outbox; nothing else reports its
   * outcome. For store-and-forward callers that answer their own sender once the message is
   * stored (the broker's bridges); publish() is the call that reports delivery.
   */
  enqueue(topic: string, payload: string | Uint8Array, options: PublishOptions = {}): Promise<number> {
    try {
      const message = this.toMessage(topic, payload, options);
      const put = this.outbox.put(message);
      // a store that reads before the commit (the seq on the promise says so) sends it now
      if ((put as PutPromise).seq !== undefined) this.schedulePump();
      return put.then((seq) => {
        this.schedulePump();
        return seq;
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * With `manualAcks`: acknowledges an incoming QoS 1/2 message (the packet of its message
   * event) once the application has taken care of it; acknowledgements leave in the order the
   * messages were received. No-op otherwise, for QoS 0, and for a message whose connection ended
   * (the server sends it again).
   */
  ack(packet: PublishPacket): void {
    this.session.ack(packet, Date.now());
    this.flush();
  }

  /**
   * Tells the client that messages were put into its outbox directly (outbox.put(), not
   * publish() or enqueue()) and are now stored: while connected it reads the outbox again (once
   * per event-loop turn). Without this, a message whose put() resolves after the client's last
   * read waits for the next acknowledgement or reconnection to be sent.
   */
  outboxChanged(): void {
    this.schedulePump();
  }

  /** One outbox read per event-loop turn however many enqueue() calls resolved in it. */
  private schedulePump(): void {
    if (this.pumpScheduled || !this.connected) return;
    this.pumpScheduled = true;
    setImmediate(pumpOf, this);
  }

  /** @internal setImmediate callback of schedulePump. */
  pumpNow(): void {
    this.pumpScheduled = false;
    if (!this.connected) return;
    this.session.outboxChanged(Date.now());
    this.flush();
  }

  /**
   * QoS 0 while connected is written at once: every such call shares one resolved promise (its
   * packetId is always undefined), which spares a flood of QoS 0 an allocation per message.
   */
  private publishQoS0Now(
    topic: string,
    payload: string | Uint8Array,
    options: PublishOptions,
  ): PublishPromise {
    try {
      if (topic !== this.lastTopic) {
        validateTopicName(topic);
        this.lastTopic = topic;
      }
      const message: OutboxMessage = {
        topic,
        payload: toBytes(payload),
        qos: 0,
        retain: options.retain ?? false,
      };
      if (options.properties !== undefined) message.properties = options.properties;
      const ticket = this.session.publish(message, Date.now());
      this.flush();
      if (ticket.error !== undefined) throw ticket.error;
      return QOS0_WRITTEN;
    } catch (err) {
      return Object.assign(Promise.reject(err as Error), { packetId: undefined });
    }
  }

  subscribe(
    request: string | SubscribeRequest | Array<string | SubscribeRequest>,
    options: { qos?: QoS; properties?: Properties } = {},
  ): Promise<SubscribeResult> {
    return new Promise<SubscribeResult>((resolve, reject) => {
      const list = Array.isArray(request) ? request : [request];
      const subs: Subscription[] = list.map((r) => {
        const s: Subscription =
          typeof r === 'string'
            ? { topicFilter: r, qos: options.qos ?? 0 }
            : { topicFilter: r.filter, qos: r.qos ?? options.qos ?? 0 };
        if (typeof r !== 'string') {
          if (r.noLocal !== undefined) s.noLocal = r.noLocal;
          if (r.retainAsPublished !== undefined) s.retainAsPublished = r.retainAsPublished;
          if (r.retainHandling !== undefined) s.retainHandling = r.retainHandling;
        }
        validateTopicFilter(s.topicFilter);
        return s;
      });
      this.checkCanQueue(1);
      const id = this.session.subscribe(subs, options.properties, Date.now());
      (this.requestWaiters ??= new Map()).set(id, {
        kind: 'subscribe',
        filters: subs.map((s) => s.topicFilter),
        resolve,
        reject,
      });
      this.flush();
    });
  }

  unsubscribe(
    filters: string | string[],
    options: { properties?: Properties } = {},
  ): Promise<UnsubscribeResult> {
    return new Promise<UnsubscribeResult>((resolve, reject) => {
      const list = Array.isArray(filters) ? filters : [filters];
      for (const f of list) validateTopicFilter(f);
      this.checkCanQueue(1);
      const id = this.session.unsubscribe(list, options.properties, Date.now());
      (this.requestWaiters ??= new Map()).set(id, { kind: 'unsubscribe', resolve, reject });
      this.flush();
    });
  }

  /**
   * Graceful close: DISCONNECT (5.0 with the reason code), no reconnect. Pending promises reject
   * with CLIENT_ENDED; messages still in the outbox stay there (a durable one keeps them).
   */
  end(options: EndOptions = {}): Promise<void> {
    return new Promise<void>((resolve) => {
      this.ending = true;
      if (this.reconnectTimer !== null) {
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
      }
      if (this.transport === null) {
        this.finishEnd();
        resolve();
        return;
      }
      (this.endWaiters ??= []).push(resolve);
      if (options.force) this.transport.destroy();
      else {
        this.session.disconnect(Date.now(), options.reasonCode ?? 0, options.properties);
        this.flush();
        this.transport?.end();
      }
    });
  }

  /**
   * Drop the current connection (if any) and connect again now. After end() it brings the
   * client back (as MQTT.js does); during an end() still in progress it waits for the close.
   */
  reconnect(): void {
    if (this.ending) {
      if (!this.ended) {
        this.reconnectAfterEnd = true;
        return;
      }
      this.ending = false;
    }
    this.fatal = null;
    this.ended = false;
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    if (this.transport !== null) {
      this.attempts = 0;
      this.transport.destroy();
    } else this.openTransport();
  }

  // ---- wiring ----------------------------------------------------------------------------

  private checkCanQueue(qos: number): void {
    if (this.connected) return;
    if (this.ended) throw this.fatal ?? new ClientError('CLIENT_ENDED', 'client ended');
    if (this.opts.queueWhileDisconnected === false || (qos === 0 && this.opts.queueQoS0 === false))
      throw new ClientError('NOT_CONNECTED', 'not connected (queueWhileDisconnected is off)');
    if (this.ending) throw new ClientError('CLIENT_ENDED', 'client ended');
  }

  private openTransport(first = false): void {
    this.pickServer(first);
    // The session times the CONNACK; this times the TCP / TLS / WebSocket handshake before it.
    this.handshakeTimer = setTimeout(destroyTransportOf, this.handshakeMs(), this);
    this.transport = openTransport(this.opts, this.target, this);
  }

  private handshakeMs(): number {
    return this.opts.handshakeTimeout ?? this.session.options.connectTimeout;
  }

  private pickServer(first: boolean): void {
    const o = this.opts;
    let s: ServerAddress | undefined;
    if (o.resolveServer !== undefined) {
      try {
        s = o.resolveServer();
        checkServer(s);
      } catch (err) {
        // From the constructor it throws to the caller; later, a broken hook must not crash a
        // reconnect timer: the attempt goes where the last one went.
        if (first) throw err;
        s = undefined;
        if (this.listenerCount('error') > 0) this.emit('error', err as Error);
      }
    } else if (o.servers !== undefined) {
      if (this.serverIndex < 0 || !this.attemptConnected)
        this.serverIndex = (this.serverIndex + 1) % o.servers.length;
      s = o.servers[this.serverIndex];
    }
    this.attemptConnected = false;
    if (s === undefined) return;
    this.target.host = s.host;
    this.target.port = s.port ?? defaultPort(this.target.protocol);
  }

  private handshakeDone(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  /** @internal TransportOwner */
  transportOpen(t: Transport): void {
    if (this.transport !== t) return;
    this.handshakeDone();
    this.session.open(Date.now());
    this.flush();
  }

  /** @internal TransportOwner */
  transportData(t: Transport, chunk: Uint8Array): void {
    if (this.transport !== t) return;
    this.session.receive(chunk, Date.now());
    this.flush();
  }

  /** @internal TransportOwner */
  transportClose(t: Transport, error: Error | undefined): void {
    if (this.transport !== t) return;
    this.handshakeDone();
    this.transport = null;
    this.session.connectionLost(Date.now(), error);
    this.flush();
    if (error !== undefined) this.emit('transportError', error);
    this.afterClose();
  }

  private afterClose(): void {
    this.clearTimer();
    if (this.wasOnline) {
      this.wasOnline = false;
      this.emit('offline');
    }
    if (this.ending || this.fatal !== null || this.opts.reconnect === false) {
      this.finishEnd(this.fatal);
      return;
    }
    const delay = this.retryNow ? 0 : backoffDelay(this.attempts++, this.opts);
    this.retryNow = false;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.ending) return;
      this.emit('reconnect');
      this.openTransport();
    }, delay);
  }

  private finishEnd(cause: Error | null = null): void {
    const err = cause ?? new ClientError('CLIENT_ENDED', 'client ended before the request completed');
    for (const w of this.publishWaiters.values()) w.reject(err);
    if (this.requestWaiters !== null) for (const w of this.requestWaiters.values()) w.reject(err);
    this.publishWaiters.clear();
    this.requestWaiters = null;
    this.session.cancelPendingRequests();
    this.ended = true;
    const waiters = this.endWaiters ?? [];
    this.endWaiters = null;
    this.emit('end');
    for (const w of waiters) w();
    if (this.reconnectAfterEnd) {
      this.reconnectAfterEnd = false;
      this.reconnect();
    }
  }

  private flush(): void {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    try {
      do {
        this.flushAgain = false;
        if (this.store !== null) this.feed(this.store);
        // Bytes leave once per event-loop turn: a burst of publish() calls, or the acks of
        // several received chunks, become one write.
        if (!this.writeScheduled && this.session.outputLength > 0) {
          this.writeScheduled = true;
          setImmediate(writeOutOf, this);
        }
        if (this.session.eventCount > 0) {
          const events = this.session.takeEvents();
          for (let i = 0; i < events.length; i++) this.dispatch(events[i]);
        }
      } while (this.flushAgain);
    } finally {
      this.flushing = false;
    }
    this.armTimer();
  }

  /**
   * What the session wants from the store, read and handed in, until it wants no more: after a
   * CONNACK the window fills in batches, as when the session read the store itself.
   */
  private feed(store: Outbox): void {
    const s = this.session;
    let n = s.outboxWant;
    if (n === 0) return;
    const now = Date.now();
    for (; n > 0; n = s.outboxWant) s.feedOutbox(store.read(s.outboxCursor, n), now);
  }

  private dispatch(e: SessionEvent): void {
    switch (e.type) {
      case 'message':
        this.emit('message', e.packet.topic, e.packet.payload, e.packet);
        return;
      case 'published': {
        if (e.seq === undefined) return;
        // The entry left the session: out of the store (the session acks its own outbox itself).
        this.store?.ack(e.seq);
        const w = this.publishWaiters.get(e.seq);
        if (w === undefined) {
          if (this.listenerCount('settled') > 0) this.emit('settled', e.seq, e.reasonCode, e.error);
          return;
        }
        this.publishWaiters.delete(e.seq);
        if (e.error !== undefined) w.reject(e.error);
        else w.resolve({ packetId: e.packetId, reasonCode: e.reasonCode, properties: e.properties });
        return;
      }
      case 'suback': {
        const w = this.requestWaiters?.get(e.packetId);
        if (w?.kind !== 'subscribe') return;
        this.requestWaiters!.delete(e.packetId);
        w.resolve({
          packetId: e.packetId,
          reasonCodes: e.reasonCodes,
          granted: e.reasonCodes.map((qos, i) => ({ filter: w.filters[i], qos })),
          properties: e.properties,
        });
        return;
      }
      case 'unsuback': {
        const w = this.requestWaiters?.get(e.packetId);
        if (w?.kind !== 'unsubscribe') return;
        this.requestWaiters!.delete(e.packetId);
        w.resolve({ packetId: e.packetId, reasonCodes: e.reasonCodes, properties: e.properties });
        return;
      }
      case 'connected':
        this.attempts = 0;
        this.attemptConnected = true;
        this.wasOnline = true;
        this.emit('connect', e);
        return;
      case 'closed': {
        // Write what the session had to say (a DISCONNECT) before closing.
        this.writeOut();
        if (e.retryNow === true) this.retryNow = true;
        else if (e.error instanceof ConnackError && !e.error.retryable) this.fatal = e.error;
        if (
          e.by === 'error' &&
          e.error !== undefined &&
          (e.error as { code?: string }).code?.endsWith('TIMEOUT')
        )
          this.transport?.destroy();
        else this.transport?.end();
        this.emit('close', e);
        return;
      }
      case 'error':
        // EventEmitter throws an unheard 'error'; a client must not crash its process for that.
        if (this.listenerCount('error') > 0) this.emit('error', e.error);
        return;
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private armTimer(): void {
    const deadline = this.session.nextDeadline();
    if (deadline === undefined) {
      this.clearTimer();
      return;
    }
    // An earlier timer still fires in time: tick() re-arms it then. Saves a setTimeout per ack.
    if (this.timer !== null && this.timerAt <= deadline) return;
    this.clearTimer();
    this.timerAt = deadline;
    // Long delays are rounded up to whole seconds: Node keeps one timer list per distinct
    // duration, so a thousand idle clients with the same keepalive share a list instead of
    // holding one each. Firing up to a second late is fine: tick() acts on the real time.
    const delay = Math.max(0, deadline - Date.now());
    this.timer = setTimeout(onTimerOf, delay < 2000 ? delay : Math.ceil(delay / 1000) * 1000, this);
  }
}
