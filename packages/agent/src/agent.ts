/**
 * The agent: serial ports -> port sessions -> mapper -> durable queue -> MQTT client -> broker,
 * and commands back. Owns the lifetimes: start opens the queue (recovering what a crash left),
 * the client and the ports; stop drains what is being stored, says offline, and closes in the
 * reverse order.
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
import type { AgentConfig, SerialPortConfig } from './config.ts';
import { type DeviceEvent, PortSession } from './device-session.ts';
import { createLogger, type Logger } from './log.ts';
import { Mapper } from './mapper.ts';
import { checkQueueRoom, openQueue } from './queue.ts';
import { type PortOpener, SerialLink } from './serial-link.ts';
import { type AgentStatus, writeStatus } from './status.ts';

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
  published: number;
  publishErrors: number;
  healthPublished: number;
}

interface Port {
  config: SerialPortConfig;
  link: SerialLink;
  session: PortSession;
}

export class Agent {
  readonly counters: AgentCounters = {
    reconnects: 0,
    connects: 0,
    published: 0,
    publishErrors: 0,
    healthPublished: 0,
  };
  readonly startedAt = Date.now();
  readonly ports: Port[] = [];
  readonly client: MqttClient;
  readonly commands: CommandRouter;
  private readonly log: Logger;
  private readonly queue: DurableQueue;
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

  /** Opens the queue (recovery runs here), connects, opens the ports. */
  static async start(options: AgentOptions): Promise<Agent> {
    const c = options.config;
    const log = options.log ?? createLogger({ level: c.log.level, format: c.log.format });
    mkdirSync(c.stateDir, { recursive: true });
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
    return new Agent(options, log, queue);
  }

  private constructor(
    private readonly options: AgentOptions,
    log: Logger,
    queue: DurableQueue,
  ) {
    const c = options.config;
    this.log = log;
    this.queue = queue;
    const mapper = new Mapper({
      prefix: c.topics.prefix,
      template: c.topics.reading,
      payload: c.topics.payload,
      qos: c.mqtt.qos,
      protocolVersion: c.mqtt.version,
    });
    this.client = connect(c.mqtt.url, this.clientOptions());
    this.commands = new CommandRouter({
      prefix: c.topics.prefix,
      timeoutMs: c.commandTimeoutMs,
      lookup: (device) => {
        const p = this.byDevice.get(device);
        return p !== undefined && p.link.state === 'open' ? p.session : undefined;
      },
      reply: (r) => this.publish(r.topic, r.payload, { qos: 1, retain: false, properties: r.properties }),
      log,
    });
    this.wireClient();
    const textBootId = (Math.random() * 0x1_0000_0000) >>> 0;
    for (const pc of c.serial) {
      const port = {} as Port;
      port.config = pc;
      port.session = new PortSession({
        port: pc.name,
        framing: pc.framing,
        device: pc.device,
        mapper,
        textBootId,
        host: {
          store: (m) => this.store(m),
          write: (b) => port.link.write(b),
          onDevice: (e) => this.onDevice(port, e),
          onResult: (device, r) => this.commands.result(device, r),
          now: () => Date.now(),
          log,
        },
      });
      port.link = new SerialLink({
        config: pc,
        log,
        opener: options.openPort,
        onData: (chunk) => port.session.push(chunk),
        onOpen: () => {
          port.session.reset();
          port.session.opened();
        },
        onClose: () => port.session.closed(),
      });
      this.ports.push(port);
    }
    for (const p of this.ports) p.link.start();
    if (options.statusFile !== false) {
      this.statusTimer = setInterval(() => this.writeStatusFile(), c.statusIntervalMs);
      this.statusTimer.unref();
      this.writeStatusFile();
    }
    if (c.healthIntervalMs > 0) {
      this.healthTimer = setInterval(() => this.publishHealth(), c.healthIntervalMs);
      this.healthTimer.unref();
    }
    log.log('info', 'agent-start', {
      agent: c.id,
      broker: c.mqtt.url,
      ports: c.serial.map((p) => p.name),
      queued: queue.stats().count,
    });
  }

  get agentTopic(): string {
    return `${this.options.config.topics.prefix}/_agent/${this.options.config.id}`;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  queueStats(): DurableQueueStats {
    return this.queue.stats();
  }

  private clientOptions(): ClientOptions {
    const m = this.options.config.mqtt;
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
      outbox: this.queue,
      reconnectPeriod: m.reconnectMinMs,
      reconnectMaxDelay: m.reconnectMaxMs,
      connectTimeout: 10_000,
      queueQoS0: false,
      will: { topic: `${this.agentTopic}/status`, payload: 'offline', qos: 1, retain: true },
    };
    if (m.persistentSession && m.version === 5) o.sessionExpiryInterval = m.sessionExpiryS;
    if (m.username !== undefined) o.username = m.username;
    if (m.password !== undefined) o.password = m.password;
    if (m.tls !== undefined) {
      if (m.tls.ca !== undefined) o.ca = readFileSync(m.tls.ca);
      if (m.tls.cert !== undefined) o.cert = readFileSync(m.tls.cert);
      if (m.tls.key !== undefined) o.key = readFileSync(m.tls.key);
      o.rejectUnauthorized = m.tls.rejectUnauthorized;
      if (m.tls.servername !== undefined) o.servername = m.tls.servername;
    }
    return o;
  }

  private wireClient(): void {
    const client = this.client;
    client.on('connect', (e: ConnectedEvent) => {
      this.connected = true;
      this.connectedSince = Date.now();
      this.counters.connects++;
      this.lastBrokerError = undefined;
      const q = this.queue.stats();
      this.log.log('info', 'broker-connected', {
        url: this.options.config.mqtt.url,
        sessionPresent: e.sessionPresent,
        queued: q.count,
      });
      this.publish(`${this.agentTopic}/status`, 'online', { qos: 1, retain: true });
      for (const p of this.ports) {
        if (p.session.deviceId !== undefined && p.link.state === 'open')
          this.publishDeviceStatus(p.session.deviceId, 'online');
      }
      client.subscribe({ filter: this.commands.filter, qos: 1 }).catch((err: Error) => {
        this.log.log('warn', 'subscribe-failed', { filter: this.commands.filter, error: err.message });
      });
    });
    client.on('close', (e) => {
      if (e?.error !== undefined) this.lastBrokerError = e.error.message;
      if (this.connected) {
        this.connected = false;
        this.connectedSince = Date.now();
        this.log.log('warn', 'broker-disconnected', {
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
        this.log.log('warn', 'broker-unreachable', { url: this.options.config.mqtt.url, error: reason });
      this.lastBrokerError = reason;
    });
    client.on('error', (err: Error) => {
      this.lastBrokerError = err.message;
      this.log.log('warn', 'broker-error', { error: err.message });
    });
    client.on('end', () => {
      if (this.stopping) return;
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
    client.on('message', (_topic: string, _payload: Uint8Array, packet: PublishPacket) => {
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

  private publish(
    topic: string,
    payload: string | Uint8Array,
    opts: { qos: 0 | 1 | 2; retain: boolean; properties?: OutboxMessage['properties'] },
  ): void {
    this.client.publish(topic, payload, opts).then(
      () => {
        this.counters.published++;
      },
      (err: Error & { code?: string }) => {
        if (err.code === 'CLIENT_ENDED' || err.code === 'NOT_CONNECTED') return;
        this.counters.publishErrors++;
        this.log.log('warn', 'publish-failed', { topic, error: err.message });
      },
    );
  }

  private publishDeviceStatus(device: string, state: 'online' | 'offline'): void {
    this.publish(`${this.options.config.topics.prefix}/${device}/status`, state, { qos: 1, retain: true });
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
    }
    totals.commandsReceived = this.commands.counters.received;
    totals.commandErrors = this.commands.counters.errors;
    return {
      pid: process.pid,
      agentId: this.options.config.id,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      broker: {
        url: this.options.config.mqtt.url,
        connected: this.connected,
        since: this.connectedSince,
        reconnects: this.counters.reconnects,
        lastError: this.lastBrokerError,
      },
      queue: {
        dir: this.options.config.queue.dir,
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
        framing: p.config.framing,
        state: p.link.state,
        since: p.link.since,
        device: p.session.deviceId,
        bootId: p.session.bootId,
        lastError: p.link.lastError,
        counters: { ...p.session.counters, ...prefixed('link', p.link.counters) },
      })),
      counters: totals,
    };
  }

  private writeStatusFile(): void {
    try {
      writeStatus(this.options.config.stateDir, this.snapshot());
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
   * Graceful stop: stop reading the ports, let running stores finish (their ACKs go out),
   * publish offline statuses, give the broker `drainMs` to acknowledge what is in flight,
   * DISCONNECT, close the queue (fsync, cursor).
   */
  async stop(drainMs = 2000): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.statusTimer);
    clearInterval(this.healthTimer);
    clearTimeout(this.refusedTimer);
    const until = Date.now() + drainMs;
    // Let frames being stored finish and ACK while the ports are still open.
    while (Date.now() < until && this.ports.some((p) => p.session.storingFrames > 0)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(this.ports.map((p) => p.link.stop()));
    for (const p of this.ports) p.session.closed();
    this.commands.close();
    if (this.connected) {
      this.publish(`${this.agentTopic}/status`, 'offline', { qos: 1, retain: true });
      // Bounded wait for the last acknowledgements; what is left stays queued for next time.
      while (Date.now() < until && this.connected && this.queue.stats().count > 0) {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    await this.client.end().catch(() => undefined);
    if (this.options.statusFile !== false) this.writeStatusFile();
    await this.queue.close();
    this.log.log('info', 'agent-stop', { queued: this.queue.stats().count });
  }
}

function prefixed(p: string, o: object): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) out[`${p}${k[0].toUpperCase()}${k.slice(1)}`] = v as number;
  return out;
}
