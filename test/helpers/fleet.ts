/**
 * A fleet on loopback (issue 16): a NATS cluster (JetStream + MQTT, nats.ts), gateways made of a
 * broker-lite with one bridge into the cluster (MQTT 3.1.1, QoS 1, `cleansession false`, every
 * node listed, each through a fault-injecting proxy of its own so that a gateway's uplink can be
 * cut), an agent per gateway with simulated devices on in-process links, and one consumer on the
 * cluster with a persistent QoS 1 session. Everything runs in this process except the NATS nodes;
 * stop() ends all of it (and nats.ts kills any node left when the process exits).
 *
 * What it measures: per bridge, when the upstream acknowledged messages (the bridge's queue is
 * wrapped), and when it connected where (its log); the engine's own recovery after a node's death
 * (a probe that opens fresh sessions on the surviving nodes); what the consumer got against what
 * the devices were told is stored.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, parseConfig as parseAgentConfig, silentLogger } from '@mqtt-edge/agent';
import { type Bridges, Broker, parseConfig, startBridges } from '@mqtt-edge/broker-lite';
import { connect, type MqttClient, type Outbox } from '@mqtt-edge/client';
import { createLinkPair, InProcessTransport, type SensorSpec } from '@mqtt-edge/firmware-sim';
import { FaultProxy } from './fault-proxy.ts';
import { mqttConnect, mqttPublishQos1, type NatsCluster, type NatsNode, startNatsCluster } from './nats.ts';
import { until, WatchedDevice } from './processes.ts';

export interface FleetOptions {
  gateways?: number;
  devicesPerGateway?: number;
  /** Sensors per device: each reading frame carries one reading per sensor. */
  sensors?: number;
  /** Each device's reporting interval. */
  intervalMs?: number;
  /** Extra lines in every NATS node's `mqtt { }` block. */
  natsMqtt?: string;
  /** Extra bridge lines (the defaults are what is under test: none by default). */
  bridgeLines?: string[];
  /** Called with each gateway's broker log lines (tests print them on failure). */
  onLog?: (gateway: string, level: string, message: string, fields?: Record<string, unknown>) => void;
}

export interface GatewayLog {
  at: number;
  level: string;
  message: string;
  fields?: Record<string, unknown>;
}

export interface Gateway {
  name: string;
  broker: Broker;
  bridges: Bridges;
  /** One proxy per cluster node, in the cluster's node order. */
  proxies: FaultProxy[];
  /** The bridge's address list as node indexes (gateway i lists node i first). */
  order: number[];
  agent: Agent;
  devices: WatchedDevice[];
  logs: GatewayLog[];
  /** When the upstream acknowledged messages (ms since the epoch), one entry per ack. */
  ackTimes: number[];
}

/** Connections of a bridge as its log tells them. */
export interface BridgeConnection {
  at: number;
  node: number;
}

export class FleetConsumer {
  readonly byId = new Map<string, number>();
  /** Copies beyond the first, per id. */
  duplicates = 0;
  received = 0;
  other = 0;
  connects = 0;
  /**
   * End-to-end latency samples (ms): arrival here minus `at`, when the agent received the
   * reading from the device (same clock: one process). At most 500,000 kept.
   */
  readonly latencies: number[] = [];
  private waiters: Array<{ pred: () => boolean; resolve: () => void }> = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (_topic, payload) => {
      const id = idOf(payload);
      if (id === undefined) {
        this.other++;
        return;
      }
      this.received++;
      if (this.latencies.length < 500_000) {
        const at = atOf(payload);
        if (at !== undefined) this.latencies.push(Date.now() - at);
      }
      const n = this.byId.get(id) ?? 0;
      if (n > 0) this.duplicates++;
      this.byId.set(id, n + 1);
      if (this.waiters.length > 0)
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred()) return true;
          w.resolve();
          return false;
        });
    });
    client.on('connect', () => this.connects++);
  }

  /** A persistent QoS 1 session (MQTT 3.1.1, `clean false`) on `filter`, failing over across `ports`. */
  static async start(ports: number[], filter: string, clientId: string): Promise<FleetConsumer> {
    const client = connect({
      servers: ports.map((port) => ({ host: '127.0.0.1', port })),
      protocolVersion: 4,
      clientId,
      clean: false,
      keepalive: 10,
      reconnectPeriod: 200,
      reconnectMaxDelay: 1000,
      connectTimeout: 15_000,
      maxInflight: 1000,
    });
    const c = new FleetConsumer(client);
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    const r = await client.subscribe({ filter, qos: 1 });
    if (r.granted[0].qos !== 1) throw new Error(`consumer: subscription granted ${r.granted[0].qos}`);
    return c;
  }

  /** Resolves once `pred` holds (checked at each message); rejects after `ms` naming `what`. */
  until(pred: () => boolean, what: string, ms: number): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`consumer: timed out waiting for ${what} (received ${this.received})`));
      }, ms);
      this.waiters.push(w);
    });
  }

  stop(): Promise<void> {
    return this.client.end().catch(() => undefined);
  }
}

