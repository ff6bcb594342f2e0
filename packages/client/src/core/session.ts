import {
  type ConnackPacket,
  type ConnectPacket,
  MqttError,
  type Packet,
  PacketParser,
  PacketWriter,
  type Properties,
  type PublishPacket,
  ReasonCode,
  type Subscription,
} from '@mqtt-edge/codec';
import { IdMap, StringMap } from './collections.ts';
import { ConnackError, RequestError } from './errors.ts';
import type { ClosedEvent, SessionEvent } from './events.ts';
import { IncomingAcks } from './incoming-acks.ts';
import type { SyncOutbox } from './memory-outbox.ts';
import { type ResolvedOptions, resolveOptions, type SessionOptions } from './options.ts';
import type { OutboxEntry, OutboxMessage } from './outbox.ts';
import { OutputBuffer } from './output.ts';
import { allocatePacketId } from './packet-ids.ts';

export type SessionState = 'idle' | 'connecting' | 'connected' | 'closing';

interface PendingRequest {
  packetId: number;
  kind: 'subscribe' | 'unsubscribe';
  subscriptions: Subscription[];
  filters: string[];
  properties: Properties | undefined;
  internal: boolean;
}

/** What publish() did with a message. */
export interface PublishTicket {
  /** Outbox sequence; undefined for a QoS 0 message written at once. */
  seq: number | undefined;
  /** Set when the PUBLISH was written in this call (QoS 1/2). */
  packetId: number | undefined;
  /** True when the PUBLISH was written in this call. */
  sent: boolean;
  /** A QoS 0 message refused at once (too large, retain unsupported); also sent as an event. */
  error: RequestError | undefined;
}

/** Most outbox entries asked for at once (the send window permitting). */
const OUTBOX_READ_BATCH = 256;

/**
 * One encoder for every session: encode() returns a view that is copied into the session's
 * output at once, before any other encode can run, so sharing is safe and saves each idle
 * client its own buffer.
 */
const writer = new PacketWriter(512);

/**
 * Sets Mosquitto's bridge bit (0x80) on the protocol level of an encoded 3.1 / 3.1.1 CONNECT:
 * the level follows the fixed header and the length-prefixed protocol name. Anything that is
 * not such a CONNECT is left alone.
 */
export function setBridgeBit(bytes: Uint8Array): boolean {
  if (bytes.length < 4 || bytes[0] !== 0x10) return false;
  let i = 1;
  while (i < 5 && i < bytes.length && (bytes[i] & 0x80) !== 0) i++;
  i++;
  if (i + 2 > bytes.length) return false;
  const level = i + 2 + ((bytes[i] << 8) | bytes[i + 1]);
  if (level >= bytes.length || (bytes[level] !== 3 && bytes[level] !== 4)) return false;
  bytes[level] |= 0x80;
  return true;
}

function protocolError(
  code: string,
  message: string,
  reasonCode: number = ReasonCode.ProtocolError,
): MqttError {
  return new MqttError(code, message, reasonCode);
}

/**
 * The MQTT client as a state machine without I/O (h11 / quinn-proto style). Feed it received
 * bytes, the time and commands; take from it the bytes to write (takeOutput), the events
 * (takeEvents) and when to call tick() next (nextDeadline). Time is milliseconds, any origin.
 *
 * Session state (in-flight publishes, packet ids, incoming QoS 2 ids, pending subscribes) lives
 * across connections; connection state (parser, aliases, keepalive, server limits) does not.
 *
 * The outbox is input too, as datagrams are to quinn-proto's endpoint. The session's own
 * MemoryOutbox (the default) it reads and acks itself: that is memory. Any other store (the Node
 * client's DurableQueue, which reads from disk) is the shell's, `outbox: null` here: the session
 * says how many entries it can send now and after which seq (outboxWant, outboxCursor), the shell
 * reads them and hands them in (feedOutbox), and each entry that leaves the session (acknowledged,
 * QoS 0 written, refused) is a `published` event with its seq, which the shell acks in the store.
 */
