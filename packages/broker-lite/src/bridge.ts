/**
 * Bridges: store-and-forward between this broker and upstream brokers, configured the Mosquitto
 * way (config-bridge.ts). Per bridge:
 *
 *   local session (bridge-local.ts: internal-client.ts, function calls)  --QoS 1/2--> durable queue --> remote client
 *   local session <-- publish as a client --  remote client (subscribed to the `in` topics)
 *
 * A QoS 1/2 message is acknowledged to this broker only once it is in the on-disk queue, so what
 * the broker acknowledged to its publisher survives a crash of either side and an upstream that
 * is away (the queue is bounded by bytes / count / age, with counted drops). QoS 0 goes out only
 * while connected (as in Mosquitto). The remote client connects through the address list, one
 * attempt at a time; nothing waits on it locally. Failover (issue 16): a connection that was up
 * and ends moves to the next address at once, failed attempts then go round the list every
 * second or so for FAILOVER_WINDOW_MS, and only after that does `restart_timeout` space them;
 * with `round_robin false` a bridge away from its first address probes it (TCP, as Mosquitto
 * does) and moves back once it answers.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import {
  type ClientOptions,
  DurableQueue,
  type DurableQueueEvent,
  type FsyncPolicy,
  MqttClient,
  type Outbox,
  type OutboxMessage,
  type ServerAddress,
} from '@mqtt-edge/client';
import { MAX_PACKET_SIZE, type Properties, type PublishPacket, type QoS } from '@mqtt-edge/codec';
import { LocalLink } from './bridge-local.ts';
import { CountingOutbox } from './bridge-queue.ts';
import { filtersOf, routesOf, type TopicRoute, toLocal, toRemote } from './bridge-topics.ts';
import type { Broker } from './broker.ts';
import { type BridgeConfig, bridgeSysName, defaultBridgeDir } from './config-bridge.ts';
import { type Message, makeMessage } from './message.ts';

export { defaultBridgeDir };

/** `idle`: start_type lazy, not connected and not trying until more than `threshold` are queued. */
export type BridgeState = 'starting' | 'connecting' | 'connected' | 'waiting' | 'idle' | 'stopped';

export interface BridgeStats {
  name: string;
  state: BridgeState;
  /** host:port of the current or next attempt. */
  address: string;
  /** Why the bridge is not connected (the last failure), undefined while connected. */
  lastError: string | undefined;
  connects: number;
  connectFailures: number;
  /** QoS 1/2 messages put into the queue / acknowledged by the remote. */
  outQueued: number;
  outAcked: number;
  /**
   * Messages not forwarded upstream: QoS 0 while down, too large, refused by a full queue, or
   * one the remote closes the connection on every time (issue 16.4).
   */
  outDropped: number;
  /**
   * QoS 1/2 messages the queue could not store (a full or failing disk): held unacknowledged by
   * the local session and stored, in order, once the queue writes again.
   */
  outHeld: number;
  inReceived: number;
  /** Incoming messages not published locally (no route, local queue full, too large here). */
  inDropped: number;
  loopsStopped: number;
  queue: { count: number; bytes: number; oldestAgeMs: number; droppedOldest: number; rejectedNew: number };
}

export interface BridgeOptions {
  /** Directory of bridge NAME's outgoing queue. Default: defaultBridgeDir(undefined, NAME). */
  queueDir?(name: string): string;
  /** Keep the bridges' local sessions across restarts (true when the broker persists sessions). */
  persistent?: boolean;
  /** The queues' fsync policy; default 'batch' (a message is acknowledged locally once synced). */
  fsync?: FsyncPolicy;
  /** Jitter source for restart_timeout backoff (tests). */
  random?: () => number;
  /** Wraps each bridge's on-disk queue (tests: a slow or failing disk). */
  wrapQueue?(queue: Outbox, name: string): Outbox;
  /**
   * Seconds between updates of the bridges' `$SYS/broker/connection/REMOTE_CLIENTID/...` counters; default
   * the broker's sys_interval, 0 disables.
   */
  sysInterval?: number;
  /**
   * Milliseconds between attempts to store messages held after a failed queue write (the queue's
   * retryIntervalMs too), and before messages the local broker refused with 0x97 go again.
   * Default 1000.
   */
  retryMs?: number;
  /** Tests: the remote connection's timeouts (default HANDSHAKE_TIMEOUT_MS, CONNACK_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  connackTimeoutMs?: number;
  /** Tests: ms between probes of the first address while on another (default PRIMARY_RETRY_MS). */
  primaryRetryMs?: number;
  /** Tests: FAILOVER_WINDOW_MS and SHORT_CONNECTION_MS. */
  failoverWindowMs?: number;
  shortConnectionMs?: number;
}

const MAX_PEM = 1024 * 1024;
const LOG_EVERY_MS = 10_000;
/**
 * An address that does not complete TCP (and TLS) within this is left for the next: a live node
 * answers a SYN in milliseconds, a dead host never does.
 */
const HANDSHAKE_TIMEOUT_MS = 5000;
/**
 * A node that accepted the connection is alive: its CONNACK may wait for the cluster (NATS holds
 * a CONNECT up to 4 s per JetStream request while it elects leaders, 4-12 s in all).
 */
const CONNACK_TIMEOUT_MS = 15_000;
/**
 * After a connection that was up ends, a failed attempt goes on to the next address at once, as
 * long as that address was not tried in the last FAILOVER_RETRY_MS (jittered down to half of it),
 * for this long; restart_timeout's backoff after. An attempt a node holds while its cluster
 * elects (NATS: 4 s) is then followed by the next at once, and a dead address costs no wait.
 */
const FAILOVER_WINDOW_MS = 30_000;
const FAILOVER_RETRY_MS = 1000;
/**
 * A connection that ends within this of coming up, during a failover, belongs to that failover
 * (NATS drops connections 4 s after they come up while a stream has no leader) rather than
 * starting a new one.
 */