function idOf(payload: Uint8Array): string | undefined {
  // `{"id":"dev:boot:seq:i",...}`: the agent's JSON payload starts with the id.
  const text = Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.length, 200)).toString();
  const m = /^\{"id":"([^"]+)"/.exec(text);
  return m?.[1];
}

/** `..."at":1234567890123}`: the agent's JSON payload ends with when it received the reading. */
function atOf(payload: Uint8Array): number | undefined {
  const n = payload.length;
  if (n < 20 || payload[n - 1] !== 0x7d) return undefined;
  const text = Buffer.from(payload.buffer, payload.byteOffset + n - 20, 20).toString();
  const m = /"at":(\d+)\}$/.exec(text);
  return m === null ? undefined : Number(m[1]);
}

export interface FleetVerdict {
  /** Reading frames the devices were told are stored (ACKed), and the readings they hold. */
  ackedFrames: number;
  expectedReadings: number;
  missing: string[];
  duplicates: number;
  received: number;
}

export interface Fleet {
  readonly cluster: NatsCluster;
  readonly gateways: Gateway[];
  readonly consumer: FleetConsumer;
  readonly sensors: number;
  readonly dir: string;
  startDevices(): void;
  stopDevices(): Promise<void>;
  /** The node gateway `g`'s bridge is connected to, from its stats (undefined while down). */
  connectedNode(g: Gateway): number | undefined;
  /** The bridge's connections (time, node index) as logged. */
  connections(g: Gateway): BridgeConnection[];
  /** Every reading the devices were told is stored, against what the consumer received. */
  verdict(): FleetVerdict;
  /**
   * Resolves once every ACKed reading arrived at the consumer and the agents' and bridges' queues
   * are empty (the backlogs drained), or after about `timeoutMs`, with what it found.
   */
  drained(timeoutMs: number): Promise<FleetVerdict>;
  stop(): Promise<void>;
}

const SENSOR_NAMES = ['t', 'h', 'p', 'v'];

