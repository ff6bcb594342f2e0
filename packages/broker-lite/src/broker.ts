/**
 * The wiring: listeners hand sockets to connections, connections to the packet handlers,
 * handlers to sessions, the router and the retained store; persistence underneath; timers for
 * the CONNECT deadline, keepalive, session expiry and `$SYS`.
 */
import { randomUUID } from 'node:crypto';
import { MAX_PACKET_SIZE, PacketParser, PacketWriter, ReasonCode } from '@mqtt-edge/codec';
import type { BridgeStats } from './bridge.ts';
import { ConnState, TICKS_PER_SECOND, ticks } from './conn-state.ts';
import {
  type AcceptOptions,
  Connection,
  type ConnSocket,
  type ListenerInfo,
  peerAddress,
} from './connection.ts';
import { releasePublishers } from './deliver.ts';
import { type BoundListener, startListener, type TlsFiles } from './listeners.ts';
import { MemoryLimit } from './memory-limit.ts';
import type { Message } from './message.ts';
import type { MetricsServer } from './metrics.ts';
import type { AccessControl, Authenticator, BrokerOptions, ListenerSecurity, LogSink } from './options.ts';
import { DEFAULT_BROKER_OPTIONS, receiveMaximum } from './options.ts';
import { PendingSockets } from './pending-sockets.ts';
import { Persistence } from './persist.ts';
import { RetainStore } from './retain.ts';
import { Router } from './router.ts';
import { NEVER_EXPIRES, Session } from './session.ts';
import { SysTree } from './sys.ts';
import { UNLIMITED_TOPIC_LEVELS } from './topic-levels.ts';
import { UnauthenticatedBudget } from './unauthenticated.ts';
import { WillTimers } from './will.ts';

export interface BrokerStats {
  uptimeSeconds: number;
  clientsConnected: number;
  /** Sessions, connected or not (Mosquitto's clients/total). */
  clientsTotal: number;
  /** MQTT packets of every type. */
  messagesReceived: number;
  messagesSent: number;
  publishReceived: number;
  publishSent: number;
  /** Messages not delivered to someone they were for (QoS 0 to a stuck client, full offline queue, too large). */
  messagesDropped: number;
  messagesExpired: number;
  bytesReceived: number;
  bytesSent: number;
  subscriptions: number;
  retained: number;
  /** QoS 1/2 messages queued or in flight, all sessions. */
  queuedMessages: number;
  /** Payload and topic bytes of the messages queued (not in flight), all sessions. */
  queuedBytes: number;
  /** Times a publisher's socket was paused because a subscriber's queue was full. */
  publisherPauses: number;
  authFailures: number;
  /** Connections that sent bytes and have no CONNACK yet, and what they hold (issue 12.2). */
  unauthenticatedConnections: number;
  unauthenticatedBytes: number;
  /** The most unauthenticatedBytes has been since the start. */
  unauthenticatedBytesPeak: number;
}

const SILENT: LogSink = { log() {} };

/** Why a message was not delivered to someone it was for (the `reason` label in /metrics). */
export type DropReason =
  /** QoS 0 to a client whose unsent bytes passed the hard write limit. */
  | 'slow_subscriber'
  /** QoS 1/2 for an offline session whose queue is at max_queued_messages / bytes. */
  | 'queue_full'
  /** An online session's queue at twice its bound, the publisher not pausable. */
  | 'queue_overflow'
  /** Larger than the client's maximum packet size (or MQTT's, with its identifiers). */
  | 'too_large'
  /** A payload over message_size_limit (the publisher is told, 5.0: 0x97). */
  | 'message_size_limit'
  /** Refused while over memory_limit. */
  | 'memory_limit'
  /** A delivery that threw (an ACL backend, an encoding error). */
  | 'delivery_failed';

/**
 * Room kept below MQTT's largest packet for what re-encoding a received PUBLISH can add. The
 * broker stores every message, and sends it to MQTT 5 subscribers, as an MQTT 5 PUBLISH: the
 * topic a topic alias stands for comes back (up to 65,535 bytes), a 3.1.1 message gains a
 * property length, and each subscription identifier adds up to 5 bytes (with a property length
 * up to 3 bytes longer). 65,536 + 1,024 bytes hold the topic, the property length and about 200
 * identifiers; a subscriber needing more for one message is skipped for it (counted, logged).
 */
