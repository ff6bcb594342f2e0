/**
 * One client connection: the codec parser on its byte stream, the CONNECT deadline and
 * keepalive, batched writes (one socket write per connection per event-loop turn) and the
 * read side's pause/resume used for backpressure.
 */
import {
  isReasonCodeAllowed,
  MqttError,
  type Packet,
  type PacketParser,
  type ProtocolVersion,
  ReasonCode,
  type Will,
} from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import { ConnState, ticks } from './conn-state.ts';
import { handleAcks } from './handle-acks.ts';
import { handleConnect } from './handle-connect.ts';
import { handleDisconnect } from './handle-disconnect.ts';
import { flushDeniedLog, handlePublish } from './handle-publish.ts';
import { handleSubscribe } from './handle-subscribe.ts';
import { handleUnsubscribe } from './handle-unsubscribe.ts';
import type { InternalPeer } from './internal-client.ts';
import type { ListenerSecurity } from './options.ts';
import type { Session } from './session.ts';
import type { OutAliases } from './topic-alias.ts';
import { decodedExtra } from './unauthenticated.ts';

/** Packets a client may pipeline behind its CONNECT while authentication runs. */
const MAX_EARLY_PACKETS = 1000;

export interface ListenerInfo {
  protocol: 'mqtt' | 'websockets';
  tls: boolean;
  /** The client certificate's common name is the user name (Mosquitto use_identity_as_username). */
  useIdentityAsUsername: boolean;
  /** The client certificate's subject is the user name (Mosquitto use_subject_as_username). */
  useSubjectAsUsername?: boolean;
  /** The user name replaces the client id (Mosquitto use_username_as_clientid). */
  useUsernameAsClientid?: boolean;
  /** per_listener_settings: the listener's own login rules and ACL. */
  security?: ListenerSecurity;
}

/** How Broker.accept() treats a connection beyond its listener. */
export interface AcceptOptions {
  /**
   * A peer inside the broker's own process (a bridge's local session): admitted without
   * authentication, outside the ACL, allowed to publish under `$SYS/broker/connection/`, not
   * counted against max_connections. Its session cannot be taken over by an outside client.
   */
  internal?: boolean;
  /** QoS 1/2 in flight towards it, in place of max_inflight_messages (its receive maximum still applies). */
  maxInflight?: number;
  /** The verified client certificate's subject, RFC 2253 (a use_subject_as_username listener's). */
  certificateSubject?: string;
}

/**
 * What a connection uses of its byte stream: a net or TLS socket, any Duplex (an in-process
 * peer's), a WebSocketStream, or internal-client.ts's stand-in that carries no bytes.
 */
export interface ConnSocket {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'close' | 'drain', listener: () => void): unknown;
  once(event: 'close' | 'drain', listener: () => void): unknown;
  off(event: 'close' | 'drain', listener: () => void): unknown;
  emit(event: string, ...args: unknown[]): boolean;
  pause(): unknown;
  resume(): unknown;
  end(): unknown;
  destroy(): unknown;
  write(chunk: Uint8Array): boolean;
  readonly writableLength: number;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

export class Connection {
  /**
   * Held only while a packet is incomplete: between chunks an idle connection gives its parser
   * back to the broker's pool (a parser is about 300 bytes; thousands of idle devices add up).
   */
  private parser: PacketParser | null = null;
  state = ConnState.AwaitConnect;
  version: ProtocolVersion = 4;
  session: Session | null = null;
  clientId = '';
  username: string | undefined = undefined;
  /** Keepalive in ms (after the server keepalive); 0 = none. */
  keepaliveMs = 0;
  /** Times in ticks (see `ticks()`): small integers stay inside the object, no boxed double each. */
  readonly openedAt: number;
  lastRecv: number;
  /** Largest packet the client accepts (MQTT 5 maximum packet size). */
  maxOut = 268_435_460;
  /** The client's receive maximum: QoS 1/2 publishes in flight towards it. */
  receiveMax = 65_535;
  /** Sessions whose full queue paused this socket. */
  pausedBy = 0;
  private out: Buffer | null = null;
  private outPos = 0;
  private outHint = 256;
  /**
   * The booleans below, one bit each, and the fields most connections never set, in an object
   * made on first write: each field is 8 bytes on every idle connection (see the accessors).
   */
  private flags = PROBLEM_INFO;
  private x: ConnExtras | null = null;