export class ClientSession {
  readonly options: ResolvedOptions;
  private _state: SessionState = 'idle';
  private _clientId: string;
  private parser: PacketParser | null = null;
  private readonly out = new OutputBuffer();
  private events: SessionEvent[] = [];
  private nextId = 1;
  /**
   * Outgoing QoS 1/2 publishes between PUBLISH and PUBACK / PUBCOMP, by packet id: the outbox
   * entry itself (no record per message; the outbox holds the entry until its ack anyway).
   */
  private readonly inflight = new IdMap<OutboxEntry>();
  /** QoS 2 ids after PUBREC: only PUBREL / PUBCOMP remain. Created on first use. */
  private released: IdMap<true> | null = null;
  // Created on first use, like pending and subscriptions: an idle publisher holds none of them.
  private incomingQos2: IdMap<true> | null = null;
  /** manualAcks: acknowledgements the application still owes, in order. */
  private readonly acksOwed: IncomingAcks | null;
  private pending: IdMap<PendingRequest> | null = null;
  private subscriptions: StringMap<Subscription> | null = null;
  /** The highest outbox seq taken: entries after it are what the session reads next. */
  private readCursor = 0;
  private everConnected = false;
  private now = 0;
  // Connection scope.
  private lastSent = 0;
  private lastReceived = 0;
  private pingOutstanding = false;
  private connectDeadline = 0;
  private keepaliveMs = 0;
  private sendQuota = 0;
  private serverMaxPacket = Number.POSITIVE_INFINITY;
  private serverMaxQoS = 2;
  private serverRetain = true;
  private aliasesIn: IdMap<string> | null = null;
  private aliasesOut: StringMap<number> | null = null;
  private aliasOutMax = 0;
  /**
   * The outbox may hold entries after readCursor: set by CONNACK, a completed flow (room in the
   * window) and outboxChanged(); cleared when a read brings fewer entries than asked for.
   */
  private wantOutbox = false;
  private encodeError: MqttError | null = null;
  /** The last outbox entry sent and its packet id: publish() reports it without a lookup. */
  private lastSentSeq = -1;
  private lastSentId = 0;
  /** The next CONNECT carries Mosquitto's bridge bit (bridgeMode, until a server refuses it). */
  private bridgeBit: boolean;
  /** The CONNECT of the current connection carried it. */
  private bridgeBitSent = false;
  /** The clean flag of the next CONNECT (false after the first CONNACK with clean: 'first'). */
  private cleanNext: boolean;

  constructor(options: SessionOptions = {}) {
    this.options = resolveOptions(options);
    this._clientId = this.options.clientId;
    this.bridgeBit = this.options.bridgeMode && this.options.protocolVersion !== 5;
    this.cleanNext = this.options.clean;
    this.acksOwed = this.options.manualAcks ? new IncomingAcks() : null;
  }

  /** Whether the next CONNECT is marked as a Mosquitto bridge's (false once a server refused it). */
  get bridgeMarker(): boolean {
    return this.bridgeBit;
  }

  /**
   * Marks the next CONNECT (or not) as a bridge's, for a caller that remembers per server which
   * ones refused it; only with bridgeMode, never over 5.0.
   */
  set bridgeMarker(on: boolean) {
    this.bridgeBit = on && this.options.bridgeMode && this.options.protocolVersion !== 5;
  }

  get state(): SessionState {
    return this._state;
  }
  get clientId(): string {
    return this._clientId;
  }
  /** The session's own in-memory outbox; null when the store is the shell's (fed in). */
  get outbox(): SyncOutbox | null {
    return this.options.outbox;
  }
  /** Outgoing QoS 1/2 publishes awaiting PUBACK / PUBREC / PUBCOMP. */
  get inflightCount(): number {
    return this.inflight.size;
  }
  /** The packet id of an outbox entry in flight, if it is. */
  packetIdOf(seq: number): number | undefined {
    // A scan of at most the send window; only asked once per asynchronous put.
    return this.inflight.find((e) => e.seq === seq);
  }

  /**
   * Gives up on an outgoing message in flight, for a caller that knows the server will never
   * take it (it closes the connection on it every time): the message leaves the in-flight table
   * and the session's own outbox (a store the shell feeds is the caller's to ack), its packet id
   * is free, it is not sent again. False when it is not in flight.
   */
  giveUp(seq: number): boolean {
    const id = this.inflight.find((e) => e.seq === seq);
    if (id === undefined) return false;
    this.inflight.delete(id);
    this.released?.delete(id);
    // Out of the session's own outbox; a store the shell owns is the caller's to ack.
    this.settle(seq);
    this.wantOutbox = true;
    return true;
  }

  // ---- outputs ---------------------------------------------------------------------------

  /** Bytes waiting in takeOutput(). */
  get outputLength(): number {
    return this.out.length;
  }

  takeOutput(): Uint8Array | null {
    return this.out.take();
  }

  /** Events waiting in takeEvents(). */
  get eventCount(): number {
    return this.events.length;
  }

  takeEvents(): SessionEvent[] {
    if (this.events.length === 0) return [];
    const e = this.events;
    this.events = [];
    return e;
  }

  /** When tick() must next be called, or undefined when nothing is timed. */
  nextDeadline(): number | undefined {
    if (this._state === 'connecting') return this.connectDeadline;
    if (this._state !== 'connected' || this.keepaliveMs === 0) return undefined;
    const dead = this.lastReceived + this.keepaliveMs * 1.5;
    if (this.pingOutstanding) return dead;
    return Math.min(Math.min(this.lastSent, this.lastReceived) + this.keepaliveMs, dead);
  }

  // ---- inputs ----------------------------------------------------------------------------