const SHORT_CONNECTION_MS = 10_000;
/** The first attempt after a connection ended: at once, spread over this much across a fleet. */
const FAILOVER_SPREAD_MS = 250;
/** round_robin false: Mosquitto probes the first address every 5 s while on another one. */
const PRIMARY_RETRY_MS = 5000;
/** Longest wait between probes of a first address that took connections but no session. */
const PRIMARY_RETRY_MAX_MS = 60_000;
/** How long moving back to the first address waits for the messages in flight to be acknowledged. */
const SWITCH_DRAIN_MS = 2000;
/**
 * A message the remote will never take (NATS 2.9: QoS 2, a topic with '.' or ' ') makes it close
 * the connection as soon as it reads it, and the bridge sends it first again on every connection.
 * It is set aside once this many connections in a row ended, with that message in flight and
 * nothing acknowledged, about a round trip after the CONNACK: within the time the connection took
 * to come up (TCP, TLS, CONNECT: at least one round trip), at least POISON_CLOSE_MIN_MS, at most
 * POISON_CLOSE_MAX_MS. A QoS 2 one by sending QoS 2 at QoS 1 from then on, any other by dropping
 * it (counted, logged). Not counted: a cluster electing leaders holds a message for seconds (NATS:
 * 4 s) before it closes; another client taking the session over (two gateways with one
 * remote_clientid, e.g. two Pis both named raspberrypi) comes back no sooner than the failover's
 * 0.5-1 s per address, and by then the remote has acknowledged what we sent.
 */
const POISON_STRIKES = 3;
const POISON_CLOSE_MIN_MS = 100;
const POISON_CLOSE_MAX_MS = 2000;
/**
 * What publishing a message here can add to the packet it came in (MQTT 5 advertises the rest):
 * the path property (`mqtt-edge-bridge-path`, 34 bytes when new: identifier, two lengths, key, a
 * broker id), a property length and the remaining length growing by up to 3 bytes each. The
 * topic's growth (local prefix longer than the remote one) is added per bridge.
 */
const LOCAL_GROWTH = 64;

/** Log level and line per durable queue event (the event's fields go with it). */
const QUEUE_EVENT_LOG: Record<DurableQueueEvent['type'], ['error' | 'warning' | 'notice', string]> = {
  'write-failed': [
    'error',
    'bridge queue write failed (outgoing QoS 1/2 is held, not acknowledged locally, until it writes again)',
  ],
  'write-failing': ['warning', 'bridge queue still failing'],
  'write-recovered': ['notice', 'bridge queue writable again'],
  'drop-start': ['warning', 'bridge queue dropping the oldest messages'],
  'drop-summary': ['warning', 'bridge queue dropped the oldest messages'],
};

/** An outgoing QoS 1/2 message from the local session on its way into the queue. */
interface OutMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties: Properties | undefined;
  /** The local session's connection and delivery, for settling it. */
  gen: number;
  pid: number;
  /** Order of arrival from the local session. */
  seq: number;
  /** Put in a retry round (see storeHeld). */
  retry: boolean;
}

/** A put that failed because the disk did (full or failing): the message is held, not dropped. */
function isWriteFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'NO_SPACE' || code === 'FAILED';
}

function readPem(file: string): string {
  const s = readFileSync(file, 'utf8');
  if (s.length > MAX_PEM) throw new Error(`${file} is larger than ${MAX_PEM} bytes`);
  return s;
}

/** bridge_insecure: the certificate chain is verified, its host name is not (Mosquitto's meaning). */
function acceptAnyName(): undefined {
  return undefined;
}

/**
 * An MQTT 5 CONNECT answered the 3.1.1 way (return code 1, which is no MQTT 5 reason code, so the
 * CONNACK does not even parse) or with 0x84: the remote speaks 3.1.1 only (NATS, for one).
 */
function versionHint(v5: boolean, err: Error | undefined): string | undefined {
  if (!v5 || err === undefined) return undefined;
  const code = (err as { code?: unknown }).code;
  const reason = (err as { reasonCode?: unknown }).reasonCode;
  if (code === 'REASON_CODE_INVALID' || (code === 'CONNACK_REFUSED' && reason === 0x84))
    return 'the remote does not take MQTT 5 (NATS speaks 3.1.1 only): set bridge_protocol_version mqttv311';
  return undefined;
}

function describeError(err: Error | undefined): string {
  if (err === undefined) return 'connection closed';
  const code = (err as NodeJS.ErrnoException).code;
  return code !== undefined && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}

export class Bridge {
  state: BridgeState = 'starting';
  private client: MqttClient | null = null;
  private queue: CountingOutbox | null = null;
  private readonly local: LocalLink;
  private readonly outRoutes: TopicRoute[];
  private readonly inRoutes: TopicRoute[];
  private addr = 0;
  /** The client's bridgeMode marker was on for the attempt under way. */
  private markerTried = false;
  /** Addresses (indexes) that refused the marker (return code 1): not offered it again. */
  private readonly markerRefused = new Set<number>();
  /** When the connection that was up last ended, while no other has come up since (0: none). */
  private failingOverSince = 0;
  /** failingOverSince when the current connection came up: a short one continues that window. */
  private windowAtConnect = 0;
  /** When each address was last tried (ms since the epoch). */
  private readonly triedAt: number[];
  /** round_robin false, on another address: the probe of the first one. */
  private primaryTimer: NodeJS.Timeout | null = null;
  private primaryProbe: net.Socket | null = null;
  private primaryRetryMs: number;
  /** The connection is being ended to move back to the first address. */
  private switching = false;
  /** When the connection came up, and the remote's acknowledgements then (poison detection). */
  private connectedAt = 0;
  private acksAtConnect = 0;
  /** The oldest message when the last connections ended quickly with it in flight, and how many. */
  private strikeSeq = -1;
  private strikes = 0;
  private switchTimer: NodeJS.Timeout | null = null;
  private lastError: Error | undefined;
  private wasConnected = false;
  private backoffMs: number;
  private timer: NodeJS.Timeout | null = null;
  /** start_type lazy: the idle check while connected, the last message either way, an idle end. */
  private idleTimer: NodeJS.Timeout | null = null;
  private lastTraffic = 0;
  private endingIdle = false;
  private lastDropLog = 0;
  private lastRefusedLog = 0;
  /**
   * Outgoing messages the queue could not store, with every one that arrived after them, in
   * order of arrival; stored by retry rounds every retryMs (storeHeld) before anything new.
   */
  private held: OutMessage[] = [];
  private holdTimer: NodeJS.Timeout | null = null;
  /** Puts of the retry round under way, and whether one of them failed. */
  private roundPending = 0;
  private roundFailed = false;
  private outSeq = 0;
  private readonly retryMs: number;
  private readonly storeHeldNow = (): void => this.storeHeld();
  private readonly counters = {
    connects: 0,
    connectFailures: 0,
    outDropped: 0,
    inReceived: 0,
    inDropped: 0,
    /** Messages not moved because the loop guard saw they had been here. */
    loopsStopped: 0,
  };
  private readonly v5: boolean;
  private readonly random: () => number;
  /** One callback for every restart timer (no closure per attempt). */
  private readonly attemptNow = (): void => this.attempt();
  private readonly idleCheck = (): void => this.checkIdle();
  /** The client asks before each attempt: the address failover has chosen. */
  private readonly currentServer = (): ServerAddress => this.config.addresses[this.addr];