  constructor(
    readonly broker: Broker,
    readonly socket: ConnSocket,
    readonly listener: ListenerInfo,
    /** Peer address when the socket cannot tell (WebSocket streams, bridges); else read lazily. */
    remoteName: string | undefined,
  ) {
    if (remoteName !== undefined) this.extras.remoteName = remoteName;
    this.openedAt = this.lastRecv = ticks();
    // Shared handlers with the connection hung on the socket: no closures per connection.
    (socket as SocketWithConn)[CONN] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  }

  private get extras(): ConnExtras {
    if (this.x === null) this.x = new ConnExtras();
    return this.x;
  }

  private flag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  /** See AcceptOptions. */
  get internal(): boolean {
    return (this.flags & INTERNAL) !== 0;
  }
  set internal(v: boolean) {
    this.flag(INTERNAL, v);
  }
  /**
   * An in-process peer (internal-client.ts) that takes what is sent to it as objects: CONNACK,
   * SUBACK and acks here, PUBLISH in deliver.ts's writePublish. Nothing is encoded for it.
   */
  get peer(): InternalPeer | null {
    return this.x === null ? null : this.x.peer;
  }
  set peer(v: InternalPeer | null) {
    this.extras.peer = v;
    this.flag(DIRECT, v !== null);
  }
  /** Has a peer (one bit, read on the delivery path). */
  get direct(): boolean {
    return (this.flags & DIRECT) !== 0;
  }
  /** MQTT 5 request problem information: reason strings allowed in errors. */
  get problemInfo(): boolean {
    return (this.flags & PROBLEM_INFO) !== 0;
  }
  set problemInfo(v: boolean) {
    this.flag(PROBLEM_INFO, v);
  }
  /**
   * Bytes held back until a group commit makes the packet ids (PUBLISH) or the PUBREC'd state
   * (PUBREL) they carry durable: a crash must not leave the client holding an id the restarted
   * broker does not know, or exactly-once breaks. `holdNext`: covered by the commit being
   * gathered; `holdWriting`: the first `holdLen` bytes are covered by the commit on its way.
   */
  get holdNext(): boolean {
    return (this.flags & HOLD_NEXT) !== 0;
  }
  set holdNext(v: boolean) {
    this.flag(HOLD_NEXT, v);
  }
  get holdWriting(): boolean {
    return (this.flags & HOLD_WRITING) !== 0;
  }
  set holdWriting(v: boolean) {
    this.flag(HOLD_WRITING, v);
  }
  get holdLen(): number {
    return this.x === null ? 0 : this.x.holdLen;
  }
  set holdLen(v: number) {
    if (v !== 0 || this.x !== null) this.extras.holdLen = v;
  }
  get closed(): boolean {
    return (this.flags & CLOSED) !== 0;
  }
  /** See handle-publish's logDenied; null until the first denial. */
  get deniedLog(): DeniedLog | null {
    return this.x === null ? null : this.x.denied;
  }
  set deniedLog(v: DeniedLog | null) {
    if (v !== null || this.x !== null) this.extras.denied = v;
  }
  set closed(v: boolean) {
    this.flag(CLOSED, v);
  }
  /** Reason of a DISCONNECT received: decides whether the will is sent. */
  get gracefulDisconnect(): boolean {
    return (this.flags & GRACEFUL) !== 0;
  }
  set gracefulDisconnect(v: boolean) {
    this.flag(GRACEFUL, v);
  }
  /** The CONNECT says MQTT 5 (seen in its first bytes, or parsed): a refusal may be a CONNACK. */
  private get connectV5(): boolean {
    return (this.flags & CONNECT_V5) !== 0;
  }
  /**
   * Its transport charges the unauthenticated budget with the bytes it holds itself (a
   * WebSocket buffers whole frames before this connection sees a byte), so onData must not.
   */
  get socketCharged(): boolean {
    return (this.flags & SOCKET_CHARGED) !== 0;
  }
  set socketCharged(v: boolean) {
    this.flag(SOCKET_CHARGED, v);
  }
  /** Closed or closing: nothing it sends is looked at any more. */
  get ending(): boolean {
    return this.state === ConnState.Closing;
  }
  private get drainWaiting(): boolean {
    return (this.flags & DRAIN_WAITING) !== 0;
  }
  private set drainWaiting(v: boolean) {
    this.flag(DRAIN_WAITING, v);
  }
  get certificateCommonName(): string | undefined {
    return this.x?.certificateCommonName;
  }
  set certificateCommonName(v: string | undefined) {
    if (v !== undefined || this.x !== null) this.extras.certificateCommonName = v;
  }
  /** Set on use_subject_as_username listeners only. */
  get certificateSubject(): string | undefined {
    return this.x?.certificateSubject;
  }
  set certificateSubject(v: string | undefined) {
    if (v !== undefined || this.x !== null) this.extras.certificateSubject = v;
  }
  /** Own in-flight bound towards the connection; 0 = the broker's max_inflight_messages. */
  get maxInflight(): number {
    return this.x === null ? 0 : this.x.maxInflight;
  }
  set maxInflight(v: number) {
    if (v !== 0 || this.x !== null) this.extras.maxInflight = v;
  }
  get will(): Will | null {
    return this.x === null ? null : this.x.will;
  }
  set will(v: Will | null) {
    if (v !== null || this.x !== null) this.extras.will = v;
  }
  /** Inbound topic aliases (MQTT 5), index = alias. */
  get aliases(): string[] | null {
    return this.x === null ? null : this.x.aliases;
  }
  set aliases(v: string[] | null) {
    if (v !== null || this.x !== null) this.extras.aliases = v;
  }
  /** Outbound topic aliases (MQTT 5, topic-alias.ts): set when the client allows them. */
  get outAliases(): OutAliases | null {
    return this.x === null ? null : this.x.outAliases;
  }
  set outAliases(v: OutAliases | null) {
    if (v !== null || this.x !== null) this.extras.outAliases = v;
  }
  /** Packets received after CONNECT while authentication is pending. */
  get early(): Packet[] | null {
    return this.x === null ? null : this.x.early;
  }
  set early(v: Packet[] | null) {
    if (v !== null || this.x !== null) this.extras.early = v;
  }
  /** Acks waiting for a group commit to reach the disk. */
  get pendingAcks(): number {
    return this.x === null ? 0 : this.x.pendingAcks;
  }
  set pendingAcks(v: number) {
    if (v !== 0 || this.x !== null) this.extras.pendingAcks = v;
  }
  /** Of those, PUBACKs: QoS 1 messages the client still counts against our receive maximum. */
  get pendingPubacks(): number {
    return this.x === null ? 0 : this.x.pendingPubacks;
  }
  set pendingPubacks(v: number) {
    if (v !== 0 || this.x !== null) this.extras.pendingPubacks = v;
  }

