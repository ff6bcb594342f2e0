/**
 * Bridges: a gateway broker bridged to an upstream mosquitto, both on loopback. Ours is
 * broker-lite (the CLI as a child process, its bridge's queue on disk with fsync per batch);
 * the peer is a mosquitto gateway bridged to the same upstream by its own config (its bridge
 * queue is in memory). Same load, same run:
 * - throughput: N QoS 1 messages published to the gateway, timed until the upstream subscriber
 *   has them all;
 * - drain: 100,000 QoS 1 messages published while the upstream is unreachable (all
 *   acknowledged by the gateway first), then the upstream address comes up (a TCP forwarder
 *   starts listening); timed until the subscriber has them all.
 * Both gateways: `max_inflight_messages 500`, `max_queued_messages 200000`, `restart_timeout 1`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { freePort, hasMosquitto, startMosquitto } from '../../test/helpers/mosquitto.ts';
import { type BenchArea, type BenchOptions, type BenchRow, costRow, rateRow } from '../harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');

interface Gateway {
  port: number;
  /** The gateway process, for its CPU time. */
  pid: number | undefined;
  stop(): Promise<void>;
}

/** CPU milliseconds (user + system) a process has used, from /proc; NaN where unreadable. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (in parentheses, may hold spaces): utime and stime are 14 and 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}
/** USER_HZ: 100 on every Linux Node runs on. */
const CLOCK_TICKS = 100;

function connected(c: MqttClient): Promise<void> {
  return c.connected ? Promise.resolve() : new Promise((r) => c.once('connect', () => r()));
}

async function startLite(dir: string, upstreamPort: number): Promise<Gateway> {
  const port = await freePort();
  const conf = path.join(dir, 'lite.conf');
  fs.writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'max_inflight_messages 500',
      'max_queued_messages 200000',
      'persistence true',
      `persistence_location ${dir}`,
      'connection up',
      `address 127.0.0.1:${upstreamPort}`,
      'topic bench/# out 1',
      'remote_clientid lite-gw',
      'cleansession false',
      'restart_timeout 1',
      'notifications false',
      'bridge_queue_max_bytes 0',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(process.execPath, [BIN, '-c', conf, '--log-format', 'json'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`broker-lite did not start:\n${buf.slice(-2000)}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('"msg":"ready"')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return {
    port,
    pid: child.pid,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function startPeer(upstreamPort: number): Promise<Gateway> {
  const m = await startMosquitto({
    config: [
      'max_inflight_messages 500',
      'max_queued_messages 200000',
      'connection up',
      `address 127.0.0.1:${upstreamPort}`,
      'topic bench/# out 1',
      'remote_clientid mosq-gw',
      'cleansession false',
      'restart_timeout 1',
      'notifications false',
    ].join('\n'),
  });
  return { port: m.port, pid: m.pid, stop: () => m.stop() };
}

/** Counts messages on the upstream; resolves `until(n)` when n have arrived. */
class Sink {
  count = 0;
  /** performance.now() of the last message. */
  lastAt = 0;
  private target = Number.POSITIVE_INFINITY;
  private done: (() => void) | null = null;
  constructor(readonly client: MqttClient) {
    client.on('message', () => {
      this.lastAt = performance.now();
      if (++this.count >= this.target && this.done !== null) {
        const d = this.done;
        this.done = null;
        d();
      }
    });
  }
  until(n: number, ms: number): Promise<void> {
    if (this.count >= n) return Promise.resolve();
    this.target = n;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sink got ${this.count} of ${n} in ${ms} ms`)), ms);
      this.done = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

async function publishAll(port: number, n: number, topics: number): Promise<void> {
  const pub = connect({ host: '127.0.0.1', port, clientId: `bench-pub-${port}`, reconnectPeriod: 100 });
  await connected(pub);
  const payload = new Uint8Array(64);
  const CHUNK = 2000;
  for (let i = 0; i < n; i += CHUNK) {
    const waits: Promise<unknown>[] = [];
    for (let k = i; k < Math.min(n, i + CHUNK); k++)
      waits.push(pub.publish(`bench/t${k % topics}`, payload, { qos: 1 }));
    await Promise.all(waits);
  }
  await pub.end();
}

/** A TCP forwarder that makes the upstream reachable at a chosen moment. */
function forwarder(listenPort: number, toPort: number): Promise<{ close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((a) => {
    const b = net.connect({ host: '127.0.0.1', port: toPort });
    socks.add(a).add(b);
    a.pipe(b).pipe(a);
    const end = () => {
      a.destroy();
      b.destroy();
    };
    a.on('error', end).on('close', end);
    b.on('error', end).on('close', end);
  });
  return new Promise((resolve) =>
    server.listen(listenPort, '127.0.0.1', () =>
      resolve({
        close: () =>
          new Promise<void>((r) => {
            for (const s of socks) s.destroy();
            server.close(() => r());
          }),
      }),
    ),
  );
}