  constructor(
    private readonly broker: Broker,
    readonly config: BridgeConfig,
    private readonly options: BridgeOptions,
    /** This broker's id in loop-guard paths (one per startBridges call). */
    private readonly brokerId: string,
  ) {
    this.outRoutes = routesOf(config.topics, 'out');
    this.inRoutes = routesOf(config.topics, 'in');
    this.v5 = config.protocolVersion === 5;
    this.backoffMs = config.restartTimeout.baseSeconds * 1000;
    this.primaryRetryMs = options.primaryRetryMs ?? PRIMARY_RETRY_MS;
    this.triedAt = config.addresses.map(() => 0);
    this.random = options.random ?? Math.random;
    this.retryMs = options.retryMs ?? 1000;
    // Before any outside client can connect (startBridges runs right after listen()).
    broker.reserveClientId(config.localClientId);
    this.local = new LocalLink(
      broker,
      {
        clientId: config.localClientId,
        persistent: options.persistent === true,
        subscriptions: filtersOf(this.outRoutes, 'local').map((f) => ({ filter: f.filter, qos: f.qos })),
        maxPacket: broker.maxPacketIn,
        maxPayload: broker.options.messageSizeLimit,
        retainAvailable: broker.options.retainAvailable,
        retryMs: this.retryMs,
      },
      this,
    );
  }

  get name(): string {
    return this.config.name;
  }

  async start(): Promise<void> {
    const c = this.config;
    const dir = this.options.queueDir?.(c.name) ?? defaultBridgeDir(undefined, c.name);
    const q = await DurableQueue.open(dir, {
      fsync: this.options.fsync ?? 'batch',
      maxBytes: c.queueMaxBytes > 0 ? c.queueMaxBytes : undefined,
      maxCount: c.queueMaxCount > 0 ? c.queueMaxCount : undefined,
      maxAgeMs: c.queueMaxAgeSeconds > 0 ? c.queueMaxAgeSeconds * 1000 : undefined,
      dropPolicy: c.queueDropPolicy,
      retryIntervalMs: this.retryMs,
      onEvent: this.onQueueEvent,
    });
    this.queue = new CountingOutbox(this.options.wrapQueue?.(q, c.name) ?? q);
    const backlog = this.queue.stored();
    this.broker.log('notice', 'bridge starting', {
      bridge: c.name,
      addresses: c.addresses.map((a) => `${a.host}:${a.port}`).join(' '),
      queueDir: dir,
      queued: backlog,
    });
    this.notifyLocal(false);
    this.local.start();
    if (c.startType === 'lazy' && backlog <= c.threshold) this.state = 'idle';
    else this.attempt();
  }

  stats(): BridgeStats {
    const a = this.config.addresses[this.addr];
    const qs = this.queue?.stats();
    return {
      name: this.config.name,
      state: this.state,
      address: `${a.host}:${a.port}`,
      lastError: this.state === 'connected' ? undefined : this.lastError?.message,
      ...this.counters,
      outHeld: this.held.length + this.roundPending,
      outQueued: this.queue?.puts ?? 0,
      outAcked: this.queue?.acks ?? 0,
      inDropped: this.counters.inDropped + this.local.dropped,
      queue: {
        count: qs?.count ?? 0,
        bytes: qs?.bytes ?? 0,
        oldestAgeMs: qs?.oldestAgeMs ?? 0,
        droppedOldest: qs?.droppedOldest ?? 0,
        rejectedNew: qs?.rejectedNew ?? 0,
      },
    };
  }

  /** Disconnects (the remote keeps the session unless cleansession), keeps the queue on disk. */
  async close(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.stopPrimaryProbe();
    if (this.switchTimer !== null) clearTimeout(this.switchTimer);
    this.switchTimer = null;
    // Held messages stay unacknowledged in the local session (kept with persistence on).
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const client = this.client;
    if (client !== null) {
      if (client.connected && this.config.notifications && !this.config.notificationsLocalOnly)
        client.publish(this.config.notificationTopic, '0', { qos: 0, retain: true }).catch(() => {});
      await client.end();
    }
    this.notifyLocal(false);
    this.local.close();
    await this.queue?.close();
    this.broker.log('notice', 'bridge stopped', { bridge: this.config.name });
  }

  // ---- the remote side -----------------------------------------------------------------

  private clientOptions(): ClientOptions {
    const c = this.config;
    const o: ClientOptions = {
      resolveServer: this.currentServer,
      protocol: c.cafile !== undefined ? 'mqtts' : 'mqtt',
      protocolVersion: c.protocolVersion,
      clientId: c.remoteClientId,
      clean: c.cleanSession,
      keepalive: c.keepalive,
      reconnect: false,
      resubscribe: false,
      handshakeTimeout: this.options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      connectTimeout: this.options.connackTimeoutMs ?? CONNACK_TIMEOUT_MS,
      outbox: this.queue!,
      // Mosquitto's try_private (3.1.1 only): offered per address until that address refuses it.
      bridgeMode: c.tryPrivate,
      // Upstream is acknowledged once the local broker took a message (localDone), not before.
      manualAcks: true,
      maximumPacketSize: this.incomingMaximum(),
    };
    if (c.cafile !== undefined) {
      o.ca = readPem(c.cafile);
      if (c.certfile !== undefined) o.cert = readPem(c.certfile);
      if (c.keyfile !== undefined) o.key = readPem(c.keyfile);
      // As Mosquitto: the chain is still verified, only the host name is not.
      if (c.insecure) o.checkServerIdentity = acceptAnyName;
    }
    if (c.remoteUsername !== undefined) o.username = c.remoteUsername;
    if (c.remotePassword !== undefined) o.password = c.remotePassword;
    if (this.v5 && !c.cleanSession) o.sessionExpiryInterval = 0xffff_ffff;
    // Unacknowledged messages wait in the local link (its window and queue) while this broker
    // refuses them (0x97): an MQTT 5 remote never sends more than that holds.
    if (this.v5) o.receiveMaximum = Math.min(65_535, this.local.capacity);
    if (c.notifications && !c.notificationsLocalOnly)
      o.will = { topic: c.notificationTopic, payload: '0', qos: 1, retain: true };
    return o;
  }