export const REENCODE_ROOM = 65_536 + 1024;
/**
 * The largest packet accepted from a client (268,368,900 bytes): one that still re-encodes
 * within MQTT's 268,435,455-byte remaining length for storage and for every subscriber. Larger
 * ones are refused from their fixed header (MQTT 5: DISCONNECT 0x95; 3.1.1: closed), before any
 * of the body is buffered; MQTT 5 clients are told the limit in CONNACK.
 */
export const MAX_ACCEPTED_PACKET = MAX_PACKET_SIZE - REENCODE_ROOM;

/**
 * The broker's counters. A class, so that the instance holds only data fields (fast property
 * stores on the message path) and the sums are getters on its prototype.
 */
export class BrokerCounters {
  bytesIn = 0;
  bytesOut = 0;
  /** PUBLISH packets received / sent, by QoS. */
  readonly msgsInQos = [0, 0, 0];
  readonly msgsOutQos = [0, 0, 0];
  packetsIn = 0;
  packetsOut = 0;
  dropped = 0;
  expired = 0;
  connects = 0;
  /** Sockets accepted (Mosquitto's load/sockets). */
  sockets = 0;
  /** Payload bytes of PUBLISH packets received / sent. */
  pubBytesIn = 0;
  pubBytesOut = 0;
  authFailures = 0;
  publisherPauses = 0;
  /** Offline sessions ended by their expiry ($SYS/broker/clients/expired). */
  sessionsExpired = 0;
  /** `dropped` by why (each drop counts in both). */
  readonly drops: Record<DropReason, number> = {
    slow_subscriber: 0,
    queue_full: 0,
    queue_overflow: 0,
    too_large: 0,
    message_size_limit: 0,
    memory_limit: 0,
    delivery_failed: 0,
  };

  get msgsIn(): number {
    return this.msgsInQos[0] + this.msgsInQos[1] + this.msgsInQos[2];
  }
  get msgsOut(): number {
    return this.msgsOutQos[0] + this.msgsOutQos[1] + this.msgsOutQos[2];
  }
}

export class Broker {
  readonly options: BrokerOptions;
  authenticator: Authenticator | undefined;
  accessControl: AccessControl | undefined;
  readonly sessions = new Map<string, Session>();
  /** Client ids reserved for internal peers (reserveClientId). */
  private readonly internalIds = new Set<string>();
  readonly connections = new Set<Connection>();
  /** Sockets of WebSocket listeners not upgraded yet: they count in max_connections too. */
  readonly pendingSockets = new PendingSockets();
  readonly router: Router;
  readonly retain = new RetainStore();
  readonly wills: WillTimers;
  readonly writer = new PacketWriter(4096);
  persist: Persistence | null = null;
  /** Delay before a refused login gets its CONNACK. */
  readonly authFailureDelayMs: number;
  /** Largest packet accepted from a client (fixed header included), for the parser and CONNACK. */
  readonly maxPacketIn: number;
  /** Largest packet accepted before CONNACK (max_unauthenticated_packet_size, at most maxPacketIn). */
  readonly maxPacketUnauthenticated: number;
  /** Most levels in a topic name or filter (max_topic_levels; no limit is 65,536). */
  readonly maxTopicLevels: number;
  /** Some listener has security of its own (per_listener_settings): ACLs are looked up per session. */
  readonly perListener: boolean;
  /** The Receive Maximum every MQTT 5 CONNACK says and handle-publish enforces (0x93 beyond it). */
  readonly receiveMaximum: number;
  /** What connections not yet CONNACKed hold, all together (max_unauthenticated_bytes). */
  readonly unauthenticated: UnauthenticatedBudget;
  /** `log_type subscribe` / `unsubscribe` lines are wanted (one line per filter, as Mosquitto). */
  readonly logSubscribe: boolean;
  readonly logUnsubscribe: boolean;
  /** memory_limit: set while the process is over it (a field, read once per PUBLISH). */
  memoryFull = false;
  readonly memory: MemoryLimit;
  /**
   * Counters, read when `$SYS` is published or /metrics scraped. On the message path each is one
   * increment (by QoS: an index into an array of three), nothing more.
   */
  readonly counters = new BrokerCounters();
  /** The bridges' figures, for /metrics (set by startBridges while they run). */
  bridgeStats: (() => BridgeStats[]) | null = null;
  private listeners: BoundListener[] = [];
  private metrics: MetricsServer | null = null;
  private readonly dirty: Connection[] = [];
  private flushScheduled = false;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sysTimer: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private lastDropLog = 0;
  private droppedSinceLog = 0;
  private closing = false;

