/**
 * A NATS cluster on loopback (Debian's `nats-server`): N nodes, each with JetStream (its own store
 * directory) and MQTT, each on its own ports on 127.0.0.1 (free ports picked at run time, below
 * the kernel's ephemeral range: see stablePort), routed to each other. Nodes can be SIGKILLed
 * and started again on the same ports and store. Readiness is an MQTT CONNECT
 * that gets CONNACK 0 from every node (JetStream up, the MQTT streams in place), never a sleep.
 * Every node this module starts is killed when the process exits, so none outlives a test.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { exited, track } from './mosquitto.ts';

export const NATS_BIN = '/usr/sbin/nats-server';
const LOG_LIMIT = 256 * 1024;

export function hasNats(): boolean {
  return existsSync(NATS_BIN);
}

/** `v2.9.10`, or undefined without the binary. */
export function natsVersion(): string | undefined {
  if (!hasNats()) return undefined;
  return /v[0-9.]+/.exec(execFileSync(NATS_BIN, ['--version'], { encoding: 'utf8' }))?.[0];
}

/**
 * One MQTT 3.1.1 CONNECT by hand (keepalive 30 s): resolves with the CONNACK's return code and
 * the socket, left open (a session that stays connected); rejects when the connection closes
 * first or after `timeoutMs`.
 */
export function mqttConnect(
  port: number,
  clientId: string,
  timeoutMs: number,
  clean = true,
): Promise<{ code: number; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const id = Buffer.from(clientId);
    const body = Buffer.concat([
      Buffer.from([
        0,
        4,
        0x4d,
        0x51,
        0x54,
        0x54,
        4,
        clean ? 0x02 : 0,
        0,
        30,
        id.length >> 8,
        id.length & 0xff,
      ]),
      id,
    ]);
    const s = net.connect({ host: '127.0.0.1', port });
    const fail = (err: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    const timer = setTimeout(
      () => fail(new Error(`no CONNACK from port ${port} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    let got = Buffer.alloc(0);
    s.once('connect', () => s.write(Buffer.concat([Buffer.from([0x10, body.length]), body])));
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < 4) return;
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      s.off('error', fail);
      s.on('error', () => {});
      if (got[0] !== 0x20) fail(new Error(`port ${port} answered CONNECT with packet type ${got[0]}`));
      else resolve({ code: got[3], socket: s });
    };
    const onClose = () => fail(new Error(`port ${port} closed the connection before CONNACK`));
    s.on('data', onData);
    s.once('error', fail);
    s.once('close', onClose);
  });
}

/**
 * A QoS 1 PUBLISH (packet id 1) on a socket `mqttConnect` left open: resolves at its PUBACK,
 * rejects when the connection closes first or after `timeoutMs`.
 */
export function mqttPublishQos1(socket: net.Socket, topic: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = Buffer.from(topic);
    const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.from([0, 1, 0x78])]);
    let got = Buffer.alloc(0);
    const done = (err?: Error) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`no PUBACK in ${timeoutMs} ms`)), timeoutMs);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // Anything before the PUBACK (a retained message, a PINGRESP) is skipped packet by packet.
      while (got.length >= 2 && got.length >= 2 + got[1]) {
        if (got[0] === 0x40) return done();
        got = got.subarray(2 + got[1]);
      }
    };
    const onClose = () => done(new Error('connection closed before PUBACK'));
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(Buffer.concat([Buffer.from([0x32, body.length]), body]));
  });
}

/** One clean MQTT 3.1.1 session by hand: resolves with the CONNACK's return code, then disconnects. */
export async function mqttConnectCode(port: number, clientId: string, timeoutMs: number): Promise<number> {
  const { code, socket } = await mqttConnect(port, clientId, timeoutMs);
  socket.end(Buffer.from([0xe0, 0]));
  return code;
}

/**
 * A free loopback port below the kernel's ephemeral range, picked at random. A node that is
 * killed and started again needs its ports back, and while it is down a port from the ephemeral
 * range can become the source port of any outgoing connection on the machine (ours included:
 * proxies, clients), which would make the restart fail with EADDRINUSE.
 */
export async function stablePort(): Promise<number> {
  let low = 32_768;
  try {
    low =
      Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: the usual default.
  }
  const from = Math.min(20_000, low - 1000);
  for (let i = 0; i < 100; i++) {
    const port = from + Math.floor(Math.random() * (low - from));
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port below the ephemeral range');
}

export interface NatsNodePorts {
  client: number;
  cluster: number;
  mqtt: number;
}

export class NatsNode {
  private child: ChildProcess | null = null;
  private output = '';
  /** When the node was last SIGKILLed (ms since the epoch). */
  killedAt = 0;
  starts = 0;

  constructor(
    readonly name: string,
    readonly ports: NatsNodePorts,
    readonly storeDir: string,
    readonly confPath: string,
  ) {}

  get mqttPort(): number {
    return this.ports.mqtt;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    const c = this.child;
    return c !== null && c.exitCode === null && c.signalCode === null;
  }

  /** What the node wrote (its log, the last 128..256 KiB of it). */
  log(): string {
    return this.output;
  }

  /** Starts the process; resolves once it logged "Server is ready" (routes and JetStream may still be forming). */
  async start(timeoutMs = 15_000): Promise<void> {
    if (this.running) return;
    this.starts++;
    const child = spawn(NATS_BIN, ['-c', this.confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    track(child);
    let from = this.output.length;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`${this.name}: not ready in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const keep = (d: Buffer) => {
        this.output += d;
        if (this.output.length > LOG_LIMIT) {
          const cut = this.output.length - LOG_LIMIT / 2;
          this.output = this.output.slice(cut);
          from = Math.max(0, from - cut);
        }
        if (this.output.includes('Server is ready', from)) done();
      };
      const onExit = (code: number | null) =>
        done(new Error(`${this.name}: nats-server exited (${code}) before it was ready:\n${this.output}`));
      const done = (err?: Error) => {
        clearTimeout(timer);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      child.once('exit', onExit);
    });
  }

  /** SIGKILL (a node's death), resolved once the process is gone. */
  async kill(): Promise<void> {
    const c = this.child;
    if (c === null || !this.running) return;
    this.killedAt = Date.now();
    c.kill('SIGKILL');
    await exited(c);
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    const c = this.child;
    if (c === null || !this.running) return;
    c.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), graceMs);
    });
    const r = await Promise.race([exited(c), late]);
    clearTimeout(timer);
    if (r === 'late') {
      c.kill('SIGKILL');
      await exited(c);
    }
  }

  /** Resolves once this node answers an MQTT CONNECT with CONNACK 0 (bounded retries). */
  async mqttReady(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last: unknown;
    for (let i = 0; Date.now() < end; i++) {
      if (!this.running) throw new Error(`${this.name} is not running`);
      try {
        const code = await mqttConnectCode(
          this.ports.mqtt,
          `ready-${this.name}-${i}`,
          Math.max(1000, end - Date.now()),
        );
        if (code === 0) return;
        last = new Error(`CONNACK ${code}`);
      } catch (err) {
        last = err;
      }
      // Nothing announces "JetStream ready for MQTT" but an accepted CONNECT: try again shortly.
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `${this.name}: MQTT not ready in ${timeoutMs} ms (${String(last)}); log tail:\n${this.output.slice(-2000)}`,
    );
  }
}

