/**
 * The agent: serial ports -> port sessions -> mapper -> durable queue -> MQTT client -> broker,
 * and commands back. Owns the lifetimes: start opens the queue (recovering what a crash left),
 * the client and the ports; reload applies a new config to the running parts (the queue stays
 * open); stop drains what is being stored, says offline, and closes in the reverse order.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import {
  type ClientOptions,
  type ConnectedEvent,
  connect,
  type DurableQueue,
  type DurableQueueStats,
  type MqttClient,
  type OutboxMessage,
} from '@mqtt-edge/client';
import type { PublishPacket } from '@mqtt-edge/codec';
import { CommandRouter } from './commands.ts';
import { type AgentConfig, configDocument, defaultNodeId, type SerialPortConfig } from './config.ts';
import { heldHoldMs } from './config-queue.ts';
import { type DeviceCounters, type DeviceEvent, PortSession } from './device-session.ts';
import { type DiscoverySettings, HomeAssistantDiscovery } from './discovery.ts';
import { HeldOutbox } from './held-outbox.ts';
import { AGENT_VERSION } from './homeassistant.ts';
import { createLogger, type Logger } from './log.ts';
import { Mapper } from './mapper.ts';
import { MetricsServer, type MetricsView, renderMetrics } from './metrics.ts';
import type { ModbusPortConfig } from './modbus-config.ts';
import { ModbusSession } from './modbus-session.ts';
import { checkQueueRoom, openQueue } from './queue.ts';
import {
  addLinkCounters,
  type LinkCounters,
  newLinkCounters,
  type PortOpener,
  SerialLink,
} from './serial-link.ts';
import { type AgentStatus, closeStatusFile, writeStatus } from './status.ts';

export interface AgentOptions {
  config: AgentConfig;
  log?: Logger;
  /** Opens ports instead of serialport (in-process links in tests, the bench, the demo). */
  openPort?: PortOpener;
  /** Write the status file (default true). */
  statusFile?: boolean;
}

export interface AgentCounters {
  reconnects: number;
  connects: number;
  /** Readings the broker acknowledged (QoS 1/2) or that were written to it (QoS 0). */
  published: number;
  /** Readings the broker refused (a PUBACK/PUBREC reason code 0x80 and up): gone from the queue. */
  refusedByBroker: number;
  /** The agent's own messages: statuses, command replies, health. */
  controlPublished: number;
  publishErrors: number;
  healthPublished: number;
  /** Reloads applied (SIGHUP), and reloads refused (a config that does not validate). */
  reloads: number;
  reloadsRefused: number;
}

interface Port {
  config: SerialPortConfig;
  link: SerialLink;
  /** Counters of the links a reload replaced (a reopened port), so the port's counters only grow. */
  pastLinks: LinkCounters;
  /** The port's protocol: the agent's own and text framings, or a Modbus RTU line it polls (issue 20). */
  session: PortSession | ModbusSession;
  /** Being taken away by a reload: its bytes are no longer read (the device keeps what is not ACKed). */
  draining: boolean;
  /** When the session next checks for silence (issue 19.2). */
  silenceTimer?: NodeJS.Timeout;
}

/** What a reload did. Settings are named by their config-file keys (`topics.reading`). */
export interface ReloadResult {
  /** Settings that changed and now apply. */
  applied: string[];
  /** Settings that changed but apply only at the next start (the running agent keeps the old). */
  restartNeeded: string[];
  portsAdded: string[];
  portsRemoved: string[];
  /** Ports whose path, USB match or baud changed: reopened, their device session kept. */
  portsReopened: string[];
  /** The broker connection was replaced (MQTT settings, the prefix, or the TLS files changed). */
  reconnected: boolean;
  /** Publishes still unacknowledged when the old connection went (sent again by the new one). */
  inFlightAtReconnect: number;
}

/** Keys a running agent cannot change: the queue stays open, and its id names its topics. */
const RESTART_ONLY = ['agent.id', 'agent.stateDir', 'agent.statusDir', 'agent.log.format', 'queue.'];
/** How long a reload waits for the broker to acknowledge what is in flight before it reconnects. */
const RELOAD_DRAIN_MS = 5000;
/** Devices whose counters are kept; past it, the longest unseen device not on a port goes. */
const MAX_DEVICE_STATS = 1024;
/** At most one line per this many ms about readings the broker refuses. */
const REFUSED_LOG_EVERY_MS = 5000;

export class Agent {
  readonly counters: AgentCounters = {
    reconnects: 0,
    connects: 0,
    published: 0,
    refusedByBroker: 0,
    controlPublished: 0,
    publishErrors: 0,
    healthPublished: 0,
    reloads: 0,
    reloadsRefused: 0,
  };
  readonly startedAt = Date.now();
  readonly ports: Port[] = [];
  /** The broker connection; a reload that changes MQTT settings replaces it. */
  client: MqttClient;
  readonly commands: CommandRouter;
  /** Home Assistant discovery (issue 14.1): announces devices, clears the ones gone. */
  readonly discovery: HomeAssistantDiscovery;
  private readonly log: Logger;
  private readonly queue: DurableQueue;
  private readonly outbox: HeldOutbox;
  /** The config in force (a reload replaces it, keeping the settings that need a restart). */
  private config: AgentConfig;
  private mapper: Mapper;
  private readonly textBootId = (Math.random() * 0x1_0000_0000) >>> 0;
  /** TLS files as read for the current client: a reload reconnects when their contents change. */
  private tlsFiles: Array<Buffer | undefined> = [];
  private reloading: Promise<unknown> = Promise.resolve();
  /** A reload is replacing the client: the old one's close and end are not news. */
  private switching = false;
  private lastRefusedLog = Number.NEGATIVE_INFINITY;
  private connected = false;
  private connectedSince = Date.now();
  private lastBrokerError: string | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private refusedTimer: NodeJS.Timeout | undefined;
  /** The status file could not be written: logged once, and once when it can be again. */
  private statusFileFailing = false;
  private stopping = false;
  private readonly byDevice = new Map<string, Port>();
  /** Per device counters for the metrics, across ports and port sessions. */
  private readonly deviceStats = new Map<string, DeviceCounters>();
  private metricsServer: MetricsServer | undefined;