  constructor(options: Partial<BrokerOptions> = {}) {
    this.options = { ...DEFAULT_BROKER_OPTIONS, logger: SILENT, ...options };
    this.authenticator = this.options.authenticator;
    this.accessControl = this.options.accessControl;
    this.authFailureDelayMs = options.authFailureDelayMs ?? 1000;
    // message_size_limit bounds the payload: allow room for the largest header, topic and
    // properties on top; max_packet_size bounds the whole packet. The smaller one wins.
    const o = this.options;
    let max = MAX_ACCEPTED_PACKET;
    if (o.messageSizeLimit > 0) max = Math.min(max, o.messageSizeLimit + 65_536 + 1024);
    if (o.maxPacketSize !== undefined && o.maxPacketSize > 0) max = Math.min(max, o.maxPacketSize);
    this.maxPacketIn = max;
    const pre = o.maxUnauthenticatedPacketSize;
    this.maxPacketUnauthenticated = pre > 0 ? Math.min(pre, max) : max;
    this.unauthenticated = new UnauthenticatedBudget(this, o.maxUnauthenticatedBytes);
    this.maxTopicLevels = o.maxTopicLevels > 0 ? o.maxTopicLevels : UNLIMITED_TOPIC_LEVELS;
    this.receiveMaximum = receiveMaximum(o.receiveMaximum, o.maxInflightMessages);
    this.logSubscribe = o.logger.enabled?.('subscribe') === true;
    this.logUnsubscribe = o.logger.enabled?.('unsubscribe') === true;
    this.perListener = o.listeners.some((l) => l.security !== undefined);
    this.memory = new MemoryLimit(this, o.memoryLimit);
    this.router = new Router(this);
    this.wills = new WillTimers(this);
  }

  /** Recovers persisted state, then binds every listener. */
  async listen(): Promise<void> {
    const dir = this.options.persistenceDir;
    if (dir !== undefined && this.persist === null) {
      this.persist = new Persistence(
        this,
        dir,
        this.options.autosaveIntervalSeconds,
        this.options.persistenceCommitWindowMs ?? DEFAULT_BROKER_OPTIONS.persistenceCommitWindowMs ?? 0,
      );
      await this.persist.open();
    }
    for (const l of this.options.listeners) this.listeners.push(await startListener(this, l));
    const m = this.options.metricsListener;
    if (m !== undefined) {
      // Node's HTTP server and the exposition only for a broker that has a metrics_listener.
      const { startMetricsListener } = await import('./metrics.ts');
      this.metrics = await startMetricsListener(this, m, this.startedAt);
    }
    this.memory.start();
    this.sweepTimer = setInterval(() => this.sweep(), 1000);
    this.sweepTimer.unref();
    const sys = this.options.sysInterval;
    if (sys > 0) {
      const tree = new SysTree(this);
      tree.publish();
      this.sysTimer = setInterval(() => tree.publish(), sys * 1000);
      this.sysTimer.unref();
    }
    for (const l of this.listeners)
      this.log('notice', 'listening', {
        host: l.address.host,
        port: l.address.port,
        protocol: l.address.protocol,
      });
    if (this.metrics !== null)
      this.log('notice', 'listening', {
        host: this.metrics.address.host,
        port: this.metrics.address.port,
        protocol: 'metrics',
        url: `http://${this.metrics.address.host}:${this.metrics.address.port}/metrics`,
      });
  }

  /** Where metrics_listener is bound (the real port when 0 was asked); undefined without one. */
  get metricsAddress(): { port: number; host: string } | undefined {
    return this.metrics?.address;
  }

  /**
   * New TLS files for listener `index` (in `options.listeners` order): new handshakes use them,
   * connections already up keep the certificate they got. Throws, changing nothing, for a
   * listener without TLS or files Node refuses (a key that does not match the certificate).
   */
  setListenerTls(index: number, files: TlsFiles): void {
    const l = this.listeners[index];
    const o = this.options.listeners[index];
    if (l?.setSecureContext === undefined || o?.tls === undefined)
      throw new Error(`listener ${index} has no TLS to reload`);
    l.setSecureContext(files);
    o.tls = { ...o.tls, cert: files.cert, key: files.key };
    if (files.ca !== undefined) o.tls.ca = files.ca;
    else delete o.tls.ca;
  }