export async function startFleet(options: FleetOptions = {}): Promise<Fleet> {
  const nGateways = options.gateways ?? 3;
  const nDevices = options.devicesPerGateway ?? 2;
  const nSensors = options.sensors ?? 2;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fleet-'));
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const cluster = await startNatsCluster({
      dir: path.join(dir, 'nats'),
      // Every MQTT stream on all three nodes, whatever the cluster looked like when it was made.
      mqtt: `stream_replicas: 3\n${options.natsMqtt ?? ''}`,
    });
    stops.push(() => cluster.stop());
    const consumer = await FleetConsumer.start(
      cluster.nodes.map((n) => n.mqttPort),
      'fleet/#',
      'fleet-consumer',
    );
    stops.push(() => consumer.stop());
    const sensors: SensorSpec[] = SENSOR_NAMES.slice(0, nSensors).map((name) => ({ name, kind: 'counter' }));
    const gateways: Gateway[] = [];
    for (let g = 0; g < nGateways; g++) {
      const name = `gw${g + 1}`;
      const proxies: FaultProxy[] = [];
      for (const n of cluster.nodes) {
        const p = await FaultProxy.start(n.mqttPort);
        proxies.push(p);
        stops.push(() => p.close());
      }
      const order = cluster.nodes.map((_, k) => (g + k) % cluster.nodes.length);
      const logs: GatewayLog[] = [];
      const broker = new Broker({
        listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
        sysInterval: 0,
        allowAnonymous: true,
        logger: {
          log: (level, message, fields) => {
            if (logs.length >= 10_000) logs.splice(0, 5000);
            logs.push({ at: Date.now(), level, message, fields });
            options.onLog?.(name, level, message, fields);
          },
        },
      });
      await broker.listen();
      stops.push(() => stopBroker(broker));
      const conf = [
        'listener 0 127.0.0.1',
        'allow_anonymous true',
        'connection fleet',
        `address ${order.map((k) => `127.0.0.1:${proxies[k].port}`).join(' ')}`,
        'topic fleet/# out 1',
        'bridge_protocol_version mqttv311',
        `remote_clientid ${name}`,
        'cleansession false',
        ...(options.bridgeLines ?? []),
        '',
      ].join('\n');
      const cfg = parseConfig(conf, path.join(dir, `${name}.conf`));
      const ackTimes: number[] = [];
      const bridges = await startBridges(broker, cfg.bridges, {
        queueDir: (b) => path.join(dir, name, 'bridges', b),
        wrapQueue: (q) => ackTimesOf(q, ackTimes),
      });
      stops.push(() => bridges.close());
      const pairs = Array.from({ length: nDevices }, () => createLinkPair());
      const agentConfig = parseAgentConfig(
        {
          agent: { id: `${name}-agent`, stateDir: path.join(dir, name, 'agent'), healthInterval: 0 },
          serial: pairs.map((_, i) => ({ path: path.join(dir, name, `link${i}`) })),
          mqtt: {
            url: `mqtt://127.0.0.1:${broker.addresses[0].port}`,
            qos: 1,
            reconnectMin: '50ms',
            reconnectMax: '500ms',
          },
          topics: { prefix: 'fleet' },
        },
        { env: {} },
      );
      const agent = await Agent.start({
        config: agentConfig,
        log: silentLogger,
        statusFile: false,
        openPort: async (p) => pairs[Number(/link(\d+)$/.exec(p.path ?? '')![1])].host,
      });
      stops.push(() => agent.stop(500));
      const devices = pairs.map((pair, i) =>
        WatchedDevice.over(new InProcessTransport(pair), {
          deviceId: `${name}-d${i}`,
          sensors,
          intervalMs: options.intervalMs ?? 200,
          // A long outage of the agent's uplink is the agent's queue's to hold, not the ring's.
          ringSize: 256,
          timestamps: false,
          seed: g * 100 + i + 1,
        }),
      );
      stops.push(async () => {
        for (const d of devices) await d.stop();
      });
      gateways.push({ name, broker, bridges, proxies, order, agent, devices, logs, ackTimes });
    }
    const nodeOfPort = (g: Gateway, port: number): number | undefined => {
      const k = g.proxies.findIndex((p) => p.port === port);
      return k < 0 ? undefined : k;
    };
    const verdict = (): FleetVerdict => {
      const v: FleetVerdict = {
        ackedFrames: 0,
        expectedReadings: 0,
        missing: [],
        duplicates: consumer.duplicates,
        received: consumer.received,
      };
      for (const g of gateways)
        for (const d of g.devices) {
          const frames = new Set<string>();
          for (const a of d.acks) frames.add(`${a.bootId}:${a.seq}`);
          v.ackedFrames += frames.size;
          for (const f of frames)
            for (let i = 0; i < nSensors; i++) {
              v.expectedReadings++;
              const id = `${d.id}:${f}:${i}`;
              if (!consumer.byId.has(id)) v.missing.push(id);
            }
        }
      return v;
    };
    const fleet: Fleet = {
      cluster,
      gateways,
      consumer,
      sensors: nSensors,
      dir,
      startDevices() {
        for (const g of gateways) for (const d of g.devices) d.start();
      },
      async stopDevices() {
        for (const g of gateways) for (const d of g.devices) await d.stop();
      },
      connectedNode(g) {
        const st = g.bridges.stats()[0];
        if (st.state !== 'connected') return undefined;
        return nodeOfPort(g, Number(st.address.split(':').pop()));
      },
      connections(g) {
        const out: BridgeConnection[] = [];
        for (const l of g.logs) {
          if (l.message !== 'bridge connected') continue;
          const node = nodeOfPort(g, Number(String(l.fields?.address).split(':').pop()));
          if (node !== undefined) out.push({ at: l.at, node });
        }
        return out;
      },
      verdict,
      async drained(timeoutMs) {
        // Every ACKed reading is known once the devices stopped; wait for the consumer to have them.
        const expected = new Set<string>();
        for (const g of gateways)
          for (const d of g.devices)
            for (const a of d.acks)
              for (let i = 0; i < nSensors; i++) expected.add(`${d.id}:${a.bootId}:${a.seq}:${i}`);
        let left = [...expected].filter((id) => !consumer.byId.has(id));
        await consumer
          .until(
            () => {
              left = left.filter((id) => !consumer.byId.has(id));
              return left.length === 0;
            },
            `${left.length} readings`,
            timeoutMs,
          )
          .catch(() => undefined);
        // And the queues behind them are empty (the agents' statuses are in the bridges' too).
        await until(
          () =>
            gateways.every((g) => g.agent.queueStats().count === 0 && g.bridges.stats()[0].queue.count === 0),
          Math.max(1000, timeoutMs / 3),
        );
        return verdict();
      },
      stop: stopAll,
    };
    return fleet;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function stopBroker(b: Broker): Promise<void> {
  const closing = b.close();
  for (const conn of b.connections) conn.socket.destroy();
  await closing;
}

/** The bridge's queue, recording when the upstream acknowledged each message. */
function ackTimesOf(q: Outbox, times: number[]): Outbox {
  return {
    put: (m) => q.put(m),
    read: (after, max) => q.read(after, max),
    ack(seq) {
      times.push(Date.now());
      q.ack(seq);
    },
    stats: (now) => q.stats(now),
    close: () => q.close(),
  };
}

/** The first time in `times` (ascending) at or after `t`, or undefined. */
export function firstAtOrAfter(times: number[], t: number): number | undefined {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo < times.length ? times[lo] : undefined;
}

/**
 * One session on `node` that publishes a QoS 1 message: resolves with when its PUBACK came, or
 * rejects (refused, held and closed, timed out). What the engine itself gives a client.
 */
async function sessionPublish(
  node: NatsNode,
  clientId: string,
  clean: boolean,
  timeoutMs: number,
): Promise<number> {
  const end = Date.now() + timeoutMs;
  const { code, socket } = await mqttConnect(node.mqttPort, clientId, timeoutMs, clean);
  try {
    if (code !== 0) throw new Error(`CONNACK ${code}`);
    // On the consumer's topics: NATS stores a QoS 1 message in JetStream only where a QoS 1
    // subscription wants it, and that store is what a bridge waits for.
    await mqttPublishQos1(socket, 'fleet/probe', Math.max(500, end - Date.now()));
    return Date.now();
  } finally {
    socket.end(Buffer.from([0xe0, 0]));
  }
}

/**
 * The engine's own recovery after a node's death, apart from what a bridge adds: from `since`,
 * fresh clean sessions (a new client id each) are opened on every node in `nodes` every
 * `everyMs`, each publishing one QoS 1 message and left to run its course. Resolves with when
 * the first PUBACK came (undefined after `timeoutMs`): what a new client could get.
 */
export async function engineRecovery(
  nodes: NatsNode[],
  since: number,
  timeoutMs: number,
  everyMs = 250,
): Promise<number | undefined> {
  let done: number | undefined;
  const pending: Promise<void>[] = [];
  const end = since + timeoutMs;
  for (let i = 0; done === undefined && Date.now() < end; i++) {
    for (const n of nodes) {
      if (!n.running) continue;
      pending.push(
        sessionPublish(n, `probe-${n.name}-${since}-${i}`, true, Math.max(500, end - Date.now())).then(
          (at) => {
            if (done === undefined || at < done) done = at;
          },
          () => undefined,
        ),
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  await Promise.all(pending);
  return done;
}

/**
 * A persistent session (`clean false`) kept connected on a node, like a bridge's: after the
 * node's death, `handover()` takes it over on the other nodes and publishes a QoS 1 message, one
 * attempt after the other as fast as the engine answers (the best any bridge could do), and
 * resolves with when the PUBACK came: the engine's own failover time for a bridge.
 */
export async function witnessSession(
  node: NatsNode,
  clientId: string,
): Promise<{ handover(nodes: NatsNode[], timeoutMs: number): Promise<number | undefined> }> {
  const { code, socket } = await mqttConnect(node.mqttPort, clientId, 15_000, false);
  if (code !== 0) throw new Error(`witness session: CONNACK ${code}`);
  return {
    async handover(nodes, timeoutMs) {
      socket.destroy();
      const end = Date.now() + timeoutMs;
      for (let i = 0; Date.now() < end; i++) {
        const started = Date.now();
        try {
          return await sessionPublish(nodes[i % nodes.length], clientId, false, Math.max(500, end - started));
        } catch {
          // Held and closed by the node: the next one at once; a quick refusal, after a pause.
          if (Date.now() - started < 50) await new Promise((r) => setTimeout(r, 50));
        }
      }
      return undefined;
    },
  };
}