  /** The transport is open: write CONNECT. */
  open(now: number): void {
    if (this._state !== 'idle') throw new Error(`open() in state ${this._state}`);
    this.now = now;
    const o = this.options;
    this.parser = new PacketParser({
      protocolVersion: o.protocolVersion,
      maxPacketSize: o.maximumPacketSize,
    });
    this.out.clear();
    this.lastSent = now;
    this.lastReceived = now;
    this.pingOutstanding = false;
    this.keepaliveMs = o.keepalive * 1000;
    this.sendQuota = o.maxInflight;
    this.serverMaxPacket = Number.POSITIVE_INFINITY;
    this.serverMaxQoS = 2;
    this.serverRetain = true;
    this.aliasesIn = null;
    this.aliasesOut = null;
    this.aliasOutMax = 0;
    this.connectDeadline = now + o.connectTimeout;
    this._state = 'connecting';
    const connect: ConnectPacket = {
      type: 'connect',
      protocolVersion: o.protocolVersion,
      clientId: this._clientId,
      clean: this.cleanNext,
      keepalive: o.keepalive,
    };
    if (o.username !== undefined) connect.username = o.username;
    if (o.password !== undefined) connect.password = o.password;
    if (o.will !== undefined) connect.will = o.will;
    if (o.protocolVersion === 5) {
      const p: Properties = { ...o.connectProperties };
      if (o.sessionExpiryInterval !== undefined) p.sessionExpiryInterval = o.sessionExpiryInterval;
      if (o.receiveMaximum !== 65535) p.receiveMaximum = o.receiveMaximum;
      if (o.maximumPacketSize !== 268435460) p.maximumPacketSize = o.maximumPacketSize;
      if (o.topicAliasMaximum > 0) p.topicAliasMaximum = o.topicAliasMaximum;
      connect.properties = p;
    }
    this.bridgeBitSent = this.bridgeBit;
    if (!this.bridgeBit) {
      this.write(connect);
      return;
    }
    // The shared writer's view is ours until the next encode: mark it before it is copied out.
    const bytes = writer.encode(connect, o.protocolVersion);
    setBridgeBit(bytes);
    this.out.push(bytes);
  }

  /** Bytes from the transport. */
  receive(bytes: Uint8Array, now: number): void {
    if (this._state !== 'connecting' && this._state !== 'connected') return;
    this.now = now;
    this.lastReceived = now;
    try {
      this.parser!.push(bytes, (p) => this.handle(p));
    } catch (err) {
      this.fail(
        err instanceof MqttError
          ? err
          : new MqttError('INTERNAL', `client error: ${String(err)}`, ReasonCode.ImplementationSpecificError),
        true,
      );
    }
    if (this.wantOutbox && this.options.outbox !== null) this.serveOwn();
  }

  /** Timers: call at or after nextDeadline(). */
  tick(now: number): void {
    this.now = now;
    if (this._state === 'connecting') {
      if (now >= this.connectDeadline)
        this.fail(
          new MqttError(
            'CONNECT_TIMEOUT',
            `no CONNACK within ${this.options.connectTimeout} ms`,
            ReasonCode.UnspecifiedError,
          ),
          false,
        );
      return;
    }
    if (this._state !== 'connected' || this.keepaliveMs === 0) return;
    if (now >= this.lastReceived + this.keepaliveMs * 1.5) {
      this.fail(
        new MqttError(
          'KEEPALIVE_TIMEOUT',
          `nothing received for ${(now - this.lastReceived) / 1000} s (keepalive ${this.keepaliveMs / 1000} s)`,
          ReasonCode.KeepAliveTimeout,
        ),
        false,
      );
      return;
    }
    if (!this.pingOutstanding && now >= Math.min(this.lastSent, this.lastReceived) + this.keepaliveMs) {
      this.pingOutstanding = true;
      this.write({ type: 'pingreq' });
    }
  }

  /** The transport closed (or failed). Session state is kept for the next open(). */
  connectionLost(now: number, error?: Error): void {
    this.now = now;
    if (this._state === 'connecting' || this._state === 'connected') {
      this.closed({
        type: 'closed',
        by: 'transport',
        reasonCode: ReasonCode.UnspecifiedError,
        reasonString: undefined,
        error: error ?? new Error('connection lost'),
      });
    }
    this._state = 'idle';
    this.parser = null;
    this.out.clear();
  }

  // ---- commands --------------------------------------------------------------------------

  /**
   * Publish. QoS 0 while connected is written at once and bypasses the outbox; everything
   * else goes into the session's own outbox (putSync) and out as the send window allows. With
   * `outbox: null` the store is the shell's: put the message there, then outboxChanged().
   * Throws OutboxFullError under a reject-new bound.
   */
  publish(message: OutboxMessage, now: number): PublishTicket {
    this.now = now;
    if (message.qos === 0 && this._state === 'connected') {
      const error = this.sendQoS0(message, undefined);
      return { seq: undefined, packetId: undefined, sent: error === undefined, error };
    }
    const outbox = this.options.outbox;
    if (outbox === null)
      throw new TypeError(
        "the outbox is the shell's (outbox: null): put the message into it, then outboxChanged()",
      );
    const seq = outbox.putSync(message);
    this.wantOutbox = true;
    this.serveOwn();
    const packetId = this.lastSentSeq === seq ? this.lastSentId : undefined;
    return { seq, packetId, sent: packetId !== undefined, error: undefined };
  }