  /**
   * The largest packet taken from upstream. MQTT 5: what this broker accepts from the bridge
   * (max_packet_size, message_size_limit, the re-encoding bound) less what publishing it here
   * adds, advertised in CONNECT, so the remote never sends a message this broker would refuse
   * (a remote drops it for this client, as for any client with a smaller maximum). 3.1.1 cannot
   * say so: anything MQTT allows is read, and what is too large here is dropped (counted) and
   * acknowledged, since it can never be delivered; refused from its header instead, it would
   * close the connection and be sent again on every reconnect. bridge_max_packet_size, when
   * set, is the bound either way (larger packets close the connection, as documented).
   */
  private incomingMaximum(): number {
    const c = this.config;
    let max = MAX_PACKET_SIZE;
    if (this.v5) {
      let growth = 0;
      for (const r of this.inRoutes)
        growth = Math.max(growth, Buffer.byteLength(r.localPrefix) - Buffer.byteLength(r.remotePrefix));
      max = this.broker.maxPacketIn - growth - LOCAL_GROWTH;
    }
    if (c.maxPacketSize > 0) max = Math.min(max, c.maxPacketSize);
    return Math.max(16, max);
  }

  private makeClient(): MqttClient {
    const client = new MqttClient(this.clientOptions());
    client.on('transportError', (err) => {
      this.lastError = err;
    });
    client.on('connect', (e) => this.onConnect(e.sessionPresent, e.properties?.maximumQoS));
    client.on('message', (topic, payload, packet) => this.onRemoteMessage(topic, payload, packet));
    client.on('error', (err) => {
      this.lastError = err;
    });
    client.on('close', (e) => {
      if (e?.error !== undefined) this.lastError = e.error;
    });
    client.on('end', () => this.onEnd());
    return client;
  }

  private attempt(): void {
    this.timer = null;
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    this.lastError = undefined;
    this.wasConnected = false;
    this.triedAt[this.addr] = Date.now();
    if (this.client === null) {
      // The constructor connects to the first address, which has refused nothing yet.
      this.client = this.makeClient();
      this.markerTried = this.client.session.bridgeMarker;
      return;
    }
    const session = this.client.session;
    session.bridgeMarker = !this.markerRefused.has(this.addr);
    this.markerTried = session.bridgeMarker;
    this.client.reconnect();
  }

  private onConnect(sessionPresent: boolean, maximumQoS: QoS | undefined): void {
    const c = this.config;
    const a = c.addresses[this.addr];
    this.state = 'connected';
    this.connectedAt = Date.now();
    this.acksAtConnect = this.queue?.acks ?? 0;
    // 5.0: the remote says what it takes; QoS 2 goes out at its maximum rather than refused.
    if (maximumQoS !== undefined && this.queue !== null && maximumQoS < this.queue.maxQos) {
      this.queue.downgrade(maximumQoS);
      this.broker.log(
        'warning',
        'bridge: the remote takes at most QoS ' + maximumQoS + ', outgoing messages above it are sent at it',
        {
          bridge: c.name,
          address: `${a.host}:${a.port}`,
        },
      );
    }
    this.wasConnected = true;
    this.counters.connects++;
    this.backoffMs = c.restartTimeout.baseSeconds * 1000;
    const failedOverMs = this.failingOverSince > 0 ? Date.now() - this.failingOverSince : undefined;
    this.windowAtConnect = this.failingOverSince;
    this.failingOverSince = 0;
    if (this.addr === 0) this.primaryRetryMs = this.options.primaryRetryMs ?? PRIMARY_RETRY_MS;
    else if (!c.roundRobin) this.schedulePrimaryProbe();
    if (c.startType === 'lazy') {
      this.lastTraffic = Date.now();
      this.idleTimer = setTimeout(this.idleCheck, c.idleTimeoutSeconds * 1000);
    }
    this.broker.log('notice', 'bridge connected', {
      bridge: c.name,
      address: `${a.host}:${a.port}`,
      bridgeMarker: this.markerTried,
      sessionPresent,
      queued: this.queue?.stats().count ?? 0,
      failedOverMs,
    });
    const client = this.client!;
    if (this.inRoutes.length > 0 && !sessionPresent) {
      const subs = filtersOf(this.inRoutes, 'remote').map((f) => ({
        filter: f.filter,
        qos: f.qos,
        // 5.0: what we publish there is not sent back to us (3.1.1: the bridge bit does that).
        noLocal: this.v5 && c.tryPrivate ? true : undefined,
        retainAsPublished: this.v5 ? true : undefined,
      }));
      client.subscribe(subs).then(
        (r) => {
          const refused = r.granted.filter((g) => g.qos >= 0x80).map((g) => g.filter);
          if (refused.length > 0)
            this.broker.log('warning', 'bridge subscription refused by the remote', {
              bridge: c.name,
              filters: refused.join(' '),
            });
        },
        () => {},
      );
    }
    if (c.notifications) {
      if (!c.notificationsLocalOnly)
        client.publish(c.notificationTopic, '1', { qos: 0, retain: true }).catch(() => {});
      this.notifyLocal(true);
    }
  }