  /** Opens the queue (recovery runs here), connects, opens the ports. */
  static async start(options: AgentOptions): Promise<Agent> {
    const c = options.config;
    const log = options.log ?? createLogger({ level: c.log.level, format: c.log.format });
    mkdirSync(c.stateDir, { recursive: true });
    if (options.statusFile !== false) mkdirSync(c.statusDir, { recursive: true });
    const t0 = performance.now();
    const queue = await openQueue(c.queue, log);
    const qs = queue.stats();
    log.log('info', 'queue-open', {
      dir: c.queue.dir,
      messages: qs.count,
      bytes: qs.bytes,
      segments: qs.segments,
      maxBytes: c.queue.maxBytes,
      dropPolicy: c.queue.dropPolicy,
      ms: Math.round(performance.now() - t0),
      recovery: qs.recovery,
    });
    checkQueueRoom(c.queue, log);
    const agent = new Agent(options, log, queue);
    await agent.startMetrics();
    return agent;
  }

  /** The metrics endpoint's address, when it listens. */
  get metricsAddress(): { host: string; port: number } | undefined {
    const m = this.metricsServer;
    return m === undefined ? undefined : { host: m.host, port: m.port };
  }

  private async startMetrics(): Promise<void> {
    const m = this.config.metrics;
    if (m === undefined || this.stopping) return;
    this.metricsServer = await MetricsServer.listen(m, () => renderMetrics(this.metricsView()), this.log);
  }

  /** What a scrape reads: counters the agent keeps anyway, gathered now. */
  metricsView(): MetricsView {
    const now = Date.now();
    const onPort = new Map<string, { port: Port; online: boolean }>();
    for (const p of this.ports) for (const d of devicesOn(p)) onPort.set(d.id, { port: p, online: d.online });
    return {
      agentId: this.config.id,
      version: AGENT_VERSION,
      now,
      counters: this.counters,
      connected: this.connected,
      inflight: this.client.session.inflightCount,
      sent: this.outbox.sent,
      acked: this.outbox.acked,
      queue: this.queue.stats(now),
      queueMaxBytes: this.config.queue.maxBytes,
      commands: this.commands.counters,
      discovery: { ...this.discovery.counters, enabled: this.discovery.enabled },
      ports: this.ports.map((p) => ({
        name: p.config.name,
        up: p.link.state === 'open',
        session: p.session.counters,
        framingErrorsByKind: p.session.framingErrorsByKind,
        link: addLinkCounters(p.pastLinks, p.link.counters),
        silent: p.session.silentSince !== undefined,
        expectedIntervalMs: p.session.expectedIntervalMs,
        ...(p.session instanceof ModbusSession ? { modbus: p.session.lineCounters } : {}),
      })),
      devices: [...this.deviceStats].map(([id, counters]) => {
        const p = onPort.get(id);
        return {
          id,
          port: p?.port.config.name,
          online: p !== undefined && p.port.link.state === 'open' && p.online,
          counters,
        };
      }),
    };
  }

  /** The counters of a device (made on first use, bounded). */
  private deviceCounters(id: string): DeviceCounters {
    let d = this.deviceStats.get(id);
    if (d !== undefined) return d;
    if (this.deviceStats.size >= MAX_DEVICE_STATS) {
      // A flood of HELLOs with new ids (a confused or hostile device) must not grow the map.
      const current = new Set(this.ports.flatMap((p) => devicesOn(p).map((d) => d.id)));
      let oldest: string | undefined;
      let oldestAt = Number.POSITIVE_INFINITY;
      for (const [k, v] of this.deviceStats)
        if (!current.has(k) && v.lastReadingAt < oldestAt) {
          oldest = k;
          oldestAt = v.lastReadingAt;
        }
      if (oldest !== undefined) this.deviceStats.delete(oldest);
    }
    d = { readings: 0, framingErrors: 0, lastReadingAt: 0 };
    this.deviceStats.set(id, d);
    return d;
  }

  private constructor(
    private readonly options: AgentOptions,
    log: Logger,
    queue: DurableQueue,
  ) {
    const c = options.config;
    this.config = c;
    this.log = log;
    this.queue = queue;
    this.outbox = new HeldOutbox(queue);
    this.mapper = makeMapper(c);
    this.discovery = new HomeAssistantDiscovery(
      c.stateDir,
      this.discoverySettings(c),
      c.serial.map((p) => p.name),
      { publish: (topic, payload) => this.publish(topic, payload, { qos: 1, retain: true }), log },
    );
    this.client = this.newClient();
    this.commands = new CommandRouter({
      prefix: c.topics.prefix,
      timeoutMs: c.commandTimeoutMs,
      lookup: (device) => {
        const p =
          this.byDevice.get(device) ??
          this.ports.find((x) => x.session instanceof ModbusSession && x.session.device(device));
        if (p === undefined || p.link.state !== 'open') return undefined;
        return p.session instanceof ModbusSession ? p.session.target(device) : p.session;
      },
      reply: (r) => this.publish(r.topic, r.payload, { qos: 1, retain: false, properties: r.properties }),
      log,
    });
    for (const pc of c.serial) this.ports.push(this.makePort(pc));
    for (const p of this.ports) p.link.start();
    this.startTimers();
    log.log('info', 'agent-start', {
      agent: c.id,
      broker: c.mqtt.url,
      ports: c.serial.map((p) => p.name),
      queued: queue.stats().count,
    });
  }