async function measure(
  kind: 'lite' | 'peer',
  upstreamPort: number,
  sink: Sink,
  n: number,
  drainN: number,
): Promise<{ throughput: number; drain: number; drainConnected: number; cpuUs: number; drainCpuUs: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-bridge-${kind}-`));
  try {
    // Throughput: the gateway bridged straight to the upstream.
    let gw = kind === 'lite' ? await startLite(dir, upstreamPort) : await startPeer(upstreamPort);
    // The bridge is up once a probe crosses it.
    const base0 = sink.count;
    const probe = connect({ host: '127.0.0.1', port: gw.port, reconnectPeriod: 100 });
    await connected(probe);
    for (let i = 0; i < 50 && sink.count === base0; i++) {
      await probe.publish('bench/probe', 'p', { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
    }
    await probe.end();
    await sink.until(base0 + 1, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    const base = sink.count;
    const cpu0 = cpuMs(gw.pid);
    const t0 = performance.now();
    await Promise.all([publishAll(gw.port, n, 10), sink.until(base + n, 60_000)]);
    const throughput = (n * 1000) / (performance.now() - t0);
    // The gateway's CPU per message bridged (less noisy than the wall clock on a shared machine).
    const cpuUs = ((cpuMs(gw.pid) - cpu0) * 1000) / n;
    await gw.stop();

    // Drain: the upstream unreachable (a port nothing listens on yet) while the load goes in.
    const dir2 = path.join(dir, 'drain');
    fs.mkdirSync(dir2);
    const hole = await freePort();
    gw = kind === 'lite' ? await startLite(dir2, hole) : await startPeer(hole);
    const before = sink.count;
    await publishAll(gw.port, drainN, 10);
    const fwd = await forwarder(hole, upstreamPort);
    const cpu1 = cpuMs(gw.pid);
    const t1 = performance.now();
    // The first message upstream: the bridge is connected (the reconnect wait is behind).
    await sink.until(before + 1, 90_000);
    const first = sink.lastAt;
    await sink.until(before + drainN, 90_000);
    const drain = (drainN * 1000) / (performance.now() - t1);
    const drainConnected = ((drainN - 1) * 1000) / (sink.lastAt - first);
    const drainCpuUs = ((cpuMs(gw.pid) - cpu1) * 1000) / drainN;
    await fwd.close();
    await gw.stop();
    return { throughput, drain, drainConnected, cpuUs, drainCpuUs };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function run(options: BenchOptions): Promise<BenchRow[]> {
  if (!hasMosquitto()) {
    return [
      rateRow(
        'bridge:qos1 throughput',
        'msgs/s',
        0,
        null,
        'mosquitto bridge',
        undefined,
        'mosquitto not installed',
      ),
    ];
  }
  const N = options.quick ? 5_000 : 20_000;
  const DRAIN = options.quick ? 10_000 : 100_000;
  const upstream = await startMosquitto({ config: 'max_queued_messages 1000000\nmax_inflight_messages 0' });
  const sinkClient = connect({
    host: '127.0.0.1',
    port: upstream.port,
    clientId: 'bench-sink',
    reconnectPeriod: 100,
  });
  await connected(sinkClient);
  await sinkClient.subscribe({ filter: 'bench/#', qos: 1 });
  const sink = new Sink(sinkClient);
  try {
    const peer = await measure('peer', upstream.port, sink, N, DRAIN);
    const ours = await measure('lite', upstream.port, sink, N, DRAIN);
    return [
      rateRow(
        'bridge:qos1 throughput local -> upstream',
        'msgs/s',
        ours.throughput,
        peer.throughput,
        'mosquitto bridge',
        undefined,
        `${N} x 64 B, 10 topics; ours acks locally after fsync`,
      ),
      costRow(
        'bridge:gateway CPU per message, local -> upstream',
        'us/msg',
        ours.cpuUs,
        peer.cpuUs,
        'mosquitto bridge',
        undefined,
        'user + system time of the gateway process during the throughput row (/proc, 10 ms ticks)',
      ),
      rateRow(
        `bridge:drain of ${DRAIN} queued during an outage`,
        'msgs/s',
        ours.drain,
        peer.drain,
        'mosquitto bridge',
        undefined,
        'ours from disk, mosquitto from memory; includes up to 1 s reconnect wait',
      ),
      rateRow(
        'bridge:drain, from the first message upstream',
        'msgs/s',
        ours.drainConnected,
        peer.drainConnected,
        'mosquitto bridge',
        undefined,
        'the same drain without the reconnect wait: first to last message at the upstream subscriber',
      ),
      costRow(
        'bridge:gateway CPU per message, drain',
        'us/msg',
        ours.drainCpuUs,
        peer.drainCpuUs,
        'mosquitto bridge',
        undefined,
        'user + system time of the gateway process from the upstream coming up to the last message there',
      ),
    ];
  } finally {
    await sinkClient.end();
    await upstream.stop();
  }
}

const area: BenchArea = { area: 'bridge', run };
export default area;