  onData(chunk: Buffer): void {
    if (this.state === ConnState.Closing) return;
    const b = this.broker;
    b.counters.bytesIn += chunk.length;
    this.lastRecv = ticks();
    let parser = this.parser;
    if (this.state !== ConnState.Connected) {
      // Before CONNACK every byte counts against the broker-wide budget, before it is parsed.
      if (this.state === ConnState.AwaitConnect && parser === null && startsV5Connect(chunk))
        this.flag(CONNECT_V5, true);
      if (!this.socketCharged && !b.unauthenticated.charge(this, chunk.length)) return;
    }
    if (parser === null) {
      parser = this.parser = b.takeParser();
      // before CONNECT the parser follows the CONNECT's protocol level; after it, it is known
      parser.protocolVersion = this.state === ConnState.AwaitConnect ? undefined : this.version;
      parser.maxPacketSize = this.state === ConnState.Connected ? b.maxPacketIn : b.maxPacketUnauthenticated;
    }
    // A delivery may feed another connection's bytes in this same call (an internal peer):
    // each connection's bit says whether its own parser is at work.
    const wasParsing = this.flags & PARSING;
    this.flags |= PARSING;
    try {
      parser.push(chunk, dispatchTo, this);
      if (this.ending) this.parser = null;
      else if (parser.bufferedBytes === 0 && this.parser === parser) {
        this.parser = null;
        b.returnParser(parser);
      }
      if ((this.flags & REPLY_NOW) !== 0) {
        this.flags &= ~REPLY_NOW;
        this.flush();
      }
    } catch (err) {
      this.parser = null; // a failed parser is not reused
      this.onProtocolError(err);
    } finally {
      this.flags = (this.flags & ~PARSING) | wasParsing;
    }
  }