  private onEnd(): void {
    if (this.state === 'stopped') return;
    const c = this.config;
    const a = c.addresses[this.addr];
    const err = this.lastError;
    const wasConnected = this.wasConnected;
    this.state = 'waiting';
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.stopPrimaryProbe();
    this.queue?.holdReads(false);
    const switching = this.switching;
    this.switching = false;
    if (this.switchTimer !== null) clearTimeout(this.switchTimer);
    this.switchTimer = null;
    if (wasConnected && c.notifications) this.notifyLocal(false);
    if (this.endingIdle) {
      this.endingIdle = false;
      this.state = 'idle';
      this.addr = 0;
      // An ended MqttClient does not reconnect (reconnect() is a no-op after end()): the next
      // start makes a new one; until then the queue takes messages directly.
      this.client = null;
      this.broker.log('notice', 'bridge idle: disconnected (start_type lazy)', {
        bridge: c.name,
        address: `${a.host}:${a.port}`,
        idleTimeout: c.idleTimeoutSeconds,
      });
      // Messages may have come in while the connection was ending.
      this.maybeStartLazy();
      return;
    }
    if (!wasConnected && this.markerTried && this.client?.session.bridgeMarker === false) {
      // Not a Mosquitto: it refused the bridge bit (return code 1), and the client dropped it.
      // Mosquitto retries without it at once; so do we, and this address is not offered it again
      // (said once per address: NATS, for one, always refuses it).
      this.markerRefused.add(this.addr);
      this.broker.log(
        'notice',
        'bridge: the remote refused the bridge protocol marker (try_private); retrying without it, and not offering it to this address again',
        {
          bridge: c.name,
          address: `${a.host}:${a.port}`,
        },
      );
      this.timer = setTimeout(this.attemptNow, 0);
      return;
    }
    if (!wasConnected) this.counters.connectFailures++;
    else if (!switching) this.checkPoison();
    const now = Date.now();
    // A connection that was up ends: failover starts, unless that connection was a short one in a
    // failover still under way (a remote that takes connections and drops them soon after must
    // not keep the bridge retrying at once for ever: the window runs out, restart_timeout follows).
    // Moving back to the first address starts afresh.
    if (wasConnected)
      this.failingOverSince =
        !switching &&
        this.windowAtConnect > 0 &&
        now - this.connectedAt < (this.options.shortConnectionMs ?? SHORT_CONNECTION_MS)
          ? this.windowAtConnect
          : now;
    else if (this.addr === 0 && switching === false && this.failingOverSince > 0 && c.addresses.length > 1)
      // Moving back to the first address did not give a session (the node takes connections
      // but its cluster is not ready for it yet): probe it less often.
      this.primaryRetryMs = Math.min(PRIMARY_RETRY_MAX_MS, this.primaryRetryMs * 2);
    const failingOver =
      this.failingOverSince > 0 &&
      now - this.failingOverSince < (this.options.failoverWindowMs ?? FAILOVER_WINDOW_MS);
    // As Mosquitto: every end moves on to the next address (round_robin false comes back to the
    // first through the probe), except an end made to move back to the first one.
    if (switching) this.addr = 0;
    else this.addr = (this.addr + 1) % c.addresses.length;
    // Failing over: the next address now (spread a little across a fleet), each address again
    // once a second has passed since it was last tried; otherwise restart_timeout.
    let delay: number;
    if (!failingOver) delay = this.nextDelay();
    else {
      delay = Math.max(
        0,
        Math.floor(this.triedAt[this.addr] + FAILOVER_RETRY_MS * (0.5 + this.random() / 2) - now),
      );
      if (wasConnected) delay = Math.max(delay, Math.floor(this.random() * FAILOVER_SPREAD_MS));
    }
    const next = c.addresses[this.addr];
    if (c.startType === 'lazy' && (this.queue?.stored() ?? 0) <= c.threshold) {
      // Nothing worth a connection is waiting: idle until the threshold is passed again.
      this.broker.log(
        'notice',
        wasConnected ? 'bridge disconnected (idle now)' : 'bridge connect failed (idle now)',
        {
          bridge: c.name,
          address: `${a.host}:${a.port}`,
          reason: describeError(err),
        },
      );
      this.state = 'idle';
      return;
    }
    if (c.startType === 'once') {
      this.broker.log('warning', 'bridge down (start_type once: not restarting)', {
        bridge: c.name,
        address: `${a.host}:${a.port}`,
        reason: describeError(err),
      });
      this.state = 'stopped';
      return;
    }
    this.broker.log(
      wasConnected ? 'warning' : 'notice',
      wasConnected ? 'bridge disconnected' : 'bridge connect failed',
      {
        bridge: c.name,
        address: `${a.host}:${a.port}`,
        reason: switching ? 'moving back to the first address' : describeError(err),
        retryInMs: delay,
        nextAddress: `${next.host}:${next.port}`,
        queued: this.queue?.stats().count ?? 0,
        hint: wasConnected ? undefined : versionHint(this.v5, err),
      },
    );
    this.timer = setTimeout(this.attemptNow, delay);
  }

  // ---- messages the remote never takes -----------------------------------------------------

  /** After a connection ended (not by us): was it the remote refusing the oldest message again? */
  private checkPoison(): void {
    const q = this.queue;
    const client = this.client;
    if (q === null || client === null) return;
    const upMs = this.connectedAt - this.triedAt[this.addr];
    const within = Math.min(POISON_CLOSE_MAX_MS, Math.max(POISON_CLOSE_MIN_MS, upMs));
    const quick = Date.now() - this.connectedAt < within && q.acks === this.acksAtConnect;
    const head = quick ? q.head() : undefined;
    if (head === undefined || client.session.packetIdOf(head.seq) === undefined) {
      this.strikes = 0;
      this.strikeSeq = -1;
      return;
    }
    if (head.seq === this.strikeSeq) this.strikes++;
    else {
      this.strikeSeq = head.seq;
      this.strikes = 1;
    }
    if (this.strikes < POISON_STRIKES) return;
    this.strikes = 0;
    this.strikeSeq = -1;
    const m = head.message;
    const fields = {
      bridge: this.config.name,
      topic: m.topic.length > 200 ? `${m.topic.slice(0, 200)}...` : m.topic,
      qos: m.qos,
      bytes: m.payload.length,
      closes: POISON_STRIKES,
    };
    if (m.qos === 2 && q.maxQos === 2) {
      q.downgrade(1);
      this.broker.log(
        'warning',
        'bridge: the remote closes the connection on QoS 2 messages (it does not take QoS 2, as NATS 2.9): outgoing QoS 2 is sent at QoS 1 from now on',
        fields,
      );
      return;
    }
    const gaveUp = q.givingUpOn(head.seq, () => {
      if (!client.session.giveUp(head.seq)) return false;
      // The queue is the client's store, fed to the session: out of it here.
      if (client.session.outbox === null) q.ack(head.seq);
      return true;
    });
    if (!gaveUp) return;
    this.counters.outDropped++;
    this.broker.log(
      'error',
      'bridge: the remote closes the connection on this message every time (NATS 2.9: a topic with "." or " "); dropped',
      fields,
    );
  }

  // ---- back to the first address (round_robin false) -------------------------------------