export interface NatsClusterOptions {
  /** Nodes; default 3. */
  size?: number;
  /** Where configs and stores go; default a fresh tmp dir, removed by stop(). */
  dir?: string;
  /** Extra lines inside each node's `mqtt { }` block (e.g. `ack_wait: "5s"`). */
  mqtt?: string;
  /** Cluster name; default `fleet`. */
  name?: string;
}

export interface NatsCluster {
  readonly nodes: NatsNode[];
  readonly dir: string;
  /** Every node answers MQTT CONNECT with CONNACK 0. */
  ready(timeoutMs?: number): Promise<void>;
  /** Kills every node (SIGTERM, then SIGKILL) and removes the directory if it made it. */
  stop(): Promise<void>;
}

/** The config file of node `i` (0-based) in a cluster whose nodes have `all` ports. */
export function natsNodeConfig(
  clusterName: string,
  nodeName: string,
  ports: NatsNodePorts,
  others: NatsNodePorts[],
  storeDir: string,
  mqttExtra = '',
): string {
  return [
    `server_name: ${nodeName}`,
    `listen: 127.0.0.1:${ports.client}`,
    `jetstream {`,
    `  store_dir: ${JSON.stringify(storeDir)}`,
    `  max_memory_store: 64MB`,
    `  max_file_store: 1GB`,
    `}`,
    // A single node runs without a cluster block (JetStream refuses a cluster without routes).
    ...(others.length === 0
      ? []
      : [
          `cluster {`,
          `  name: ${clusterName}`,
          `  listen: 127.0.0.1:${ports.cluster}`,
          `  routes: [${others.map((o) => `nats-route://127.0.0.1:${o.cluster}`).join(', ')}]`,
          `}`,
        ]),
    `mqtt {`,
    `  listen: 127.0.0.1:${ports.mqtt}`,
    ...mqttExtra
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => `  ${l.trim()}`),
    `}`,
    '',
  ].join('\n');
}

/** Starts the cluster and waits until every node takes MQTT connections. */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const size = options.size ?? 3;
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(path.join(os.tmpdir(), 'nats-'));
  const ports: NatsNodePorts[] = [];
  for (let i = 0; i < size; i++)
    ports.push({ client: await stablePort(), cluster: await stablePort(), mqtt: await stablePort() });
  const nodes = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const store = path.join(dir, name, 'store');
    mkdirSync(store, { recursive: true });
    const conf = path.join(dir, name, 'nats.conf');
    writeFileSync(
      conf,
      natsNodeConfig(
        options.name ?? 'fleet',
        name,
        p,
        ports.filter((_, k) => k !== i),
        store,
        options.mqtt,
      ),
    );
    return new NatsNode(name, p, store, conf);
  });
  const cluster: NatsCluster = {
    nodes,
    dir,
    async ready(timeoutMs = 30_000) {
      await Promise.all(nodes.map((n) => n.mqttReady(timeoutMs)));
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await cluster.ready();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