  /** Where each listener is bound (the real port when 0 was asked). */
  get addresses(): Array<{ port: number; host: string; protocol: 'mqtt' | 'websockets' }> {
    return this.listeners.map((l) => l.address);
  }

  /** Stops listening, disconnects every client (MQTT 5: 0x8B), saves, and resolves when done. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    if (this.sysTimer !== null) clearInterval(this.sysTimer);
    this.memory.stop();
    // server.close() waits for every socket: start it, close the sockets, then wait.
    const listenersClosed = Promise.all(this.listeners.map((l) => l.close()));
    const metricsClosed = this.metrics?.close();
    this.pendingSockets.close();
    const waits: Promise<void>[] = [];
    for (const conn of this.connections) {
      conn.gracefulDisconnect = true;
      waits.push(
        new Promise<void>((resolve) => {
          if (conn.closed) resolve();
          else conn.socket.once('close', () => resolve());
        }),
      );
      conn.fail(ReasonCode.ServerShuttingDown, 'server shutting down');
      setTimeout(() => conn.socket.destroy(), 500).unref();
    }
    await Promise.all(waits);
    await listenersClosed;
    await metricsClosed;
    this.flushAll();
    // after the final snapshot, which keeps the wills still waiting out their delay
    if (this.persist !== null) await this.persist.close();
    this.wills.clear();
  }

  /**
   * Reserves `clientId` for an internal peer (a bridge's local session) before it connects:
   * outside clients cannot take it, and a session recovered from disk under it is treated as
   * internal (the ACL does not filter what is queued for it) while the peer is still away.
   */
  reserveClientId(clientId: string): void {
    this.internalIds.add(clientId);
    const s = this.sessions.get(clientId);
    if (s !== undefined) s.internal = true;
  }

  isReservedClientId(clientId: string): boolean {
    return this.internalIds.has(clientId);
  }

  /** SIGHUP: memory_limit is reloaded, as in Mosquitto (0 = none). */
  setMemoryLimit(bytes: number): void {
    this.memory.set(bytes);
  }

  /** SIGHUP: new password and ACL checks apply to the next CONNECT, SUBSCRIBE and message. */
  setSecurity(authenticator?: Authenticator, accessControl?: AccessControl): void {
    this.authenticator = authenticator;
    this.accessControl = accessControl;
  }

  /**
   * SIGHUP under per_listener_settings: listener `index` (options order) gets new login rules
   * and ACL, for its next CONNECT and, through the object its sessions share, every check after.
   */
  setListenerSecurity(index: number, security: ListenerSecurity): void {
    const live = this.options.listeners[index]?.security;
    if (live === undefined) throw new Error(`listener ${index} has no security of its own`);
    live.allowAnonymous = security.allowAnonymous;
    live.authenticator = security.authenticator;
    live.accessControl = security.accessControl;
  }

  /** The ACL that applies to `s`: its listener's under per_listener_settings, else the broker's. */
  aclFor(s: Session | null): AccessControl | undefined {
    return s !== null && s.security !== null ? s.security.accessControl : this.accessControl;
  }