  /** Routes one parsed packet to its handler. */
  dispatch(p: Packet): void {
    if (this.closed || this.state === ConnState.Closing) return;
    const b = this.broker;
    b.counters.packetsIn++;
    if (this.state === ConnState.Connected) {
      switch (p.type) {
        case 'publish':
          b.counters.msgsInQos[p.qos]++;
          b.counters.pubBytesIn += p.payload.length;
          handlePublish(this, p);
          return;
        case 'puback':
        case 'pubrec':
        case 'pubrel':
        case 'pubcomp':
          if (handleAcks(this, p)) this.flags |= REPLY_NOW;
          return;
        case 'subscribe':
          handleSubscribe(this, p);
          return;
        case 'unsubscribe':
          handleUnsubscribe(this, p);
          return;
        case 'pingreq':
          this.send(PINGRESP);
          return;
        case 'disconnect':
          handleDisconnect(this, p);
          return;
        case 'connect':
          this.fail(ReasonCode.ProtocolError, 'second CONNECT');
          return;
        case 'auth':
          this.fail(ReasonCode.BadAuthenticationMethod, 'enhanced authentication is not supported');
          return;
        default:
          this.fail(ReasonCode.ProtocolError, `${p.type} is not a client packet`);
          return;
      }
    }
    if (this.state === ConnState.AwaitConnect) {
      if (p.type !== 'connect') {
        this.close();
        return;
      }
      this.version = p.protocolVersion;
      this.flag(CONNECT_V5, p.protocolVersion === 5);
      // Held while authentication runs: its user properties cost more than their bytes.
      const extra = decodedExtra(p);
      if (extra > 0 && !b.unauthenticated.charge(this, extra)) return;
      handleConnect(this, p);
      return;
    }
    // Authenticating: keep what the client pipelined behind its CONNECT, in order.
    if (this.early === null) this.early = [];
    if (this.early.length >= MAX_EARLY_PACKETS) {
      this.close();
      return;
    }
    const extra = decodedExtra(p);
    if (extra > 0 && !b.unauthenticated.charge(this, extra)) return;
    this.early.push(p);
  }

  /** CONNACK 0 is sent: the limits of an unauthenticated connection no longer apply. */
  connected(): void {
    this.state = ConnState.Connected;
    // the rest of the chunk being parsed, and what comes next, may use max_packet_size
    if (this.parser !== null) this.parser.maxPacketSize = this.broker.maxPacketIn;
    this.broker.unauthenticated.release(this);
  }

  /**
   * Closes a connection that has no CONNACK yet, telling an MQTT 5 client why in a CONNACK when
   * `reasonCode` is one (3.1.1 has no code for a limit: it is just closed).
   */
  refuseBeforeConnack(reasonCode: number): void {
    if (this.connectV5 && isReasonCodeAllowed(2, reasonCode))
      this.send(Uint8Array.of(0x20, 3, 0, reasonCode, 0));
    // Reading on would only fill 64 KiB buffers with what is thrown away (a 64 MB CONNECT...).
    this.socket.pause();
    this.close();
  }

  /** Replays the packets that arrived during authentication. */
  replayEarly(): void {
    const early = this.early;
    this.early = null;
    if (early !== null) for (const p of early) this.dispatch(p);
  }