  /**
   * The outbox holds entries the session has not seen (put outside publish()): its own outbox is
   * read at once; a shell's store is asked for (outboxWant) until a read comes back short.
   */
  outboxChanged(now: number): void {
    this.now = now;
    this.wantOutbox = true;
    if (this.options.outbox !== null) this.serveOwn();
  }

  /** @deprecated outboxChanged(now), its new name. */
  pump(now: number): void {
    this.outboxChanged(now);
  }

  /**
   * How many outbox entries the session would send now: 0 when nothing is wanted (not connected,
   * window full, the store said it has no more). Always 0 with the session's own outbox. The shell
   * reads up to this many with seq > outboxCursor, in seq order, and hands them to feedOutbox().
   */
  get outboxWant(): number {
    return this.options.outbox === null ? this.wanted() : 0;
  }

  /** The seq the next entries must follow (the last one taken; 0 before any). */
  get outboxCursor(): number {
    return this.readCursor;
  }

  /**
   * Outbox entries from the shell's store (outbox: null), read after outboxCursor as outboxWant
   * asked: sent as the window allows. Fewer than asked tells the session the store has no more
   * for now; it asks again after outboxChanged(), a completed flow or a new connection. Entries at
   * or before the cursor are skipped; entries past the window are left for the next read.
   */
  feedOutbox(entries: readonly OutboxEntry[], now: number): void {
    if (this.options.outbox !== null) throw new TypeError('feedOutbox() is for a session with outbox: null');
    this.now = now;
    const asked = this.wanted();
    if (asked > 0) this.feed(entries, asked);
  }

  private wanted(): number {
    if (!this.wantOutbox || this._state !== 'connected') return 0;
    const free = this.sendQuota - this.inflight.size;
    return free <= 0 ? 0 : free < OUTBOX_READ_BATCH ? free : OUTBOX_READ_BATCH;
  }

  /** The session's own outbox is memory: read it here, as a shell reads its store. */
  private serveOwn(): void {
    const own = this.options.outbox!;
    for (let n = this.wanted(); n > 0; n = this.wanted()) this.feed(own.read(this.readCursor, n), n);
  }