  private makePort(pc: SerialPortConfig): Port {
    const port = { config: pc, draining: false, pastLinks: newLinkCounters() } as Port;
    if (pc.modbus !== undefined) {
      port.session = this.makeModbusSession(port, pc as SerialPortConfig & { modbus: ModbusPortConfig });
      port.link = this.makeLink(port);
      return port;
    }
    // The session's host reaches the link through `port`: a reopen replaces port.link.
    port.session = new PortSession({
      port: pc.name,
      framing: pc.framing,
      device: pc.device,
      mapper: this.mapper,
      textBootId: this.textBootId,
      ...this.portInterval(pc),
      holdMs: heldHoldMs(this.config.queue),
      host: {
        store: (m) => this.store(m),
        write: (b) => port.link.write(b),
        commitNow: () => this.commitNow(),
        onDevice: (e) => this.onDevice(port, e),
        onResult: (device, r) => this.commands.result(device, r),
        deviceCounters: (device) => this.deviceCounters(device),
        onHello: (f) =>
          this.discovery.onHello(port.config.name, {
            id: f.deviceId,
            firmware: f.firmware,
            sensors: f.sensors,
            ...(f.model === undefined ? {} : { model: f.model }),
            ...(f.commands === undefined ? {} : { commands: f.commands }),
          }),
        onSensors: (device, sensors) => this.discovery.onHello(port.config.name, { id: device, sensors }),
        reopen: () => port.link.reopen(),
        rearmSilence: () => this.armSilence(port),
        now: () => Date.now(),
        log: this.log,
      },
    });
    port.link = this.makeLink(port);
    return port;
  }

  /** A Modbus RTU line the agent polls (issue 20): its readings go the way every reading goes. */
  private makeModbusSession(port: Port, pc: SerialPortConfig & { modbus: ModbusPortConfig }): ModbusSession {
    // Every device on the line may be announced at once (the discovery default keeps 8 per port).
    this.discovery.setPortCapacity(pc.name, pc.modbus.devices.length);
    return new ModbusSession({
      config: pc,
      mapper: this.mapper,
      runId: this.textBootId,
      host: {
        store: (m) => this.store(m),
        write: (b) => port.link.write(b),
        onDevice: (e) => this.onDevice(port, e),
        onResult: (device, r) => this.commands.result(device, r),
        onDescribe: (d) => this.discovery.onHello(port.config.name, d),
        deviceCounters: (device) => this.deviceCounters(device),
        log: this.log,
      },
    });
  }

  private makeLink(port: Port): SerialLink {
    return new SerialLink({
      config: port.config,
      log: this.log,
      opener: this.options.openPort,
      onData: (chunk) => {
        if (!port.draining) port.session.push(chunk);
      },
      onOpen: () => {
        port.session.reset();
        port.session.opened();
        this.armSilence(port);
      },
      onClose: () => {
        port.session.closed();
        this.armSilence(port);
      },
    });
  }

  /**
   * The port's expected interval setting for its session (issue 19.2): its own, else for native
   * devices the agent's default (0 there: only a HELLO's `p` makes the port watched).
   */
  private portInterval(pc: SerialPortConfig): { expectedIntervalMs?: number } {
    if (pc.modbus !== undefined) return {};
    if (pc.expectedIntervalMs !== undefined) return { expectedIntervalMs: pc.expectedIntervalMs };
    const dflt = this.config.expectedIntervalMs;
    return pc.framing === 'native' && dflt > 0 ? { expectedIntervalMs: dflt } : {};
  }

  /** One timer per port, at its session's silence deadline; none while nothing is watched. */
  private armSilence(port: Port): void {
    clearTimeout(port.silenceTimer);
    port.silenceTimer = undefined;
    if (this.stopping || port.draining) return;
    const deadline = port.session.silenceDeadline();
    if (deadline === Number.POSITIVE_INFINITY) return;
    port.silenceTimer = setTimeout(
      () => {
        port.silenceTimer = undefined;
        if (this.stopping || port.draining) return;
        port.session.checkSilence(Date.now());
        this.armSilence(port);
      },
      // A HELLO may say up to 2^32-1 ms: past setTimeout's 2^31-1 Node would fire at once, in a
      // loop. Woken early, checkSilence finds nothing due and this re-arms.
      Math.min(Math.max(0, deadline - Date.now()), MAX_TIMER_MS),
    );
    port.silenceTimer.unref();
  }

  private startTimers(): void {
    const c = this.config;
    clearInterval(this.statusTimer);
    clearInterval(this.healthTimer);
    this.statusTimer = undefined;
    this.healthTimer = undefined;
    if (this.options.statusFile !== false) {
      this.statusTimer = setInterval(() => this.writeStatusFile(), c.statusIntervalMs);
      this.statusTimer.unref();
      this.writeStatusFile();
    }
    if (c.healthIntervalMs > 0) {
      this.healthTimer = setInterval(() => this.publishHealth(), c.healthIntervalMs);
      this.healthTimer.unref();
    }
  }

