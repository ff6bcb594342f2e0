/**
 * Plays a case against a running broker: every connection of the case at once, each over a
 * real socket (TCP, a `ws` WebSocket client, or raw TCP to the WebSocket listener), writing its
 * steps' bytes as the delivery says and reading what comes back: counted (how far the fuzz
 * got), checked (logins the broker must refuse, deliveries the ACL forbids) and, on connections
 * that play the well-behaved client, acknowledged. Every wait is bounded, so a case ends even
 * when the broker does not answer.
 */
import net from 'node:net';
import { encode, type Packet, PacketParser, type ProtocolVersion } from '@mqtt-edge/codec';
import WebSocket from 'ws';
import type { AclOracle } from './invariants.ts';
import type { ConnPlan, End, FloodPlan, FuzzCase, MqttConnPlan, RawWsPlan } from './recipes.ts';
import {
  type Credentials,
  connectVersion,
  disconnectBytes,
  type Login,
  loginOf,
  packetBytes,
  pieces,
  upgradeRequest,
  wsFrame,
} from './wire.ts';

export interface Endpoint {
  mqttPort: number;
  wsPort: number;
  creds: Credentials;
}

/** What the fuzz reached, summed over a run: proof that it gets past the front door. */
export class DriverStats {
  cases = 0;
  connections = 0;
  refusedConnections = 0;
  bytesSent = 0;
  /** Packets from the broker by type (CONNACK by reason code, e.g. `connack:0`). */
  readonly received = new Map<string, number>();

  count(key: string): void {
    this.received.set(key, (this.received.get(key) ?? 0) + 1);
  }