  private feed(entries: readonly OutboxEntry[], asked: number): void {
    // Slots left in the send window: QoS 0 takes none, a refused entry is counted anyway (the
    // rest then waits for the next read, as the window says).
    let room = this.sendQuota - this.inflight.size;
    let taken = 0;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      if (e.seq <= this.readCursor) continue;
      if (e.message.qos !== 0 && room-- <= 0) return;
      this.readCursor = e.seq;
      taken++;
      this.sendEntry(e);
      if (this._state !== 'connected') return;
    }
    // Short, or nothing new (a store that repeats itself must not make the shell loop).
    if (entries.length < asked || taken === 0) this.wantOutbox = false;
  }

  /** An outbox entry left the session; its `published` event tells a shell's store. */
  private settle(seq: number): void {
    const own = this.options.outbox;
    if (own !== null) own.ack(seq);
  }

  /** SUBSCRIBE now, or when connected. Returns the packet id the suback event will carry. */
  subscribe(subscriptions: Subscription[], properties: Properties | undefined, now: number): number {
    this.now = now;
    if (subscriptions.length === 0) throw new RangeError('subscribe needs at least one filter');
    const req: PendingRequest = {
      packetId: this.allocateId(),
      kind: 'subscribe',
      subscriptions,
      filters: [],
      properties,
      internal: false,
    };
    this.register(req);
    return req.packetId;
  }

  /** UNSUBSCRIBE now, or when connected. Returns the packet id the unsuback event will carry. */
  unsubscribe(filters: string[], properties: Properties | undefined, now: number): number {
    this.now = now;
    if (filters.length === 0) throw new RangeError('unsubscribe needs at least one filter');
    const req: PendingRequest = {
      packetId: this.allocateId(),
      kind: 'unsubscribe',
      subscriptions: [],
      filters,
      properties,
      internal: false,
    };
    this.register(req);
    return req.packetId;
  }

  /** Graceful close: DISCONNECT (5.0: with the reason code), then the connection closes. */
  disconnect(now: number, reasonCode = 0, properties?: Properties): void {
    this.now = now;
    if (this._state === 'connected') {
      if (this.options.protocolVersion === 5) this.write({ type: 'disconnect', reasonCode, properties });
      else this.write({ type: 'disconnect' });
    }
    if (this._state === 'connected' || this._state === 'connecting')
      this.closed({ type: 'closed', by: 'client', reasonCode, reasonString: undefined, error: undefined });
  }

  /**
   * Forget requests nobody waits for any more (after the caller gave up): pending subscribes
   * and unsubscribes are dropped; in-flight publishes are kept (they are the outbox's).
   */
  cancelPendingRequests(): number[] {
    if (this.pending === null) return [];
    const ids = this.pending.ids();
    this.pending.clear();
    return ids;
  }

  /**
   * manualAcks: the application has taken care of an incoming QoS 1/2 PUBLISH (the packet of its
   * message event): its PUBACK / PUBREC goes out once those received before it are acknowledged
   * too. No-op for QoS 0, for a packet already acknowledged, and for one whose connection ended
   * (the server sends it again).
   */
  ack(packet: PublishPacket, now: number): void {
    const acks = this.acksOwed;
    if (acks === null || packet.qos === 0) return;
    this.now = now;
    if (acks.ack(packet)) this.writeOwedAcks(acks);
  }

  /** manualAcks: incoming QoS 1/2 PUBLISHes of this connection not acknowledged yet. */
  get acksPending(): number {
    return this.acksOwed?.pending ?? 0;
  }

  // ---- internals -------------------------------------------------------------------------

  private writeOwedAcks(acks: IncomingAcks): void {
    if (this._state !== 'connected') return;
    for (let p = acks.next(); p !== undefined; p = acks.next())
      this.write({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId: p.packetId as number });
  }

  private write(packet: Packet): number {
    const bytes = writer.encode(packet, this.options.protocolVersion);
    this.out.push(bytes);
    this.lastSent = this.now;
    return bytes.length;
  }

  private emit(e: SessionEvent): void {
    this.events.push(e);
  }

  private closed(e: ClosedEvent): void {
    this._state = 'closing';
    this.emit(e);
  }

  /** Protocol or local failure: (5.0, connected) DISCONNECT with the reason, error, closed. */
  private fail(err: MqttError, sendDisconnect: boolean): void {
    if (this._state !== 'connecting' && this._state !== 'connected') return;
    if (sendDisconnect && this._state === 'connected' && this.options.protocolVersion === 5) {
      const reasonCode = err.reasonCode >= 0x80 ? err.reasonCode : ReasonCode.UnspecifiedError;
      try {
        this.write({ type: 'disconnect', reasonCode });
      } catch {
        // Nothing to add: the connection is being closed anyway.
      }
    }
    this.emit({ type: 'error', error: err });
    this.closed({
      type: 'closed',
      by: 'error',
      reasonCode: err.reasonCode,
      reasonString: err.message,
      error: err,
    });
  }

  private handle(p: Packet): void {
    if (this._state === 'closing') return;
    if (p.type === 'connack') {
      if (this._state !== 'connecting')
        throw protocolError('UNEXPECTED_CONNACK', 'CONNACK on an open connection');
      this.handleConnack(p);
      return;
    }
    if (this._state !== 'connected')
      throw protocolError('PACKET_BEFORE_CONNACK', `${p.type.toUpperCase()} before CONNACK`);
    switch (p.type) {
      case 'publish':
        this.handlePublish(p);
        return;
      case 'puback': {
        const rec = this.inflight.get(p.packetId);
        if (rec === undefined || rec.message.qos !== 1)
          throw protocolError(
            'UNEXPECTED_PACKET_ID',
            `PUBACK for packet id ${p.packetId}, not a QoS 1 in flight`,
          );
        this.complete(p.packetId, rec, p.reasonCode ?? 0, p.properties);
        return;
      }
      case 'pubrec': {
        const rec = this.inflight.get(p.packetId);
        if (rec === undefined || rec.message.qos !== 2)
          throw protocolError(
            'UNEXPECTED_PACKET_ID',
            `PUBREC for packet id ${p.packetId}, not a QoS 2 in flight`,
          );
        const rc = p.reasonCode ?? 0;
        if (rc >= 0x80) {
          // A failing PUBREC ends the flow [MQTT-4.3.3]: no PUBREL.
          this.complete(p.packetId, rec, rc, p.properties);
          return;
        }
        (this.released ??= new IdMap()).set(p.packetId, true);
        this.write({ type: 'pubrel', packetId: p.packetId });
        return;
      }
      case 'pubcomp': {
        const rec = this.inflight.get(p.packetId);
        if (rec === undefined || this.released?.has(p.packetId) !== true)
          throw protocolError(
            'UNEXPECTED_PACKET_ID',
            `PUBCOMP for packet id ${p.packetId}, no PUBREL outstanding`,
          );
        this.complete(p.packetId, rec, p.reasonCode ?? 0, p.properties);
        return;
      }
      case 'pubrel': {
        const known = this.incomingQos2?.delete(p.packetId) ?? false;
        // Unknown is no error during recovery; 5.0 says so with 0x92 [MQTT-3.7.2.1].
        if (known || this.options.protocolVersion !== 5)
          this.write({ type: 'pubcomp', packetId: p.packetId });
        else
          this.write({
            type: 'pubcomp',
            packetId: p.packetId,
            reasonCode: ReasonCode.PacketIdentifierNotFound,
          });
        return;
      }
      case 'suback': {
        const req = this.pending?.get(p.packetId);
        if (req === undefined || req.kind !== 'subscribe')
          throw protocolError(
            'UNEXPECTED_PACKET_ID',
            `SUBACK for packet id ${p.packetId}, no SUBSCRIBE pending`,
          );
        if (p.reasonCodes.length !== req.subscriptions.length)
          throw protocolError(
            'SUBACK_COUNT',
            `SUBACK has ${p.reasonCodes.length} codes for ${req.subscriptions.length} filters`,
          );
        this.pending!.delete(p.packetId);
        for (let i = 0; i < req.subscriptions.length; i++) {
          const s = req.subscriptions[i];
          if (p.reasonCodes[i] < 0x80) (this.subscriptions ??= new StringMap()).set(s.topicFilter, s);
        }
        this.emit({
          type: 'suback',
          packetId: p.packetId,
          reasonCodes: p.reasonCodes,
          properties: p.properties,
          internal: req.internal,
        });
        return;
      }
      case 'unsuback': {
        const req = this.pending?.get(p.packetId);
        if (req === undefined || req.kind !== 'unsubscribe')
          throw protocolError(
            'UNEXPECTED_PACKET_ID',
            `UNSUBACK for packet id ${p.packetId}, no UNSUBSCRIBE pending`,
          );
        if (p.reasonCodes !== undefined && p.reasonCodes.length !== req.filters.length)
          throw protocolError(
            'UNSUBACK_COUNT',
            `UNSUBACK has ${p.reasonCodes.length} codes for ${req.filters.length} filters`,
          );
        this.pending!.delete(p.packetId);
        for (const f of req.filters) this.subscriptions?.delete(f);
        this.emit({
          type: 'unsuback',
          packetId: p.packetId,
          reasonCodes: p.reasonCodes,
          properties: p.properties,
        });
        return;
      }
      case 'pingresp':
        this.pingOutstanding = false;
        return;
      case 'disconnect':
        if (this.options.protocolVersion !== 5)
          throw protocolError('UNEXPECTED_DISCONNECT', 'a 3.1.1 server may not send DISCONNECT');
        this.closed({
          type: 'closed',
          by: 'server',
          reasonCode: p.reasonCode ?? 0,
          reasonString: p.properties?.reasonString,
          error: undefined,
        });
        return;
      default:
        throw protocolError(
          'PACKET_NOT_ALLOWED',
          `a server may not send ${p.type.toUpperCase()} to a client`,
        );
    }
  }

  private handleConnack(p: ConnackPacket): void {
    const o = this.options;
    const v5 = o.protocolVersion === 5;
    if (p.reasonCode !== 0) {
      const err = new ConnackError(o.protocolVersion, p.reasonCode, p.properties?.reasonString);
      this.emit({ type: 'error', error: err });
      const closed: ClosedEvent = {
        type: 'closed',
        by: 'server',
        reasonCode: err.reasonCode,
        reasonString: err.reasonString,
        error: err,
      };
      // Not a Mosquitto (or one without bridge support): it refused the protocol level with
      // the bit. Mosquitto's bridges retry without it; so does this session.
      if (this.bridgeBitSent && p.reasonCode === 1) {
        this.bridgeBit = false;
        closed.retryNow = true;
      }
      this.closed(closed);
      return;
    }
    if (p.sessionPresent && this.cleanNext)
      throw protocolError('SESSION_PRESENT_ON_CLEAN', 'CONNACK says session present after a clean start');
    const props = p.properties;
    if (v5 && props !== undefined) {
      if (props.assignedClientIdentifier !== undefined) this._clientId = props.assignedClientIdentifier;
      if (props.serverKeepAlive !== undefined) this.keepaliveMs = props.serverKeepAlive * 1000;
      if (props.receiveMaximum !== undefined) this.sendQuota = Math.min(o.maxInflight, props.receiveMaximum);
      if (props.maximumPacketSize !== undefined) this.serverMaxPacket = props.maximumPacketSize;
      if (props.maximumQoS !== undefined) this.serverMaxQoS = props.maximumQoS;
      if (props.retainAvailable === false) this.serverRetain = false;
      if (o.outgoingTopicAliases && props.topicAliasMaximum !== undefined && props.topicAliasMaximum > 0) {
        this.aliasOutMax = props.topicAliasMaximum;
        this.aliasesOut = new StringMap();
      }
    }
    this._state = 'connected';
    if (o.cleanFirstOnly) this.cleanNext = false;
    this.acksOwed?.reset(p.sessionPresent);
    if (!p.sessionPresent) {
      // The server has no state of ours: QoS 2 ids we hold for it are moot, and a message it
      // acknowledged with PUBREC was its to deliver; PUBLISHes it never acknowledged go again.
      this.incomingQos2 = null;
      const released = this.released;
      if (released !== null)
        for (const id of this.inflight.ids())
          if (released.has(id)) this.complete(id, this.inflight.get(id)!, 0, undefined);
    }
    this.emit({
      type: 'connected',
      sessionPresent: p.sessionPresent,
      reasonCode: 0,
      clientId: this._clientId,
      keepalive: this.keepaliveMs / 1000,
      properties: props,
    });
    // Resend in the original order [MQTT-4.4.0-1]: PUBLISH with DUP, PUBREL after PUBREC.
    for (const id of this.inflight.ids()) {
      if (this.released?.has(id) === true) this.write({ type: 'pubrel', packetId: id });
      else this.writePublish(this.inflight.get(id)!.message, id, true);
    }
    const pending = this.pending;
    if (pending !== null) for (const id of pending.ids()) this.sendRequest(pending.get(id)!);
    if (
      !p.sessionPresent &&
      o.resubscribe &&
      this.everConnected &&
      this.subscriptions !== null &&
      this.subscriptions.size > 0
    ) {
      const subs = this.subscriptions.values();
      const req: PendingRequest = {
        packetId: this.allocateId(),
        kind: 'subscribe',
        subscriptions: subs,
        filters: [],
        properties: undefined,
        internal: true,
      };
      (this.pending ??= new IdMap()).set(req.packetId, req);
      this.sendRequest(req);
    }
    this.everConnected = true;
    this.wantOutbox = true;
  }

  private handlePublish(p: PublishPacket): void {
    const alias = p.properties?.topicAlias;
    if (alias !== undefined) {
      if (alias === 0 || alias > this.options.topicAliasMaximum)
        throw protocolError(
          'TOPIC_ALIAS_INVALID',
          `topic alias ${alias} outside 1..${this.options.topicAliasMaximum}`,
          ReasonCode.TopicAliasInvalid,
        );
      if (p.topic === '') {
        const topic = this.aliasesIn?.get(alias);
        if (topic === undefined)
          throw protocolError(
            'TOPIC_ALIAS_UNKNOWN',
            `topic alias ${alias} was never set`,
            ReasonCode.ProtocolError,
          );
        p = { ...p, topic };
      } else (this.aliasesIn ??= new IdMap()).set(alias, p.topic);
    } else if (p.topic === '') throw protocolError('TOPIC_EMPTY', 'PUBLISH without topic or alias');
    if (p.qos === 0) {
      this.emit({ type: 'message', packet: p });
    } else if (p.qos === 1) {
      const acks = this.acksOwed;
      // 5.0's receive maximum (3.1.1 has none: the server's own window bounds it there).
      if (acks !== null && this.options.protocolVersion === 5 && acks.pending >= this.options.receiveMaximum)
        throw protocolError(
          'RECEIVE_MAXIMUM_EXCEEDED',
          `more than ${this.options.receiveMaximum} QoS 1 publishes awaiting their acknowledgement`,
          ReasonCode.ReceiveMaximumExceeded,
        );
      this.emit({ type: 'message', packet: p });
      if (acks === null) this.write({ type: 'puback', packetId: p.packetId! });
      else acks.received(p);
    } else {
      const id = p.packetId!;
      const held = (this.incomingQos2 ??= new IdMap());
      const acks = this.acksOwed;
      if (!held.has(id)) {
        if (held.size >= this.options.receiveMaximum)
          throw protocolError(
            'RECEIVE_MAXIMUM_EXCEEDED',
            `more than ${this.options.receiveMaximum} QoS 2 publishes awaiting PUBREL`,
            ReasonCode.ReceiveMaximumExceeded,
          );
        held.set(id, true);
        this.emit({ type: 'message', packet: p });
        acks?.received(p);
      } else acks?.duplicate(p);
      if (acks === null) this.write({ type: 'pubrec', packetId: id });
      else this.writeOwedAcks(acks);
    }
  }

  /**
   * Encodes first, so a request the codec refuses (bad filter, QoS, property) throws here and
   * leaves nothing behind: no packet id taken, nothing to resend on every reconnect.
   */
  private allocateId(): number {
    const id = allocatePacketId(this.nextId, this.inflight, this.pending);
    this.nextId = id === 65535 ? 1 : id + 1;
    return id;
  }

  private register(req: PendingRequest): void {
    const bytes = writer.encode(this.requestPacket(req), this.options.protocolVersion);
    (this.pending ??= new IdMap()).set(req.packetId, req);
    if (this._state === 'connected') {
      this.out.push(bytes);
      this.lastSent = this.now;
    }
  }

  private requestPacket(req: PendingRequest): Packet {
    return req.kind === 'subscribe'
      ? {
          type: 'subscribe',
          packetId: req.packetId,
          subscriptions: req.subscriptions,
          properties: req.properties,
        }
      : {
          type: 'unsubscribe',
          packetId: req.packetId,
          topicFilters: req.filters,
          properties: req.properties,
        };
  }

  private sendRequest(req: PendingRequest): void {
    this.write(this.requestPacket(req));
  }

  /** A request this connection cannot carry: completes as failed, never in flight. */
  private refuse(
    entry: OutboxEntry | undefined,
    message: OutboxMessage,
    code: string,
    text: string,
    rc: number,
  ): RequestError {
    if (entry !== undefined) this.settle(entry.seq);
    const error = new RequestError(code, text, rc);
    this.emit({
      type: 'published',
      seq: entry?.seq,
      packetId: undefined,
      qos: message.qos,
      reasonCode: rc,
      properties: undefined,
      error,
    });
    return error;
  }

  private refuseUnwritable(entry: OutboxEntry | undefined, m: OutboxMessage, written: number): RequestError {
    if (written === -1)
      return this.refuse(
        entry,
        m,
        'PACKET_TOO_LARGE',
        `over the server's ${this.serverMaxPacket} bytes`,
        0x95,
      );
    const err = this.encodeError!;
    this.encodeError = null;
    return this.refuse(entry, m, err.code, err.message, err.reasonCode);
  }

  /** Undefined when the server can take the message, else the refusal (already reported). */
  private inadmissible(entry: OutboxEntry | undefined, m: OutboxMessage): RequestError | undefined {
    if (m.qos > this.serverMaxQoS)
      return this.refuse(entry, m, 'QOS_NOT_SUPPORTED', `server maximum QoS is ${this.serverMaxQoS}`, 0x9b);
    if (m.retain && !this.serverRetain)
      return this.refuse(entry, m, 'RETAIN_NOT_SUPPORTED', 'server does not support retain', 0x9a);
    return undefined;
  }

  private sendQoS0(m: OutboxMessage, entry: OutboxEntry | undefined): RequestError | undefined {
    const refused = this.inadmissible(entry, m);
    if (refused !== undefined) return refused;
    const written = this.writePublish(m, undefined, false);
    if (written < 0) return this.refuseUnwritable(entry, m, written);
    if (entry !== undefined) {
      this.settle(entry.seq);
      this.emit({
        type: 'published',
        seq: entry.seq,
        packetId: undefined,
        qos: 0,
        reasonCode: 0,
        properties: undefined,
        error: undefined,
      });
    }
    return undefined;
  }

  private sendEntry(e: OutboxEntry): void {
    const m = e.message;
    if (m.qos === 0) {
      this.sendQoS0(m, e);
      return;
    }
    if (this.inadmissible(e, m) !== undefined) return;
    const id = this.allocateId();
    const written = this.writePublish(m, id, false);
    if (written < 0) {
      this.refuseUnwritable(e, m, written);
      return;
    }
    this.inflight.set(id, e);
    this.lastSentSeq = e.seq;
    this.lastSentId = id;
  }

  /**
   * Writes a PUBLISH (topic alias applied); -1 when it exceeds the server's maximum packet size,
   * -2 when the codec refused it (the reason in encodeError).
   */
  private writePublish(m: OutboxMessage, packetId: number | undefined, dup: boolean): number {
    let topic = m.topic;
    let properties = m.properties;
    const aliases = this.aliasesOut;
    let newAlias = 0;
    if (aliases !== null) {
      const known = aliases.get(topic);
      if (known !== undefined) {
        properties = { ...properties, topicAlias: known };
        topic = '';
      } else if (aliases.size < this.aliasOutMax) {
        newAlias = aliases.size + 1;
        properties = { ...properties, topicAlias: newAlias };
      }
    }
    const packet: PublishPacket = {
      type: 'publish',
      topic,
      payload: m.payload,
      qos: m.qos,
      retain: m.retain,
      dup,
    };
    if (packetId !== undefined) packet.packetId = packetId;
    if (properties !== undefined && this.options.protocolVersion === 5) packet.properties = properties;
    let bytes: Uint8Array;
    try {
      bytes = writer.encode(packet, this.options.protocolVersion);
    } catch (err) {
      // The codec refused the message (bad topic, QoS, property): fail it, not the connection.
      this.encodeError = err instanceof MqttError ? err : new MqttError('ENCODE_FAILED', String(err));
      return -2;
    }
    if (bytes.length > this.serverMaxPacket) return -1;
    if (newAlias !== 0) aliases!.set(m.topic, newAlias);
    this.out.push(bytes);
    this.lastSent = this.now;
    return bytes.length;
  }

  private complete(
    packetId: number,
    rec: OutboxEntry,
    reasonCode: number,
    properties: Properties | undefined,
  ): void {
    this.inflight.delete(packetId);
    this.released?.delete(packetId);
    this.settle(rec.seq);
    this.wantOutbox = true;
    this.emit({
      type: 'published',
      seq: rec.seq,
      packetId,
      qos: rec.message.qos,
      reasonCode,
      properties,
      error:
        reasonCode >= 0x80
          ? new RequestError(
              'PUBLISH_REFUSED',
              `server refused the publish with reason code 0x${reasonCode.toString(16)}`,
              reasonCode,
              properties?.reasonString,
            )
          : undefined,
    });
  }
}