  get agentTopic(): string {
    return `${this.config.topics.prefix}/_agent/${this.config.id}`;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  queueStats(): DurableQueueStats {
    return this.queue.stats();
  }

  private newClient(): MqttClient {
    const client = connect(this.config.mqtt.url, this.clientOptions());
    this.wireClient(client);
    return client;
  }

  private clientOptions(): ClientOptions {
    const m = this.config.mqtt;
    const o: ClientOptions = {
      protocolVersion: m.version,
      clientId: m.clientId,
      // Always a clean start on the first connection of a process: the broker's session state
      // (QoS 2 packet ids awaiting PUBREL) belongs to an earlier run whose in-flight state
      // died with it. Resuming it would let a new PUBLISH reuse such a packet id and be taken
      // for a duplicate: lost. With a persistent 5.0 session, later reconnects of this process
      // resume it.
      clean: m.persistentSession && m.version === 5 ? 'first' : true,
      keepalive: m.keepalive,
      maxInflight: m.maxInflight,
      outbox: this.outbox,
      reconnectPeriod: m.reconnectMinMs,
      reconnectMaxDelay: m.reconnectMaxMs,
      connectTimeout: 10_000,
      queueQoS0: false,
      will: { topic: `${this.agentTopic}/status`, payload: 'offline', qos: 1, retain: true },
    };
    if (m.persistentSession && m.version === 5) o.sessionExpiryInterval = m.sessionExpiryS;
    if (m.username !== undefined) o.username = m.username;
    if (m.password !== undefined) o.password = m.password;
    this.tlsFiles = readTlsFiles(this.config);
    if (m.tls !== undefined) {
      const [ca, cert, key] = this.tlsFiles;
      if (ca !== undefined) o.ca = ca;
      if (cert !== undefined) o.cert = cert;
      if (key !== undefined) o.key = key;
      o.rejectUnauthorized = m.tls.rejectUnauthorized;
      if (m.tls.servername !== undefined) o.servername = m.tls.servername;
    }
    return o;
  }

  private wireClient(client: MqttClient): void {
    client.on('connect', (e: ConnectedEvent) => {
      this.connected = true;
      this.connectedSince = Date.now();
      this.counters.connects++;
      this.lastBrokerError = undefined;
      const q = this.queue.stats();
      this.log.log('info', 'broker-connected', {
        url: this.config.mqtt.url,
        sessionPresent: e.sessionPresent,
        queued: q.count,
      });
      this.publish(`${this.agentTopic}/status`, 'online', { qos: 1, retain: true });
      for (const p of this.ports) {
        if (p.link.state !== 'open') continue;
        for (const d of devicesOn(p)) if (d.online) this.publishDeviceStatus(d.id, 'online');
      }
      client.subscribe({ filter: this.commands.filter, qos: 1 }).catch((err: Error) => {
        this.log.log('warn', 'subscribe-failed', { filter: this.commands.filter, error: err.message });
      });
      if (this.discovery.enabled) this.subscribeBirth(client, this.discovery.birthTopic);
      this.discovery.onConnect();
    });
    client.on('close', (e) => {
      if (client === this.client) this.discovery.onDisconnect();
      if (e?.error !== undefined) this.lastBrokerError = e.error.message;
      if (this.connected) {
        this.connected = false;
        this.connectedSince = Date.now();
        // Our own DISCONNECT (a stop, a reload) is no warning.
        this.log.log(e?.by === 'client' ? 'info' : 'warn', 'broker-disconnected', {
          by: e?.by,
          reason: e?.reasonString ?? e?.error?.message,
          queued: this.queue.stats().count,
        });
      }
    });
    client.on('reconnect', () => {
      this.counters.reconnects++;
    });
    // The socket / TLS error behind a failed attempt or a lost link (ECONNREFUSED, a certificate
    // the broker's CA does not sign, a handshake timeout): the only word of an attempt that
    // failed before MQTT started, so it is what `status` shows while the link is down.
    client.on('transportError', (err: Error & { code?: string }) => {
      const reason =
        err.code !== undefined && !err.message.includes(err.code)
          ? `${err.code}: ${err.message}`
          : err.message;
      if (reason !== this.lastBrokerError)
        this.log.log('warn', 'broker-unreachable', { url: this.config.mqtt.url, error: reason });
      this.lastBrokerError = reason;
    });
    client.on('error', (err: Error) => {
      this.lastBrokerError = err.message;
      this.log.log('warn', 'broker-error', { error: err.message });
    });
    client.on('settled', (_seq, reasonCode, err) => {
      if (err === undefined && reasonCode < 0x80) {
        this.counters.published++;
        return;
      }
      this.counters.refusedByBroker++;
      const now = Date.now();
      if (now - this.lastRefusedLog < REFUSED_LOG_EVERY_MS) return;
      this.lastRefusedLog = now;
      this.log.log('error', 'reading-refused', {
        reasonCode,
        error: err?.message,
        refused: this.counters.refusedByBroker,
        note: 'the broker refused a reading (check its ACL); it is gone from the queue',
      });
    });
    client.on('end', () => {
      if (this.stopping || this.switching || client !== this.client) return;
      // A refusal the client will not retry (bad credentials, not authorised). The operator
      // may fix the broker side; keep the readings coming into the queue and try again slowly.
      this.log.log('error', 'broker-refused', {
        error: this.lastBrokerError,
        retryInMs: 30_000,
        note: 'readings keep being stored; fix the credentials or ACL',
      });
      this.refusedTimer = setTimeout(() => this.client.reconnect(), 30_000);
      this.refusedTimer.unref();
    });
    client.on('message', (topic: string, payload: Uint8Array, packet: PublishPacket) => {
      // Home Assistant's birth message; a retained one only replays what was already announced.
      if (topic === this.discovery.birthTopic) {
        if (!packet.retain && Buffer.from(payload).toString('utf8') === 'online') this.discovery.onBirth();
        return;
      }
      try {
        this.commands.handle(packet);
      } catch (err) {
        this.log.log('error', 'command-handler-failed', { error: (err as Error).stack });
      }
    });
  }

  /**
   * A reading into the durable queue through the client: resolves once it is on disk (the
   * device is acknowledged then), and the client sends it when connected.
   */
  private store(m: OutboxMessage): Promise<number> {
    const o: { qos: 0 | 1 | 2; retain: boolean; properties?: OutboxMessage['properties'] } = {
      qos: m.qos,
      retain: m.retain,
    };
    if (m.properties !== undefined) o.properties = m.properties;
    return this.client.enqueue(m.topic, m.payload, o);
  }

  /**
   * A device's held frames reached half its ring (issue 18.4): the queue commits now instead of
   * at its window's end. A failure is the queue's to report (its puts are rejected, not ACKed).
   */
  private commitNow(): void {
    this.queue.flush().catch(() => undefined);
  }

  /** The agent's own messages; resolves true once the broker took it (false: failed, logged). */
  private publish(
    topic: string,
    payload: string | Uint8Array,
    opts: { qos: 0 | 1 | 2; retain: boolean; properties?: OutboxMessage['properties'] },
  ): Promise<boolean> {
    return this.client.publish(topic, payload, opts).then(
      () => {
        this.counters.controlPublished++;
        return true;
      },
      (err: Error & { code?: string }) => {
        if (err.code === 'CLIENT_ENDED' || err.code === 'NOT_CONNECTED') return false;
        this.counters.publishErrors++;
        this.log.log('warn', 'publish-failed', { topic, error: err.message });
        return false;
      },
    );
  }

  private subscribeBirth(client: MqttClient, filter: string): void {
    client.subscribe({ filter, qos: 1 }).catch((err: Error) => {
      this.log.log('warn', 'subscribe-failed', { filter, error: err.message });
    });
  }

  private discoverySettings(c: AgentConfig): DiscoverySettings {
    return {
      enabled: c.homeassistant.enabled,
      ctx: {
        prefix: c.topics.prefix,
        agentId: c.id,
        discoveryPrefix: c.homeassistant.discoveryPrefix,
        nodeId: c.homeassistant.nodeId,
        payload: c.topics.payload,
        readingTopic: (device, sensor) => this.mapper.topic(device, sensor),
        health: c.healthIntervalMs > 0,
      },
    };
  }

  private publishDeviceStatus(device: string, state: 'online' | 'offline'): void {
    this.publish(`${this.config.topics.prefix}/${device}/status`, state, { qos: 1, retain: true });
  }

  private onDevice(port: Port, e: DeviceEvent): void {
    if (e.type === 'online') {
      const other = this.byDevice.get(e.device);
      if (other !== undefined && other !== port && other.link.state === 'open')
        this.log.log('warn', 'device-on-two-ports', {
          device: e.device,
          ports: [other.config.name, port.config.name],
        });
      this.byDevice.set(e.device, port);
      this.log.log('info', 'device-online', {
        port: port.config.name,
        device: e.device,
        bootId: e.bootId,
        firmware: e.firmware,
        sensors: e.sensors?.map((s) => s.name),
      });
    } else {
      if (this.byDevice.get(e.device) === port) this.byDevice.delete(e.device);
      this.log.log('info', 'device-offline', { port: port.config.name, device: e.device });
    }
    if (!this.stopping || e.type === 'offline') this.publishDeviceStatus(e.device, e.type);
  }

  /** Counters for the health topic and the status file. */
  snapshot(): AgentStatus {
    const q = this.queue.stats();
    const totals: Record<string, number> = { ...this.counters };
    for (const p of this.ports) {
      for (const [k, v] of Object.entries(p.session.counters)) totals[k] = (totals[k] ?? 0) + v;
      totals.portDisconnects = (totals.portDisconnects ?? 0) + p.link.counters.disconnects;
      totals.portWriteTimeouts = (totals.portWriteTimeouts ?? 0) + p.link.counters.writeTimeouts;
    }
    totals.commandsReceived = this.commands.counters.received;
    totals.commandErrors = this.commands.counters.errors;
    return {
      pid: process.pid,
      agentId: this.config.id,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      broker: {
        url: this.config.mqtt.url,
        connected: this.connected,
        since: this.connectedSince,
        reconnects: this.counters.reconnects,
        lastError: this.lastBrokerError,
      },
      queue: {
        dir: this.config.queue.dir,
        count: q.count,
        bytes: q.bytes,
        oldestAgeMs: q.oldestAgeMs,
        droppedOldest: q.droppedOldest,
        rejectedNew: q.rejectedNew,
        segments: q.segments,
        failed: q.failed,
        writeError: q.writeError ?? undefined,
        writeFailures: q.writeFailures,
        failedPuts: q.failedPuts,
      },
      ports: this.ports.map((p) => ({
        name: p.config.name,
        path: p.config.path,
        framing: p.session instanceof ModbusSession ? 'modbus-rtu' : p.config.framing,
        state: p.link.state,
        since: p.link.since,
        device: p.session.deviceId,
        bootId: p.session.bootId,
        expectedIntervalMs: p.session.expectedIntervalMs,
        silentSince: p.session.silentSince,
        lastError: p.link.lastError,
        counters: {
          ...p.session.counters,
          ...prefixed('link', p.link.counters),
          ...(p.session instanceof ModbusSession ? modbusLineCounters(p.session) : {}),
        },
        ...(p.session instanceof ModbusSession
          ? {
              devices: p.session.devices.map((d) => ({
                id: d.config.id,
                unit: d.config.unit,
                online: d.online ?? null,
                missedPolls: d.missed,
                lastError: d.lastError,
              })),
            }
          : {}),
      })),
      counters: totals,
    };
  }

  private writeStatusFile(): void {
    try {
      writeStatus(this.config.statusDir, this.snapshot());
      if (this.statusFileFailing) this.log.log('info', 'status-file-written-again', {});
      this.statusFileFailing = false;
    } catch (err) {
      // every statusInterval on a full disk: one line, not one every two seconds
      if (!this.statusFileFailing)
        this.log.log('warn', 'status-file-failed', { error: (err as Error).message });
      this.statusFileFailing = true;
    }
  }

  private publishHealth(): void {
    if (!this.connected) return;
    const s = this.snapshot();
    const body = {
      agent: s.agentId,
      uptimeS: Math.round((s.updatedAt - s.startedAt) / 1000),
      queue: s.queue,
      reconnects: s.broker.reconnects,
      ports: s.ports.map((p) => ({ name: p.name, state: p.state, device: p.device })),
      counters: s.counters,
    };
    this.counters.healthPublished++;
    this.publish(`${this.agentTopic}/health`, JSON.stringify(body), { qos: 0, retain: false });
  }

  /**
   * Applies a new config without a restart: ports added, removed or reopened, topics and
   * payloads remapped, MQTT settings (a new broker connection once what is in flight is
   * acknowledged), intervals and the log level. The queue stays open throughout: a reading is
   * stored and ACKed as before, and sent once, by the old connection or the new one. Settings
   * that need a restart (RESTART_ONLY) keep their running values and are named in the result
   * and the log. Reloads run one at a time.
   */
  reload(next: AgentConfig): Promise<ReloadResult> {
    const run = this.reloading.then(() => this.applyReload(next));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async applyReload(raw: AgentConfig): Promise<ReloadResult> {
    const prev = this.config;
    const before = configDocument(prev);
    const restartNeeded = changedKeys(before, configDocument(raw)).filter((k) =>
      RESTART_ONLY.some((r) => k === r || k.startsWith(r)),
    );
    // What cannot change live keeps its running value (and so does a client id derived from it).
    const derivedClientId = raw.mqtt.clientId === `mqtt-edge-agent-${raw.id}`;
    const derivedNodeId = raw.homeassistant.nodeId === defaultNodeId(raw.id);
    const next: AgentConfig = {
      ...raw,
      homeassistant: derivedNodeId
        ? { ...raw.homeassistant, nodeId: prev.homeassistant.nodeId }
        : raw.homeassistant,
      id: prev.id,
      stateDir: prev.stateDir,
      statusDir: prev.statusDir,
      log: { level: raw.log.level, format: prev.log.format },
      mqtt: derivedClientId ? { ...raw.mqtt, clientId: prev.mqtt.clientId } : raw.mqtt,
      queue: prev.queue,
    };
    const applied = changedKeys(before, configDocument(next));
    const result: ReloadResult = {
      applied,
      restartNeeded,
      portsAdded: [],
      portsRemoved: [],
      portsReopened: [],
      reconnected: false,
      inFlightAtReconnect: 0,
    };
    if (this.stopping) return result;
    this.config = next;
    if (next.log.level !== prev.log.level) this.log.setLevel?.(next.log.level);
    if (next.statusIntervalMs !== prev.statusIntervalMs || next.healthIntervalMs !== prev.healthIntervalMs)
      this.startTimers();
    this.commands.configure({ prefix: next.topics.prefix, timeoutMs: next.commandTimeoutMs });
    if (!sameJson(mapperSettings(prev), mapperSettings(next))) {
      this.mapper = makeMapper(next);
      for (const p of this.ports) p.session.setMapper(this.mapper);
    }
    await this.reconcilePorts(next.serial, result);
    for (const p of this.ports) p.session.setExpectedInterval(this.portInterval(p.config).expectedIntervalMs);
    if (result.portsRemoved.length > 0) this.discovery.onPortsRemoved(result.portsRemoved);
    if (!sameJson(discoveryKey(prev), discoveryKey(next))) {
      const before = this.discovery.birthTopic;
      const wasOn = this.discovery.enabled;
      this.discovery.reconfigure(this.discoverySettings(next));
      const after = this.discovery.birthTopic;
      if (this.connected && (before !== after || wasOn !== this.discovery.enabled)) {
        if (wasOn) this.client.unsubscribe(before).catch(() => undefined);
        if (this.discovery.enabled) this.subscribeBirth(this.client, after);
      }
    }
    const tlsChanged = !sameFiles(this.tlsFiles, readTlsFiles(next));
    if (!sameJson(connectionSettings(prev), connectionSettings(next)) || tlsChanged) {
      if (tlsChanged && !applied.some((k) => k.startsWith('mqtt.tls')))
        applied.push('mqtt.tls (file contents)');
      result.inFlightAtReconnect = await this.replaceClient(prev);
      result.reconnected = true;
    }
    if (prev.metrics?.listen !== next.metrics?.listen) {
      await this.metricsServer?.close();
      this.metricsServer = undefined;
      await this.startMetrics();
    }
    this.counters.reloads++;
    if (this.options.statusFile !== false) this.writeStatusFile();
    this.log.log('info', 'config-reloaded', {
      applied,
      portsAdded: result.portsAdded,
      portsRemoved: result.portsRemoved,
      portsReopened: result.portsReopened,
      reconnected: result.reconnected,
      inFlightAtReconnect: result.inFlightAtReconnect,
    });
    if (restartNeeded.length > 0)
      this.log.log('warn', 'config-needs-restart', {
        settings: restartNeeded,
        note: 'these settings apply at the next start; the running agent keeps their old values',
      });
    return result;
  }

  /** Ports by name: gone ones drained and closed, new ones opened, changed ones reopened. */
  private async reconcilePorts(wanted: SerialPortConfig[], result: ReloadResult): Promise<void> {
    const byName = new Map(wanted.map((pc) => [pc.name, pc]));
    const closing: Array<Promise<void>> = [];
    const keep: Port[] = [];
    const reopen: Array<{ port: Port; pc: SerialPortConfig }> = [];
    for (const p of this.ports) {
      const pc = byName.get(p.config.name);
      // The expected interval is the session's (applied after this), not the open port's.
      if (pc !== undefined && sameJson(withoutInterval(pc), withoutInterval(p.config))) {
        p.config = pc;
        keep.push(p);
        continue;
      }
      // Same device protocol on another path or baud: the session (its dedupe window) carries on.
      const sameSession =
        pc !== undefined &&
        pc.framing === p.config.framing &&
        pc.device === p.config.device &&
        sameJson(modbusSession(pc), modbusSession(p.config));
      closing.push(this.closePort(p, !sameSession));
      if (pc !== undefined && sameSession) {
        reopen.push({ port: p, pc });
        result.portsReopened.push(pc.name);
      } else {
        result.portsRemoved.push(p.config.name);
      }
    }
    await Promise.all(closing);
    const starting: Port[] = [];
    for (const { port, pc } of reopen) {
      port.config = pc;
      port.pastLinks = addLinkCounters(port.pastLinks, port.link.counters);
      port.link = this.makeLink(port);
      port.draining = false;
      keep.push(port);
      starting.push(port);
    }
    const known = new Set(keep.map((p) => p.config.name));
    for (const pc of wanted) {
      if (known.has(pc.name)) continue;
      const port = this.makePort(pc);
      keep.push(port);
      starting.push(port);
      result.portsAdded.push(pc.name);
    }
    // Ports keep the config's order (status, logs).
    const order = (p: Port) => wanted.indexOf(byName.get(p.config.name) as SerialPortConfig);
    keep.sort((a, b) => order(a) - order(b));
    this.ports.length = 0;
    this.ports.push(...keep);
    for (const p of starting) p.link.start();
    if (result.portsAdded.length + result.portsRemoved.length + result.portsReopened.length > 0)
      // Sessions of removed ports said their devices went offline; added ones say online on HELLO.
      this.log.log('info', 'ports-changed', {
        added: result.portsAdded,
        removed: result.portsRemoved,
        reopened: result.portsReopened,
      });
  }

  /**
   * Stops reading a port, lets the frames being stored finish (their ACKs go out while the port
   * is still open), then closes it. Frames that arrive meanwhile are not read: never ACKed, the
   * device keeps them and sends them again.
   */
  private async closePort(p: Port, endSession: boolean): Promise<void> {
    p.draining = true;
    clearTimeout(p.silenceTimer);
    const until = Date.now() + 2000;
    while (Date.now() < until && p.session.storingFrames > 0) await sleep(10);
    await p.link.stop();
    if (endSession) p.session.closed();
  }

  /**
   * A new broker connection for new MQTT settings. The old client reads nothing more from the
   * queue; once the broker has acknowledged what it has in flight (at most RELOAD_DRAIN_MS; then
   * it is sent again as after any reconnect) it says DISCONNECT, and the new client sends the
   * rest of the queue. Readings keep being stored and ACKed meanwhile.
   */
  private async replaceClient(prev: AgentConfig): Promise<number> {
    const old = this.client;
    this.switching = true;
    this.outbox.held = true;
    try {
      clearTimeout(this.refusedTimer);
      if (old.connected && prev.topics.prefix !== this.config.topics.prefix) {
        // The statuses under the old prefix would say online for ever: QoS 0, as nothing more
        // goes through the held queue.
        old
          .publish(`${prev.topics.prefix}/_agent/${prev.id}/status`, 'offline', { qos: 0, retain: true })
          .catch(() => undefined);
        for (const p of this.ports)
          for (const d of devicesOn(p))
            old
              .publish(`${prev.topics.prefix}/${d.id}/status`, 'offline', {
                qos: 0,
                retain: true,
              })
              .catch(() => undefined);
      }
      const until = Date.now() + RELOAD_DRAIN_MS;
      while (Date.now() < until && old.connected && old.session.inflightCount > 0) await sleep(10);
      const inFlight = old.session.inflightCount;
      this.log.log('info', 'broker-reconnecting', {
        url: this.config.mqtt.url,
        inFlight,
        queued: this.queue.stats().count,
        reason: 'config reload',
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        old.end().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            old.end({ force: true }).catch(() => undefined);
            resolve();
          }, 2000);
        }),
      ]);
      clearTimeout(timer);
      old.removeAllListeners();
      this.connected = false;
      this.client = this.newClient();
      return inFlight;
    } finally {
      this.outbox.held = false;
      this.switching = false;
    }
  }

  /**
   * Graceful stop: stop reading the ports, let running stores finish (their ACKs go out),
   * publish offline statuses, give the broker `drainMs` to acknowledge what is in flight,
   * DISCONNECT, close the queue (fsync, cursor).
   */
  async stop(drainMs = 2000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // A reload under way finishes first (its waits are bounded): it may be replacing the client.
    await this.reloading;
    clearInterval(this.statusTimer);
    clearInterval(this.healthTimer);
    clearTimeout(this.refusedTimer);
    const until = Date.now() + drainMs;
    // Let frames being stored finish and ACK while the ports are still open.
    while (Date.now() < until && this.ports.some((p) => p.session.storingFrames > 0)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const p of this.ports) clearTimeout(p.silenceTimer);
    await Promise.all(this.ports.map((p) => p.link.stop()));
    for (const p of this.ports) p.session.closed();
    this.commands.close();
    this.discovery.close();
    await this.metricsServer?.close();
    if (this.connected) {
      this.publish(`${this.agentTopic}/status`, 'offline', { qos: 1, retain: true });
      // Bounded wait for the last acknowledgements; what is left stays queued for next time.
      while (Date.now() < until && this.connected && this.queue.stats().count > 0) {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    await this.client.end().catch(() => undefined);
    if (this.options.statusFile !== false) {
      this.writeStatusFile();
      closeStatusFile(this.config.statusDir);
    }
    await this.queue.close();
    this.log.log('info', 'agent-stop', { queued: this.queue.stats().count });
  }
}

/** The devices on a port now: a native or text port's one (if known), a Modbus line's all. */
function devicesOn(p: Port): Array<{ id: string; online: boolean }> {
  if (p.session instanceof ModbusSession) return p.session.devicesOnPort();
  const id = p.session.deviceId;
  return id === undefined ? [] : [{ id, online: p.session.isOnline }];
}

/** What a Modbus session is made of: a reload that changes it starts a new one (path and baud alone reopen). */
function modbusSession(pc: SerialPortConfig) {
  if (pc.modbus === undefined) return undefined;
  return {
    modbus: pc.modbus,
    dataBits: pc.dataBits,
    parity: pc.parity,
    stopBits: pc.stopBits,
    baud: pc.baud,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function makeMapper(c: AgentConfig): Mapper {
  return new Mapper(mapperSettings(c));
}

function mapperSettings(c: AgentConfig) {
  return {
    prefix: c.topics.prefix,
    template: c.topics.reading,
    payload: c.topics.payload,
    qos: c.mqtt.qos,
    protocolVersion: c.mqtt.version,
  };
}

/** What the discovery payloads are made of: a change re-announces (and clears what moved). */
function discoveryKey(c: AgentConfig) {
  return { ...c.homeassistant, ...mapperSettings(c), id: c.id, health: c.healthIntervalMs > 0 };
}

/** What the broker connection is made of: everything in mqtt but the readings' QoS, and the prefix (the will's topic). */
function connectionSettings(c: AgentConfig) {
  const { qos: _q, ...rest } = c.mqtt;
  return { ...rest, prefix: c.topics.prefix, id: c.id };
}

function readTlsFiles(c: AgentConfig): Array<Buffer | undefined> {
  const t = c.mqtt.tls;
  if (t === undefined) return [];
  return [t.ca, t.cert, t.key].map((f) => {
    if (f === undefined) return undefined;
    try {
      return readFileSync(f);
    } catch {
      return undefined;
    }
  });
}

function sameFiles(a: Array<Buffer | undefined>, b: Array<Buffer | undefined>): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => (x === undefined ? b[i] === undefined : b[i] !== undefined && x.equals(b[i]!)));
}

/** The longest delay setTimeout takes (2^31-1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function withoutInterval(pc: SerialPortConfig): Omit<SerialPortConfig, 'expectedIntervalMs'> {
  const { expectedIntervalMs: _, ...rest } = pc;
  return rest;
}

/** Dotted key paths whose values differ; a list (serial) counts as one key. */
export function changedKeys(a: unknown, b: unknown, p = ''): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(a) || !isObj(b)) return sameJson(a, b) ? [] : [p];
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].flatMap((k) => changedKeys(a[k], b[k], p === '' ? k : `${p}.${k}`));
}

/** The line's counters for the status file: `modbusRequests`, ..., and one `modbusErrors<Kind>` per kind seen. */
function modbusLineCounters(s: ModbusSession): Record<string, number> {
  const { errors, ...plain } = s.lineCounters;
  const out = prefixed('modbus', plain);
  for (const [kind, n] of Object.entries(errors))
    out[`modbusErrors${kind.replace(/(^|-)(\w)/g, (_m, _d, c: string) => c.toUpperCase())}`] = n ?? 0;
  return out;
}

function prefixed(p: string, o: object): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) out[`${p}${k[0].toUpperCase()}${k.slice(1)}`] = v as number;
  return out;
}