  summary(): string {
    const got = [...this.received].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}=${n}`);
    return (
      `${this.cases} cases, ${this.connections} connections (${this.refusedConnections} not opened), ` +
      `${(this.bytesSent / 1e6).toFixed(1)} MB sent; broker sent: ${got.join(' ') || 'nothing'}`
    );
  }
}

/** Where the driver reports what it saw the broker do wrong. */
export interface Watch {
  oracle: AclOracle;
  violations: string[];
}

const CONNECT_TIMEOUT_MS = 2000;
const CONNACK_WAIT_MS = 1500;
const CLOSE_WAIT_MS = 1000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One open connection, whatever carries it. */
interface Link {
  write(b: Uint8Array): void;
  readonly closed: boolean;
  /** Resolves when the connection is closed (by either side). */
  readonly whenClosed: Promise<void>;
  finish(end: End): void;
}

function tcpLink(port: number, onData: (b: Uint8Array) => void): Promise<Link | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let closed = false;
    let closedNow = () => {};
    const whenClosed = new Promise<void>((r) => {
      closedNow = r;
    });
    // A connection not open in time is closed; 'close' then resolves undefined.
    const timer = setTimeout(() => s.destroy(), CONNECT_TIMEOUT_MS);
    s.on('error', () => {});
    s.on('data', onData);
    s.once('close', () => {
      closed = true;
      clearTimeout(timer);
      closedNow();
      resolve(undefined);
    });
    s.once('connect', () => {
      clearTimeout(timer);
      resolve({
        write: (b) => {
          if (!closed && s.writable) s.write(b);
        },
        get closed() {
          return closed;
        },
        whenClosed,
        finish(end) {
          if (end === 'reset') s.resetAndDestroy();
          else if (end === 'destroy') s.destroy();
          else s.end();
        },
      });
    });
  });
}

function wsLink(port: number, onData: (b: Uint8Array) => void): Promise<Link | undefined> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, ['mqtt'], {
      handshakeTimeout: CONNECT_TIMEOUT_MS,
    });
    let closed = false;
    let closedNow = () => {};
    const whenClosed = new Promise<void>((r) => {
      closedNow = r;
    });
    ws.on('error', () => {});
    ws.on('message', (data: Buffer) => onData(data));
    ws.once('close', () => {
      closed = true;
      closedNow();
      resolve(undefined);
    });
    ws.once('open', () =>
      resolve({
        write: (b) => {
          if (!closed && ws.readyState === WebSocket.OPEN) ws.send(b, { binary: true });
        },
        get closed() {
          return closed;
        },
        whenClosed,
        finish(end) {
          if (end === 'destroy' || end === 'reset') ws.terminate();
          else ws.close();
        },
      }),
    );
  });
}

/** Writes `bytes` as `how` says; stops early when the connection is gone. */
async function deliver(link: Link, bytes: Uint8Array, how: Parameters<typeof pieces>[1], stats: DriverStats) {
  for (const p of pieces(bytes, how)) {
    if (link.closed) return;
    if (p.gapMs > 0) await sleep(p.gapMs);
    link.write(p.bytes);
    stats.bytesSent += p.bytes.length;
  }
}

async function finish(link: Link, end: End, version: ProtocolVersion | undefined): Promise<void> {
  if (!link.closed) {
    if (end === 'disconnect' && version !== undefined) link.write(disconnectBytes(version));
    link.finish(end);
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([link.whenClosed, new Promise<void>((r) => (timer = setTimeout(r, CLOSE_WAIT_MS)))]);
  clearTimeout(timer);
  if (!link.closed) link.finish('destroy');
}

async function runMqttConn(
  plan: MqttConnPlan,
  ep: Endpoint,
  stats: DriverStats,
  watch: Watch,
): Promise<void> {
  const first = plan.steps.find((st) => st.s === 'send');
  // The protocol the broker will answer in: the CONNECT's, which may differ from the plan's.
  const spoken = first?.s === 'send' ? connectVersion(first.pkt, plan.version) : plan.version;
  let parser: PacketParser | null = new PacketParser({ protocolVersion: spoken });
  let connack: (() => void) | null = null;
  let gotConnack = false;
  let link: Link | undefined;
  const ack = (p: Packet) => {
    if (link !== undefined && !link.closed) link.write(encode(p, spoken));
  };
  const login: Login = first?.s === 'send' ? loginOf(first.pkt) : { kind: 'unknown' };
  let loggedIn = false;
  const onPacket = (p: Packet) => {
    stats.count(p.type === 'connack' ? `connack:${p.reasonCode}` : p.type);
    if (p.type === 'connack') {
      if (p.reasonCode === 0 && !gotConnack) {
        loggedIn = true;
        if (login.kind === 'refused')
          watch.violations.push(`CONNACK 0 for a login the broker must refuse (${login.who})`);
        watch.oracle.login(login.kind === 'user' ? login : undefined);
      }
      gotConnack = true;
      connack?.();
    } else if (p.type === 'publish' && loggedIn && login.kind === 'user') {
      const wrong = watch.oracle.check(login, p.topic);
      if (wrong !== undefined) watch.violations.push(wrong);
    }
    if (plan.autoAck && p.type === 'publish' && p.packetId !== undefined)
      ack({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId: p.packetId });
    if (plan.autoAck && p.type === 'pubrel') ack({ type: 'pubcomp', packetId: p.packetId });
  };
  const onData = (b: Uint8Array) => {
    try {
      parser?.push(b, onPacket);
    } catch {
      // What the broker sends is not under test here; stop reading it.
      parser = null;
    }
  };
  link = await (plan.via === 'tcp' ? tcpLink(ep.mqttPort, onData) : wsLink(ep.wsPort, onData));
  if (link === undefined) {
    stats.refusedConnections++;
    return;
  }
  for (const step of plan.steps) {
    if (link.closed) break;
    if (step.s === 'wait') await sleep(step.ms);
    else if (step.s === 'connack') {
      if (gotConnack) continue;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        link.whenClosed,
        new Promise<void>((r) => {
          connack = r;
          timer = setTimeout(r, CONNACK_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
      connack = null;
    } else await deliver(link, packetBytes(step.pkt, plan.version, ep.creds), step.how, stats);
  }
  await finish(link, plan.end, plan.version);
}

async function runRawWsConn(plan: RawWsPlan, ep: Endpoint, stats: DriverStats): Promise<void> {
  const link = await tcpLink(ep.wsPort, () => {});
  if (link === undefined) {
    stats.refusedConnections++;
    return;
  }
  await deliver(link, upgradeRequest(plan.request), plan.how, stats);
  for (const f of plan.frames) {
    if (link.closed) break;
    await deliver(link, wsFrame(f, ep.creds), { d: 'whole' }, stats);
  }
  await finish(link, plan.end, undefined);
}

/** One flood connection: CONNECT, FIN once written, gone. Resolves when it is closed. */
function floodOne(port: number, bytes: Uint8Array, stats: DriverStats): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => s.destroy(), CONNECT_TIMEOUT_MS);
    s.on('error', () => {});
    s.once('connect', () => {
      stats.bytesSent += bytes.length;
      s.end(bytes);
    });
    s.once('finish', () => s.destroy());
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function runFlood(plan: FloodPlan, ep: Endpoint, stats: DriverStats): Promise<void> {
  const connect = { k: 'connect' as const, who: plan.who, clientId: '', clean: true, keepalive: 60 };
  const bytes = packetBytes(connect, plan.version, ep.creds);
  for (let w = 0; w < plan.waves; w++) {
    stats.connections += plan.size;
    await Promise.all(Array.from({ length: plan.size }, () => floodOne(ep.mqttPort, bytes, stats)));
  }
}

function runConn(plan: ConnPlan, ep: Endpoint, stats: DriverStats, watch: Watch): Promise<void> {
  if (plan.via === 'flood') return runFlood(plan, ep, stats);
  stats.connections++;
  return plan.via === 'ws-raw' ? runRawWsConn(plan, ep, stats) : runMqttConn(plan, ep, stats, watch);
}

/**
 * Plays every connection of the case at once; resolves when all are closed. What the broker
 * sends that it must not (a delivery the ACL forbids, a login it must refuse) goes to
 * `watch.violations`.
 */
export async function runCase(c: FuzzCase, ep: Endpoint, stats: DriverStats, watch: Watch): Promise<void> {
  stats.cases++;
  await Promise.all(c.conns.map((plan) => runConn(plan, ep, stats, watch)));
}

/**
 * Connections caught half-way, for the shutdown check: an HTTP upgrade without its last line on
 * the WebSocket listener, and half a CONNECT on the MQTT one. Returns what closes them.
 */
export async function openHalfDone(ep: Endpoint): Promise<() => void> {
  const links = await Promise.all([tcpLink(ep.wsPort, () => {}), tcpLink(ep.mqttPort, () => {})]);
  const [upgrade, mqtt] = links;
  upgrade?.write(upgradeRequest('no-end'));
  const connect = packetBytes(
    { k: 'connect', who: 'alice', clientId: 'fz1', clean: true, keepalive: 60 },
    4,
    ep.creds,
  );
  mqtt?.write(connect.subarray(0, connect.length >> 1));
  return () => {
    for (const l of links) l?.finish('destroy');
  };
}