  private onProtocolError(err: unknown): void {
    const b = this.broker;
    if (!(err instanceof MqttError)) {
      b.log('error', 'internal error handling a packet', { clientId: this.clientId, error: String(err) });
      this.fail(ReasonCode.ImplementationSpecificError, 'internal error');
      return;
    }
    b.log('notice', 'protocol error, closing', {
      clientId: this.clientId || undefined,
      remote: this.remote,
      code: err.code,
      error: err.message,
    });
    if (this.state === ConnState.AwaitConnect) {
      if (err.code === 'PROTOCOL_VERSION_UNSUPPORTED' || err.code === 'PROTOCOL_NAME_INVALID') {
        // 3.1.1 3.1.2.2: answer an unknown protocol level with return code 1, then close.
        this.send(CONNACK_BAD_VERSION);
        this.close();
        return;
      }
    }
    if (this.state !== ConnState.Connected) {
      // 5.0 3.2.2.2: a CONNECT refused (too large, too many user properties...) may be told so
      this.refuseBeforeConnack(err.reasonCode);
      return;
    }
    this.fail(err.reasonCode, err.message);
  }

  /**
   * Ends the connection for a protocol violation: MQTT 5 clients get a DISCONNECT carrying the
   * reason code (and string), 3.1.1 clients are just closed, as the spec says.
   */
  fail(reasonCode: number, reason: string): void {
    if (this.closed) return;
    if (this.version === 5 && this.state === ConnState.Connected) {
      this.sendPacket({
        type: 'disconnect',
        reasonCode: DISCONNECT_CODES.has(reasonCode) ? reasonCode : ReasonCode.UnspecifiedError,
        properties: this.problemInfo ? { reasonString: reason } : undefined,
      });
    }
    this.close();
  }

  /** Closes after what was written is flushed. */
  close(): void {
    if (this.closed) return;
    this.state = ConnState.Closing;
    // What it sent is not looked at any more: its partial packet goes (unless being parsed now).
    if ((this.flags & PARSING) === 0) this.parser = null;
    this.broker.unauthenticated.release(this);
    // Held bytes stay unsent: the session re-sends those messages (DUP) on the next connection.
    if (this.holdNext || this.holdWriting) this.discardHeld();
    else this.flush();
    this.socket.end();
    // A peer that never reads would hold the socket open: cut it after a grace period.
    const timer = setTimeout(() => this.socket.destroy(), 2000);
    timer.unref();
  }

  onSocketError(err: Error): void {
    this.broker.log('debug', 'socket error', { clientId: this.clientId || undefined, error: err.message });
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.state = ConnState.Closing;
    this.out = null;
    if (this.x?.denied?.unlogged) flushDeniedLog(this);
    this.broker.connectionClosed(this);
  }

  /** `address:port` of the peer, for logs. */
  get remote(): string {
    return this.x?.remoteName ?? peerAddress(this.socket);
  }

  /** Queues bytes for this turn's write (copied: the caller may reuse its buffer). */
  send(bytes: Uint8Array): void {
    this.append(bytes);
  }

  /** `send`, returning the queued copy (a view of this turn's buffer, for in-place patching). */
  sendView(bytes: Uint8Array): Uint8Array {
    const pos = this.append(bytes);
    return pos < 0 ? bytes : (this.out as Buffer).subarray(pos, pos + bytes.length);
  }

  /** Copies `bytes` into this turn's buffer; where they start in it, -1 when closed. */
  private append(bytes: Uint8Array): number {
    const n = bytes.length;
    const pos = this.reserve(n);
    if (pos < 0) return -1;
    const out = this.out as Buffer;
    if (n < 32) for (let i = 0; i < n; i++) out[pos + i] = bytes[i];
    else out.set(bytes, pos);
    return pos;
  }

  /**
   * Room for one packet of `n` bytes in this turn's buffer (`outBuffer`), for the caller to fill
   * at once: where it starts, -1 when closed.
   */
  reserve(n: number): number {
    this.broker.counters.packetsOut++;
    let out = this.out;
    let pos = this.outPos;
    if (out === null) {
      if (this.closed) return -1;
      // Sized by what the last turn needed: small answers come from Node's shared pool (no
      // malloc per idle connection), a busy subscriber does not regrow its buffer every turn.
      const hint = this.outHint;
      out = this.out = Buffer.allocUnsafe(Math.max(n, hint));
      pos = this.outPos = 0;
      this.broker.scheduleFlush(this);
    } else if (pos + n > out.length) {
      const grown = Buffer.allocUnsafe(Math.max(pos + n, out.length * 2));
      out.copy(grown, 0, 0, pos);
      out = this.out = grown;
    }
    this.outPos = pos + n;
    return pos;
  }