  private schedulePrimaryProbe(): void {
    this.stopPrimaryProbe();
    this.primaryTimer = setTimeout(this.probePrimaryNow, this.primaryRetryMs);
  }

  private stopPrimaryProbe(): void {
    if (this.primaryTimer !== null) clearTimeout(this.primaryTimer);
    this.primaryTimer = null;
    this.primaryProbe?.destroy();
    this.primaryProbe = null;
  }

  private readonly probePrimaryNow = (): void => this.probePrimary();

  /**
   * Mosquitto's primary_retry: a TCP connection to the first address; once one opens, the
   * bridge leaves the address it is on and connects there.
   */
  private probePrimary(): void {
    this.primaryTimer = null;
    if (this.state !== 'connected' || this.addr === 0) return;
    const a = this.config.addresses[0];
    const s = net.connect({ host: a.host, port: a.port });
    this.primaryProbe = s;
    s.setTimeout(this.options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
    const failed = (): void => {
      if (this.primaryProbe !== s) return;
      s.destroy();
      this.primaryProbe = null;
      if (this.state === 'connected') this.schedulePrimaryProbe();
    };
    s.once('error', failed);
    s.once('timeout', failed);
    s.once('connect', () => {
      s.destroy();
      if (this.primaryProbe !== s) return;
      this.primaryProbe = null;
      this.moveToPrimary();
    });
  }

  /**
   * Ends the connection to go back to the first address: no new message is sent, those in
   * flight get SWITCH_DRAIN_MS to be acknowledged (not sent twice), then a DISCONNECT.
   */
  private moveToPrimary(): void {
    const client = this.client;
    if (client === null || this.state !== 'connected' || this.switching) return;
    const a = this.config.addresses[0];
    this.broker.log('notice', 'bridge: the first address takes connections again, moving back to it', {
      bridge: this.config.name,
      address: `${a.host}:${a.port}`,
    });
    this.switching = true;
    this.queue!.holdReads(true);
    const end = (): void => {
      this.switchTimer = null;
      if (this.switching && this.client === client) client.end().catch(() => {});
    };
    if (client.session.inflightCount === 0) end();
    else {
      this.switchTimer = setTimeout(end, SWITCH_DRAIN_MS);
      // Called from inside the session's handling of an acknowledgement: end after it.
      this.queue!.onDrained = () => {
        if (client.session.inflightCount > 0 || this.switchTimer === null) return;
        clearTimeout(this.switchTimer);
        this.switchTimer = setTimeout(end, 0);
      };
    }
  }

  /** restart_timeout: one value is a constant; two are Mosquitto 2's decorrelated jitter (base, cap). */
  private nextDelay(): number {
    const { baseSeconds, capSeconds } = this.config.restartTimeout;
    const base = baseSeconds * 1000;
    if (capSeconds === undefined) return base;
    this.backoffMs = nextBackoff(this.backoffMs, base, capSeconds * 1000, this.random);
    return this.backoffMs;
  }

  /** start_type lazy: idle_timeout seconds with no message either way and nothing queued. */
  private checkIdle(): void {
    this.idleTimer = null;
    const client = this.client;
    if (this.state !== 'connected' || client === null) return;
    const idleMs = this.config.idleTimeoutSeconds * 1000;
    const quietMs = Date.now() - this.lastTraffic;
    if (quietMs < idleMs || (this.queue?.stats().count ?? 0) > 0) {
      this.idleTimer = setTimeout(this.idleCheck, Math.max(100, idleMs - quietMs));
      return;
    }
    this.endingIdle = true;
    if (this.config.notifications && !this.config.notificationsLocalOnly)
      client.publish(this.config.notificationTopic, '0', { qos: 0, retain: true }).catch(() => {});
    client.end().catch(() => {});
  }

  /**
   * start_type lazy: connect once more than `threshold` messages are on disk. Counted once
   * stored, not when put() is called: a connection made for messages still being written would
   * find fewer to send than the threshold promised.
   */
  private maybeStartLazy(): void {
    if (this.state !== 'idle') return;
    if ((this.queue?.stored() ?? 0) > this.config.threshold) this.attempt();
  }

  /** Puts a message into the queue; through the client once there is one (it sends it if up). */
  private enqueue(
    topic: string,
    payload: Uint8Array,
    qos: QoS,
    retain: boolean,
    properties: Properties | undefined,
  ): Promise<number> {
    if (this.client !== null) return this.client.enqueue(topic, payload, { qos, retain, properties });
    const m: OutboxMessage = { topic, payload, qos, retain };
    if (properties !== undefined) m.properties = properties;
    return this.queue!.put(m).then(this.afterDirectPut);
  }

  /**
   * A put made while there was no client may finish after a client was made (lazy start) and
   * after its first reads of the queue: have it read again, or the message would wait there
   * until the next acknowledgement or connection.
   */
  private readonly afterDirectPut = (seq: number): number => {
    this.client?.outboxChanged();
    return seq;
  };

  /**
   * A message from upstream. QoS 1/2 is acknowledged upstream (manualAcks) once the local broker
   * took it (localDone), or when it is dropped here for good; never for a message the local
   * broker refused for now (0x97: its disk is full), which the local link sends again.
   */
  private onRemoteMessage(topic: string, payload: Uint8Array, packet: PublishPacket): void {
    this.counters.inReceived++;
    this.lastTraffic = Date.now();
    const r = toLocal(this.inRoutes, topic);
    if (r === undefined) {
      this.counters.inDropped++;
      this.client?.ack(packet);
      return;
    }
    const qos = Math.min(packet.qos, r.qos) as QoS;
    let props = this.v5 ? forwardable(packet.properties) : undefined;
    const path = pathOf(props);
    if (path !== undefined && hasId(path, this.brokerId)) {
      this.counters.loopsStopped++;
      this.client?.ack(packet);
      return;
    }
    props = withPath(props, path === undefined ? this.brokerId : `${path},${this.brokerId}`);
    if (qos === 0) {
      if (!this.local.publish(r.topic, payload, 0, packet.retain, props)) this.logDrop('local queue full');
      // The remote's QoS 1/2 taken here at QoS 0 (the route's QoS): done once handed over.
      this.client?.ack(packet);
    } else if (!this.local.publish(r.topic, payload, qos, packet.retain, props, packet)) {
      if (this.state === 'stopped') return;
      this.logDrop('local queue full');
      this.client?.ack(packet);
    }
  }

  // ---- the local side ------------------------------------------------------------------

  /** @internal LocalLinkOwner */
  localDone(token: object, taken: boolean, why: string | undefined): void {
    if (!taken) {
      this.counters.inDropped++;
      this.logDrop(why ?? 'refused by the local broker');
    }
    this.client?.ack(token as PublishPacket);
  }

  /** @internal LocalLinkOwner */
  localRefused(count: number, retryMs: number): void {
    const now = Date.now();
    if (now - this.lastRefusedLog < LOG_EVERY_MS) return;
    this.lastRefusedLog = now;
    this.broker.log('warning', 'bridge: the local broker refused a message, retrying', {
      bridge: this.config.name,
      reason: 'quota exceeded (0x97): its persistence cannot write',
      refused: count,
      retryInMs: retryMs,
      effect: 'not acknowledged upstream until the local broker takes it',
    });
  }

  /** @internal LocalLinkOwner */
  localUp(): void {
    this.broker.log('information', 'bridge local session up', { bridge: this.config.name });
  }

  /** @internal LocalLinkOwner */
  localDown(reason: string): void {
    if (this.state !== 'stopped')
      this.broker.log('warning', 'bridge local session down', { bridge: this.config.name, reason });
  }

  /** @internal LocalLinkOwner */
  localMessage(
    msg: Message,
    localQos: QoS,
    localRetain: boolean,
    localProps: Properties | undefined,
    pid: number,
    gen: number,
  ): void {
    const c = this.config;
    this.lastTraffic = Date.now();
    const r = toRemote(this.outRoutes, msg.topic);
    if (r === undefined) {
      this.local.ackIn(gen, pid);
      return;
    }
    const qos = Math.min(localQos, r.qos) as QoS;
    const retain = c.outgoingRetain && localRetain;
    const path = pathOf(localProps);
    if (path !== undefined && hasId(path, this.brokerId) && !path.endsWith(this.brokerId)) {
      this.counters.loopsStopped++;
      this.local.ackIn(gen, pid);
      return;
    }
    let properties = this.v5 ? forwardable(localProps) : undefined;
    // Stamped with this broker unless it is already in the path (it came in through a bridge).
    if (this.v5 && (path === undefined || !hasId(path, this.brokerId)))
      properties = withPath(properties, path === undefined ? this.brokerId : `${path},${this.brokerId}`);
    // A PUBLISH the remote would refuse as too large is dropped here, not retried for ever.
    if (c.maxPacketSize > 0 && msg.payload.length + r.topic.length * 3 + 16 > c.maxPacketSize) {
      this.counters.outDropped++;
      this.logDrop('larger than bridge_max_packet_size');
      this.local.ackIn(gen, pid);
      return;
    }
    if (qos === 0) {
      const client = this.client;
      if (client?.connected)
        client.publish(r.topic, msg.payload, { qos: 0, retain, properties }).catch(() => {});
      else {
        this.counters.outDropped++;
        this.logDrop('QoS 0 while the bridge is down');
      }
      this.local.ackIn(gen, pid);
      return;
    }
    // Into the queue whatever the remote's state; settled here once stored, sent when
    // connected. A payload not owned by the message views its publisher's socket chunk.
    const m: OutMessage = {
      topic: r.topic,
      payload: msg.owned ? msg.payload : msg.payload.slice(),
      qos,
      retain,
      properties,
      gen,
      pid,
      seq: this.outSeq++,
      retry: false,
    };
    // Behind messages held after a failed write: they go first, in order.
    if (this.held.length > 0 || this.holdTimer !== null || this.roundPending > 0) this.held.push(m);
    else this.store(m);
  }

  private store(m: OutMessage): void {
    this.enqueue(m.topic, m.payload, m.qos, m.retain, m.properties).then(
      () => this.stored(m),
      (err: unknown) => this.notStored(m, err),
    );
  }

  private stored(m: OutMessage): void {
    this.local.ackIn(m.gen, m.pid);
    if (this.config.startType === 'lazy') this.maybeStartLazy();
    if (m.retry) this.roundSettled();
  }

  /**
   * The queue did not store `m`. Its disk failed (full, or an I/O error): `m` is held, not
   * acknowledged here, and stored by the next retry round; the local broker keeps it in the
   * bridge's session meanwhile. A bound of the queue (reject-new) or a message it can never take
   * (too large, malformed): counted and dropped, acknowledged here so that it does not stall
   * the session, like a full queue in Mosquitto (max_queued_messages). The queue closed (the
   * bridge stops): left unacknowledged, the session keeps it.
   */
  private notStored(m: OutMessage, err: unknown): void {
    if (isWriteFailure(err)) {
      insertBySeq(this.held, m);
      if (m.retry) {
        this.roundFailed = true;
        this.roundSettled();
      } else if (this.holdTimer === null && this.roundPending === 0) {
        this.holdTimer = setTimeout(this.storeHeldNow, this.retryMs);
      }
      return;
    }
    if (m.retry) this.roundSettled();
    if ((err as { code?: unknown } | null)?.code === 'CLOSED' || this.state === 'stopped') return;
    this.counters.outDropped++;
    this.logDrop((err as Error).message);
    this.local.ackIn(m.gen, m.pid);
  }

  /**
   * A retry round: every held message is put again, in order. The queue stores a prefix of them
   * and refuses the rest if the disk is still full (a failed write rejects every put waiting on
   * it), so order is kept; what is refused waits for the next round, retryMs later.
   */
  private storeHeld(): void {
    this.holdTimer = null;
    if (this.state === 'stopped') return;
    const round = this.held;
    this.held = [];
    this.roundPending = round.length;
    this.roundFailed = false;
    for (const m of round) {
      m.retry = true;
      this.store(m);
    }
  }

  private roundSettled(): void {
    if (--this.roundPending > 0) return;
    if (this.held.length === 0 || this.state === 'stopped') return;
    // Failed: wait for the disk. Stored whole: what arrived meanwhile goes at once.
    if (this.roundFailed) this.holdTimer = setTimeout(this.storeHeldNow, this.retryMs);
    else this.storeHeld();
  }

  /** The durable queue's failure and drop reports, as log lines (one per spell, summaries). */
  private readonly onQueueEvent = (e: DurableQueueEvent): void => {
    const { type, ...fields } = e;
    const [level, message] = QUEUE_EVENT_LOG[type];
    this.broker.log(level, message, {
      bridge: this.config.name,
      ...fields,
      held: this.held.length + this.roundPending,
    });
  };

  private notifyLocal(up: boolean): void {
    if (!this.config.notifications) return;
    const msg = makeMessage(
      this.config.notificationTopic,
      new Uint8Array([up ? 0x31 : 0x30]),
      1,
      true,
      undefined,
      Date.now(),
    );
    msg.owned = true;
    this.broker.publish(msg);
  }

  /**
   * Retained `$SYS/broker/connection/ID/...` counters (published when changed, not persisted),
   * beside the state topic's default (bridgeSysName).
   */
  publishSys(): void {
    const st = this.stats();
    const prefix = `$SYS/broker/connection/${bridgeSysName(this.config)}/`;
    const values: Array<[string, number | string]> = [
      ['connects', st.connects],
      ['connect_failures', st.connectFailures],
      ['messages/queued', st.queue.count],
      ['bytes/queued', st.queue.bytes],
      ['messages/sent', st.outAcked],
      ['messages/received', st.inReceived],
      ['messages/dropped', st.outDropped + st.queue.droppedOldest + st.inDropped],
      ['last_error', st.lastError ?? ''],
      // broker-lite's own: what `state` (1/0) does not say, e.g. idle (lazy) or waiting to retry.
      ['bridge_state', st.state],
    ];
    for (const [name, value] of values) {
      const topic = prefix + name;
      const payload = Buffer.from(String(value));
      const prev = this.broker.retain.get(topic);
      if (prev !== undefined && Buffer.compare(prev.payload, payload) === 0) continue;
      const msg = makeMessage(topic, payload, 0, true, undefined, Date.now());
      msg.owned = true;
      this.broker.publish(msg);
    }
  }

  private logDrop(reason: string): void {
    const now = Date.now();
    if (now - this.lastDropLog < LOG_EVERY_MS) return;
    this.lastDropLog = now;
    this.broker.log('warning', 'bridge dropped messages', {
      bridge: this.config.name,
      reason,
      outDropped: this.counters.outDropped,
      inDropped: this.counters.inDropped + this.local.dropped,
    });
  }
}

/**
 * Loop guard for MQTT 5 bridges: a user property listing the brokers (bridge-set ids) a message
 * has been moved through. A bridge does not bring a message into a broker it has been in, and
 * does not send out again a message that came back (its broker in the path but not last). So two
 * brokers bridged to each other in both directions on `#` deliver a message a bounded number of
 * times instead of for ever. Mosquitto has no such marker; with 3.1.1 only no-local (local
 * side) and try_private (a Mosquitto remote) prevent loops.
 */
export const PATH_PROPERTY = 'mqtt-edge-bridge-path';

function pathOf(p: Properties | undefined): string | undefined {
  const ups = p?.userProperties;
  if (ups === undefined) return undefined;
  for (let i = 0; i < ups.length; i++) if (ups[i][0] === PATH_PROPERTY) return ups[i][1];
  return undefined;
}

/** Inserts `m` into `list` (ordered by seq): put failures usually come in order, so from the end. */
function insertBySeq(list: OutMessage[], m: OutMessage): void {
  let i = list.length;
  while (i > 0 && list[i - 1].seq > m.seq) i--;
  list.splice(i, 0, m);
}

function hasId(path: string, id: string): boolean {
  return path === id || path.startsWith(`${id},`) || path.endsWith(`,${id}`) || path.includes(`,${id},`);
}

/** `p` with the path property set to `path` (a new object: the original is shared by subscribers). */
function withPath(p: Properties | undefined, path: string): Properties {
  const ups = (p?.userProperties ?? []).filter((u) => u[0] !== PATH_PROPERTY);
  ups.push([PATH_PROPERTY, path]);
  return { ...p, userProperties: ups };
}

/** Subscription identifiers and topic aliases belong to one hop. */
function forwardable(p: Properties | undefined): Properties | undefined {
  if (p === undefined) return undefined;
  if (
    p.subscriptionIdentifier === undefined &&
    p.subscriptionIdentifiers === undefined &&
    p.topicAlias === undefined
  )
    return p;
  const { subscriptionIdentifier: _a, subscriptionIdentifiers: _b, topicAlias: _c, ...rest } = p;
  for (const _k in rest) return rest;
  return undefined;
}

/**
 * Mosquitto 2's restart_timeout backoff ("decorrelated jitter"): the next delay is a random
 * value between `base` and three times the previous delay, at most `cap` (all in ms;
 * `random()` in [0, 1)).
 */
export function nextBackoff(prevMs: number, baseMs: number, capMs: number, random: () => number): number {
  const hi = Math.max(baseMs, prevMs * 3);
  return Math.min(capMs, Math.floor(baseMs + random() * (hi - baseMs)));
}

/** What startBridges returns. */
export interface Bridges {
  readonly list: Bridge[];
  stats(): BridgeStats[];
  close(): Promise<void>;
}

/**
 * Starts every configured bridge on `broker` (after broker.listen()). Resolves once each
 * bridge's queue is open; connecting happens in the background.
 */
export async function startBridges(
  broker: Broker,
  configs: BridgeConfig[],
  options: BridgeOptions = {},
): Promise<Bridges> {
  const brokerId = randomBytes(6).toString('base64url');
  const list: Bridge[] = [];
  for (const c of configs) list.push(new Bridge(broker, c, options, brokerId));
  try {
    for (const b of list) await b.start();
  } catch (err) {
    for (const b of list) await b.close().catch(() => {});
    throw err;
  }
  const sysSeconds = options.sysInterval ?? broker.options.sysInterval;
  let sysTimer: NodeJS.Timeout | null = null;
  if (sysSeconds > 0 && list.length > 0) {
    const publishAll = (): void => {
      for (const b of list) b.publishSys();
    };
    publishAll();
    sysTimer = setInterval(publishAll, sysSeconds * 1000);
    sysTimer.unref();
  }
  const stats = (): BridgeStats[] => list.map((b) => b.stats());
  broker.bridgeStats = stats;
  return {
    list,
    stats,
    close: async () => {
      if (broker.bridgeStats === stats) broker.bridgeStats = null;
      if (sysTimer !== null) clearInterval(sysTimer);
      await Promise.all(list.map((b) => b.close()));
    },
  };
}