  stats(): BrokerStats {
    const c = this.counters;
    let connected = 0;
    let queued = 0;
    let queuedBytes = 0;
    for (const s of this.sessions.values()) {
      if (s.conn !== null) connected++;
      queued += s.queueLength + s.inflightCount;
      queuedBytes += s.queuedBytes;
    }
    return {
      uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000),
      clientsConnected: connected,
      clientsTotal: this.sessions.size,
      messagesReceived: c.packetsIn,
      messagesSent: c.packetsOut,
      publishReceived: c.msgsIn,
      publishSent: c.msgsOut,
      messagesDropped: c.dropped,
      messagesExpired: c.expired,
      bytesReceived: c.bytesIn,
      bytesSent: c.bytesOut,
      subscriptions: this.router.index.size,
      retained: this.retain.size,
      queuedMessages: queued,
      queuedBytes,
      publisherPauses: c.publisherPauses,
      authFailures: c.authFailures,
      unauthenticatedConnections: this.unauthenticated.connections,
      unauthenticatedBytes: this.unauthenticated.bytes,
      unauthenticatedBytesPeak: this.unauthenticated.peak,
    };
  }

  log(level: Parameters<LogSink['log']>[0], message: string, fields?: Record<string, unknown>): void {
    this.options.logger.log(level, message, fields);
  }

  // ---- connections ---------------------------------------------------------------------

  /** A listener accepted a socket, or an in-process peer hands over its stream (options.internal). */
  accept(
    socket: ConnSocket,
    info: ListenerInfo,
    remote?: string,
    certificateCommonName?: string,
    options?: AcceptOptions,
  ): Connection | undefined {
    const internal = options?.internal === true;
    if (this.closing || (!internal && this.atConnectionLimit())) {
      if (!this.closing)
        this.log('notice', 'connection refused: max_connections reached', {
          remote: remote ?? peerAddress(socket),
        });
      socket.destroy();
      return undefined;
    }
    if (!internal) this.counters.sockets++;
    const conn = new Connection(this, socket, info, remote);
    conn.certificateCommonName = certificateCommonName;
    if (options?.certificateSubject !== undefined) conn.certificateSubject = options.certificateSubject;
    if (internal) conn.internal = true;
    const mi = options?.maxInflight;
    if (mi !== undefined) {
      if (!Number.isInteger(mi) || mi < 1 || mi > 65_535) {
        socket.destroy();
        throw new RangeError('maxInflight must be an integer in 1..65535');
      }
      conn.maxInflight = mi;
    }
    this.connections.add(conn);
    return conn;
  }

  /** max_connections is reached: connections and sockets waiting to be one (WebSocket upgrades). */
  atConnectionLimit(): boolean {
    const max = this.options.maxConnections;
    return max >= 0 && this.connections.size + this.pendingSockets.size >= max;
  }

  private readonly parsers: PacketParser[] = [];

  /** A reset parser from the pool (connections hold one only while a packet is incomplete). */
  takeParser(): PacketParser {
    const p = this.parsers.pop();
    if (p !== undefined) return p;
    return new PacketParser({ maxPacketSize: this.maxPacketIn, maxTopicLevels: this.maxTopicLevels });
  }

  returnParser(p: PacketParser): void {
    if (this.parsers.length < 256) {
      p.reset();
      this.parsers.push(p);
    }
  }

  scheduleFlush(conn: Connection): void {
    this.dirty.push(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  /** One socket write per connection per event-loop turn. */
  readonly flushAll = (): void => {
    this.flushScheduled = false;
    const dirty = this.dirty;
    for (let i = 0; i < dirty.length; i++) dirty[i].flush();
    dirty.length = 0;
  };

  connectionClosed(conn: Connection): void {
    this.connections.delete(conn);
    this.unauthenticated.release(conn);
    if (conn.session !== null) this.detach(conn, false);
    if (conn.clientId !== '' && this.options.connectionMessages !== false)
      this.log('notice', 'client disconnected', { clientId: conn.clientId });
  }

  connectionDrained(conn: Connection): void {
    const s = conn.session;
    if (s !== null && s.blocked !== null) releasePublishers(this, s, false);
  }

  /**
   * Separates a connection from its session (the socket closed, or another connection took the
   * client id): will, expiry, the publishers this session had paused.
   */
  detach(conn: Connection, takeover: boolean): void {
    const s = conn.session;
    conn.session = null;
    if (s === null || s.conn !== conn) return;
    s.conn = null;
    const will = conn.will;
    conn.will = null;
    if (will !== null && !conn.gracefulDisconnect) {
      const delay = conn.version === 5 ? (will.properties?.willDelayInterval ?? 0) : 0;
      const expiresFirst = s.expiryInterval !== NEVER_EXPIRES && s.expiryInterval <= delay;
      const keep = expiresFirst ? s.expiryInterval : delay;
      this.wills.schedule(
        s.clientId,
        conn.username,
        will,
        takeover ? delay : keep,
        s.security,
        !takeover && expiresFirst,
      );
    }
    releasePublishers(this, s, true);
    if (!s.persistent) {
      this.endSession(s);
      return;
    }
    s.expiresAt = this.sessionExpiresAt(s.expiryInterval, Date.now());
    if (this.persist !== null) this.persist.sessionPut(s);
  }

  /**
   * When an offline session with `interval` (seconds, NEVER_EXPIRES included) that went offline
   * at `from` (ms) ends, capped by persistent_client_expiration as Mosquitto does; 0 = never.
   */
  sessionExpiresAt(interval: number, from: number): number {
    const cap = this.options.persistentClientExpiration ?? 0;
    const secs = cap > 0 && (interval === NEVER_EXPIRES || interval > cap) ? cap : interval;
    return secs === NEVER_EXPIRES ? 0 : from + secs * 1000;
  }

  createSession(clientId: string): Session {
    const s = new Session(clientId);
    this.sessions.set(clientId, s);
    return s;
  }

  /** The session is over: subscriptions, queue and stored state go; a delayed will is sent now. */
  endSession(s: Session): void {
    if (this.sessions.get(s.clientId) === s) this.sessions.delete(s.clientId);
    if (s.hasSubscriptions) {
      for (const sub of s.subs.values()) this.router.remove(sub);
      s.subs.clear();
    }
    if (s.inflightCount > 0) s.inflight.clear();
    while (s.dequeue() !== undefined) {}
    releasePublishers(this, s, true);
    if (this.persist !== null && s.stored) this.persist.sessionDel(s);
    this.wills.fire(s.clientId);
  }

  assignClientId(): string {
    // randomUUID() builds its text from ~20 concatenations, a tree of cons strings (~480 bytes)
    // the session and the connection would hold for as long as it lives: one flat copy instead.
    return Buffer.from(`auto-${randomUUID()}`, 'latin1').toString('latin1');
  }

  // ---- messages ------------------------------------------------------------------------

  /** Publishes a message from the broker itself (wills, `$SYS`). */
  publish(msg: Message): void {
    if (msg.retain) this.retainMessage(msg);
    this.router.route(msg, null);
  }

  retainMessage(msg: Message): void {
    if (!this.retain.set(msg)) return;
    if (this.persist !== null && !msg.topic.startsWith('$SYS/')) {
      const kept = this.retain.get(msg.topic);
      if (kept === undefined) this.persist.retainDel(msg.topic);
      else this.persist.retainPut(kept);
    }
  }

  /** Counts (and, at most once a second, logs) a message not delivered to `s`. */
  dropped(s: Session | null, msg: Message, why: string, reason: DropReason): void {
    this.counters.dropped++;
    this.counters.drops[reason]++;
    this.droppedSinceLog++;
    const now = Date.now();
    if (now - this.lastDropLog >= 1000) {
      this.log('warning', 'message dropped', {
        clientId: s?.clientId,
        topic: msg.topic,
        reason: why,
        droppedSinceLastLog: this.droppedSinceLog,
      });
      this.lastDropLog = now;
      this.droppedSinceLog = 0;
    }
  }

  private sweep(): void {
    const now = Date.now();
    const tick = ticks();
    const connectTicks = this.options.connectTimeoutSeconds * TICKS_PER_SECOND;
    const slow = this.pendingSockets.expire(tick - connectTicks);
    if (slow > 0)
      this.log('notice', 'no TLS handshake or WebSocket upgrade in time, closing', { sockets: slow });
    for (const conn of this.connections) {
      if (conn.state === ConnState.AwaitConnect) {
        if (tick - conn.openedAt > connectTicks) {
          this.log('notice', 'no CONNECT in time, closing', { remote: conn.remote });
          conn.close();
        }
      } else if (
        conn.state === ConnState.Connected &&
        conn.keepaliveMs > 0 &&
        conn.pausedBy === 0 &&
        (tick - conn.lastRecv) * 10 > conn.keepaliveMs * 1.5
      ) {
        this.log('notice', 'keepalive expired, closing', { clientId: conn.clientId });
        conn.fail(ReasonCode.KeepAliveTimeout, 'keepalive timeout');
      }
    }
    for (const s of this.sessions.values()) {
      if (s.conn === null && s.expiresAt !== 0 && now >= s.expiresAt) {
        this.log('notice', `Expiring client ${s.clientId} due to timeout.`, { clientId: s.clientId });
        this.counters.sessionsExpired++;
        this.endSession(s);
      }
    }
  }
}