  /** This turn's output buffer, valid until the next `reserve` or `send`. */
  get outBuffer(): Uint8Array {
    return this.out as Buffer;
  }

  sendPacket(p: Packet): void {
    if ((this.flags & DIRECT) !== 0) {
      this.broker.counters.packetsOut++;
      (this.peer as InternalPeer).packet(p);
      return;
    }
    this.send(this.broker.writer.encode(p, this.version));
  }

  /** A four-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) or its MQTT 5 reason form. */
  sendAck(first: number, pid: number, reasonCode: number): void {
    if ((this.flags & DIRECT) !== 0) {
      this.broker.counters.packetsOut++;
      (this.peer as InternalPeer).ack(first, pid, reasonCode);
      return;
    }
    if (reasonCode === 0 || this.version !== 5) {
      ACK4[0] = first;
      ACK4[2] = pid >> 8;
      ACK4[3] = pid & 0xff;
      this.send(ACK4);
    } else {
      ACK5[0] = first;
      ACK5[2] = pid >> 8;
      ACK5[3] = pid & 0xff;
      ACK5[4] = reasonCode;
      this.send(ACK5);
    }
  }

  /** Bytes written and not yet on the wire, this turn's included. */
  get backlog(): number {
    return this.socket.writableLength + this.outPos;
  }

  /** Bytes queued by `send` and not yet handed to the socket. */
  get outLength(): number {
    return this.outPos;
  }

  /** Writes this turn's bytes in one socket write (later, when a group commit holds them). */
  flush(): void {
    if (this.holdNext || this.holdWriting) return;
    this.writeOut(this.outPos);
  }

  /** The group commit that covered the first `holdLen` bytes is on disk. */
  commitDone(): void {
    this.holdWriting = false;
    // Ids sent after that commit started wait for the next one.
    this.writeOut(this.holdNext ? this.holdLen : this.outPos);
  }

  private discardHeld(): void {
    this.holdNext = this.holdWriting = false;
    this.out = null;
    this.outPos = this.holdLen = 0;
  }

  private writeOut(n: number): void {
    const out = this.out;
    if (out === null) return;
    const total = this.outPos;
    if (n < total) {
      const rest = Buffer.allocUnsafe(Math.max(total - n, 256));
      out.copy(rest, 0, n, total);
      this.out = rest;
      this.outPos = total - n;
    } else {
      this.out = null;
      this.outPos = 0;
      this.outHint = n > 1 << 20 ? 1 << 20 : Math.max(n, 256);
    }
    this.holdLen = 0;
    if (n === 0 || this.closed || this.socket.destroyed || this.socket.writableEnded) return;
    this.broker.counters.bytesOut += n;
    // write() says true when the socket's own buffer is under its high-water mark: no 'drain'
    // event will come then, so whoever waits for one is told now.
    if (this.socket.write(out.subarray(0, n)) && this.drainWaiting) this.onDrain();
  }

  /** Stops reading this publisher's socket until every session that paused it drains. */
  pauseFor(): void {
    if (this.pausedBy++ === 0) this.socket.pause();
  }

  resumeFor(): void {
    if (this.pausedBy > 0 && --this.pausedBy === 0 && !this.closed) {
      this.lastRecv = ticks();
      this.socket.resume();
    }
  }

  /** Calls the broker back once the socket drained its write backlog. */
  waitDrain(): void {
    if (this.drainWaiting || this.closed) return;
    this.drainWaiting = true;
    this.socket.once('drain', onSocketDrain);
  }

  onDrain(): void {
    if (!this.drainWaiting) return;
    this.drainWaiting = false;
    this.socket.off('drain', onSocketDrain);
    this.broker.connectionDrained(this);
  }
}

/**
 * `address:port` of a socket's peer (net.Socket, TLS, or a WebSocket stream that tells its
 * socket's), for logs.
 */
export function peerAddress(socket: ConnSocket): string {
  const s = socket as ConnSocket & { remoteAddress?: string; remotePort?: number; _peername?: unknown };
  const name = `${s.remoteAddress}:${s.remotePort}`;
  // net.Socket keeps the address object it read (with its own strings, ~100 bytes) for the
  // socket's whole life; a log line is all it is wanted for, and idle connections add up.
  if (s._peername !== undefined) s._peername = undefined;
  return name;
}

const INTERNAL = 1;
const PROBLEM_INFO = 2;
const HOLD_NEXT = 4;
const HOLD_WRITING = 8;
const CLOSED = 16;
const GRACEFUL = 32;
const DRAIN_WAITING = 64;
const CONNECT_V5 = 128;
const SOCKET_CHARGED = 256;
/**
 * Set while a chunk is handled when its acks released bytes for the same connection (the next
 * window of queued PUBLISHes, a PUBREL; handleAcks says so): those go out at the end of that
 * chunk instead of after every other socket of the turn has been read. With a small window in
 * flight the subscriber waits on each such round trip; routed bytes to other connections still
 * wait for the turn.
 */
const REPLY_NOW = 512;
/** Set while onData runs this connection's parser: close() leaves that parser to onData. */
const PARSING = 1024;
/** See `peer`. */
const DIRECT = 2048;

/** Whether `c` starts with the fixed header and protocol name and level of an MQTT 5 CONNECT. */
function startsV5Connect(c: Uint8Array): boolean {
  if (c[0] !== 0x10) return false;
  let i = 1;
  while (i < 5 && (c[i] & 0x80) !== 0) i++;
  i++;
  return (
    c.length > i + 6 &&
    c[i] === 0 &&
    c[i + 1] === 4 &&
    c[i + 2] === 0x4d &&
    c[i + 3] === 0x51 &&
    c[i + 4] === 0x54 &&
    c[i + 5] === 0x54 &&
    c[i + 6] === 5
  );
}

/** What few connections use: made on the first write of a non-default value. */
class ConnExtras {
  certificateCommonName: string | undefined = undefined;
  certificateSubject: string | undefined = undefined;
  remoteName: string | undefined = undefined;
  will: Will | null = null;
  aliases: string[] | null = null;
  outAliases: OutAliases | null = null;
  early: Packet[] | null = null;
  pendingAcks = 0;
  pendingPubacks = 0;
  holdLen = 0;
  maxInflight = 0;
  denied: DeniedLog | null = null;
  peer: InternalPeer | null = null;
}

/** Denied publishes of one connection, for a log that one client cannot flood. */
export interface DeniedLog {
  /** When the last "Denied PUBLISH" line of this connection was written (ms since the epoch). */
  loggedAt: number;
  /** Denials since then that got no line of their own. */
  unlogged: number;
}

const CONN = Symbol('connection');
type SocketWithConn = ConnSocket & { [CONN]: Connection };
function onSocketData(this: SocketWithConn, chunk: Buffer): void {
  this[CONN].onData(chunk);
}
function onSocketError(this: SocketWithConn, err: Error): void {
  this[CONN].onSocketError(err);
}
function onSocketClose(this: SocketWithConn): void {
  this[CONN].onClose();
}
function onSocketDrain(this: SocketWithConn): void {
  this[CONN].onDrain();
}

/** The parser's callback: one for every connection, which push() passes as the context. */
function dispatchTo(p: Packet, conn: Connection): void {
  conn.dispatch(p);
}

const PINGRESP = new Uint8Array([0xd0, 0x00]);
const CONNACK_BAD_VERSION = new Uint8Array([0x20, 0x02, 0x00, 0x01]);
const ACK4 = new Uint8Array([0x40, 0x02, 0, 0]);
const ACK5 = new Uint8Array([0x40, 0x03, 0, 0, 0]);

const DISCONNECT_CODES = new Set([
  0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
  0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2,
]);
