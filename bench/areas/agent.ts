/**
 * The agent: 16 simulated devices (in-process links) -> agent -> broker-lite (a child process,
 * so the CPU figure is the agent's and the devices', not the broker's) at QoS 1 with group
 * fsync; a 100,000-reading backlog replayed after an outage, against MQTT.js replaying the same
 * backlog from its offline queue; RSS and restart time with 1,000,000 readings queued on disk.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Agent, Mapper, parseConfig, silentLogger } from '@mqtt-edge/agent';
import { DurableQueue } from '@mqtt-edge/client';
import { createLinkPair, FirmwareSim, InProcessTransport, type SensorSpec } from '@mqtt-edge/firmware-sim';
import mqtt from 'mqtt';
import { type BenchArea, type BenchOptions, type BenchRow, costRow, freePort, rateRow } from '../harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const AGENT_BIN = path.join(ROOT, 'packages/agent/bin/mqtt-edge-agent.js');

async function waitPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`port ${port} not listening`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function startBroker(): Promise<{ port: number; child: ChildProcess; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [BROKER_BIN, '-p', String(port), '--log-format', 'json'], {
    stdio: 'ignore',
  });
  await waitPort(port);
  return {
    port,
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

const until = async (cond: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return cond();
};

/** 16 devices x 20 sensors, more offered than the agent can take: its capacity. */
async function throughput(quick: boolean): Promise<BenchRow[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-agent-'));
  const broker = await startBroker();
  const DEVICES = 16;
  const sensors: SensorSpec[] = Array.from({ length: 20 }, (_, i) => ({ name: `s${i}`, kind: 'counter' }));
  const pairs = Array.from({ length: DEVICES }, () => createLinkPair());
  const config = parseConfig(
    {
      agent: { id: 'bench', stateDir: dir, healthInterval: 0 },
      serial: pairs.map((_, i) => ({ path: path.join(dir, `link${i}`) })),
      mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, version: 5, qos: 1, maxInflight: 1000 },
      topics: { prefix: 'b' },
      queue: { fsync: process.env.BENCH_AGENT_FSYNC === 'never' ? 'never' : 'batch' },
    },
    { env: {} },
  );
  const agent = await Agent.start({
    config,
    log: silentLogger,
    statusFile: false,
    openPort: async (p) => pairs[Number(/link(\d+)$/.exec(p.path ?? '')![1])].host,
  });
  await until(() => agent.isConnected, 5000);
  const sims = pairs.map(
    (pair, i) =>
      new FirmwareSim(new InProcessTransport(pair), {
        deviceId: `dev${i}`,
        sensors,
        intervalMs: 1000,
        // Offered load above what one core can take: 3 frames of 20 readings every 10 ms per
        // device (96,000 readings/s); what gets through is the agent's capacity.
        burstEveryMs: 10,
        burstSize: 3,
        ringSize: 512,
        timestamps: false,
        seed: i + 1,
      }),
  );
  const q0 = agent.queueStats();
  const acked0 = q0.nextSeq - 1 - q0.count;
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const s of sims) s.start();
  await new Promise((r) => setTimeout(r, quick ? 2000 : 6000));
  await Promise.all(sims.map((s) => s.stop()));
  await until(() => agent.queueStats().count === 0, 30_000);
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lag.disable();
  const q = agent.queueStats();
  const delivered = q.nextSeq - 1 - q.count - acked0;
  const stored = agent.ports.reduce((n, p) => n + p.session.counters.stored, 0);
  const overwrites = sims.reduce((n, s) => n + s.firmware.stats.ringOverwrites, 0);
  if (process.env.BENCH_AGENT_DEBUG) {
    console.error(
      'dataSent',
      sims.reduce((n, s) => n + s.firmware.stats.dataSent, 0),
      'bursts',
      sims.reduce((n, s) => n + s.stats.bursts, 0),
      'retransmits',
      sims.reduce((n, s) => n + s.firmware.stats.retransmits, 0),
      'acked',
      sims.reduce((n, s) => n + s.firmware.stats.acked, 0),
    );
    console.error(JSON.stringify(agent.snapshot().counters));
  }
  await agent.stop(500);
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
  const rate = delivered / secs;
  const cpuPct = ((cpu.user + cpu.system) / 1e6 / secs) * 100;
  return [
    rateRow(
      'agent:throughput 16 devices QoS 1 fsync batch',
      'readings/s',
      rate,
      20_000,
      'target',
      1,
      `${stored} readings stored and acknowledged to the devices, ${delivered} PUBACKed by broker-lite in ${secs.toFixed(1)} s (96,000/s offered in bursts, device ring overwrites ${overwrites}: readings the agent could not take in time); bench process CPU ${cpuPct.toFixed(0)}% of one core (agent + 16 simulated devices; broker in its own process); event-loop delay p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, max ${(lag.max / 1e6).toFixed(1)} ms`,
    ),
  ];
}

function readingMessage(mapper: Mapper, i: number) {
  return mapper.map({
    device: `dev${i % 16}`,
    bootId: 1234567,
    seq: i & 0xffff,
    index: 0,
    reading: { sensor: 'temp', value: 21.5 + (i % 100) / 100, unit: 'Cel', ts: i * 10 },
    receivedAt: 1_764_000_000_000 + i,
  });
}

async function fillQueue(dir: string, n: number): Promise<void> {
  const mapper = new Mapper({
    prefix: 'b',
    template: '{prefix}/{device}/{sensor}',
    payload: 'json',
    qos: 1,
    protocolVersion: 5,
  });
  const q = await DurableQueue.open(dir, { fsync: 'never' });
  const batch = 10_000;
  for (let i = 0; i < n; i += batch) {
    const ps: Promise<number>[] = [];
    for (let j = i; j < Math.min(n, i + batch); j++) ps.push(q.put(readingMessage(mapper, j)));
    await Promise.all(ps);
  }
  await q.close();
}

/** 100,000 readings queued during an outage; the link comes back; time until all PUBACKed. */
async function backlog(N: number, peerWaitMs: number): Promise<BenchRow[]> {
  const broker = await startBroker();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-agent-backlog-'));
  await fillQueue(path.join(dir, 'queue'), N);
  // Ours: the agent starts with the backlog on disk and the broker reachable: that is the moment
  // the link comes back. Timed from Agent.start (recovery included) to an empty queue.
  const config = parseConfig(
    {
      agent: { id: 'backlog', stateDir: dir, healthInterval: 0 },
      serial: [{ path: path.join(dir, 'none') }],
      mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, version: 5, qos: 1, maxInflight: 1000 },
      topics: { prefix: 'b' },
      queue: { fsync: 'batch' },
    },
    { env: {} },
  );
  const t0 = performance.now();
  const agent = await Agent.start({
    config,
    log: silentLogger,
    statusFile: false,
    openPort: () => new Promise(() => {}),
  });
  await until(() => agent.queueStats().count === 0, 120_000);
  const ours = (performance.now() - t0) / 1000;
  const left = agent.queueStats().count;
  await agent.stop(500);

  // MQTT.js: the same messages published while offline (its in-memory offline queue), then
  // connected; timed from the connect to the last publish callback.
  const mapper = new Mapper({
    prefix: 'b',
    template: '{prefix}/{device}/{sensor}',
    payload: 'json',
    qos: 1,
    protocolVersion: 5,
  });
  const client = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, {
    protocolVersion: 5,
    manualConnect: true,
    reconnectPeriod: 0,
  });
  let done = 0;
  const all = new Promise<void>((resolve) => {
    for (let i = 0; i < N; i++) {
      const m = readingMessage(mapper, i);
      client.publish(
        m.topic,
        Buffer.from(m.payload),
        { qos: 1, properties: { userProperties: { 'msg-id': `x${i}` } } },
        () => {
          if (++done === N) resolve();
        },
      );
    }
  });
  const t1 = performance.now();
  client.connect();
  await Promise.race([all, new Promise((r) => setTimeout(r, peerWaitMs))]);
  const peer = done === N ? (performance.now() - t1) / 1000 : null;
  await new Promise<void>((r) => client.end(false, {}, () => r()));
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
  return [
    rateRow(
      `agent:backlog replay ${N.toLocaleString('en-US')} readings QoS 1`,
      'msg/s',
      left === 0 ? N / ours : 0,
      peer === null ? null : N / peer,
      'MQTT.js offline queue',
      // The issue's target is a rate (20,000 msg/s), with MQTT.js beside it: judged in the note.
      undefined,
      `ours: durable queue on disk, recovery + replay ${ours.toFixed(2)} s; MQTT.js: in memory only (lost on a crash)${peer === null ? `, stalled: ${done.toLocaleString('en-US')} of ${N.toLocaleString('en-US')} acknowledged after ${peerWaitMs / 1000} s (its offline queue takes a packet id per message and there are 65,535)` : `, ${peer.toFixed(2)} s`}; target 20,000 msg/s: ${left === 0 && N / ours >= 20_000 ? 'ok' : 'MISS'}`,
    ),
  ];
}

interface StartFigures {
  startedMs: number;
  queueOpenMs: number;
  rssMb: number;
  hwmMb: number;
}

/** Spawns the agent (its bin, as systemd would) on `dir`; measures start-up and memory. */
async function measureStart(dir: string): Promise<StartFigures> {
  const deadPort = await freePort(); // nothing listens: the queue stays as it is
  const config = path.join(dir, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify({
      agent: { id: 'big', stateDir: dir, healthInterval: 0 },
      serial: [{ path: path.join(dir, 'no-such-tty') }],
      mqtt: { url: `mqtt://127.0.0.1:${deadPort}`, reconnectMin: '1s', reconnectMax: '5s' },
      topics: { prefix: 'b' },
    }),
  );
  const t0 = performance.now();
  const child = spawn(process.execPath, [AGENT_BIN, '-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let queueOpenMs = -1;
  let startedMs = -1;
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('agent did not start in 60 s')), 60_000);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      buf += s;
      for (const line of buf.split('\n')) {
        if (line.includes('"queue-open"')) queueOpenMs = (JSON.parse(line) as { ms: number }).ms;
        if (line.includes('"agent-start"') && startedMs < 0) {
          startedMs = performance.now() - t0;
          clearTimeout(t);
          resolve();
        }
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
  });
  await new Promise((r) => setTimeout(r, 3000));
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const hwmKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
  return { startedMs, queueOpenMs, rssMb: rssKb / 1024, hwmMb: hwmKb / 1024 };
}

/** RSS and restart time of the agent process with 1,000,000 readings queued on disk. */
async function bigQueue(quick: boolean): Promise<BenchRow[]> {
  const N = quick ? 100_000 : 1_000_000;
  // One unmeasured run first, so the measured starts find dist/ in the page cache.
  spawnSync(process.execPath, [AGENT_BIN, '--help'], { stdio: 'ignore' });
  const empty = mkdtempSync(path.join(os.tmpdir(), 'bench-agent-empty-'));
  const idle = await measureStart(empty);
  rmSync(empty, { recursive: true, force: true });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-agent-big-'));
  await fillQueue(path.join(dir, 'queue'), N);
  const full = await measureStart(dir);
  rmSync(dir, { recursive: true, force: true });
  const label = N.toLocaleString('en-US');
  return [
    costRow(
      `agent:RSS with ${label} readings queued`,
      'MB',
      full.rssMb,
      80,
      'target',
      1,
      `peak ${full.hwmMb.toFixed(1)} MB; the same agent with an empty queue: ${idle.rssMb.toFixed(1)} MB (node itself ~39 MB), so the queue costs ${(full.rssMb - idle.rssMb).toFixed(1)} MB`,
    ),
    costRow(
      `agent:restart with ${label} readings queued`,
      'ms',
      full.startedMs,
      2000,
      'target',
      1,
      `spawn of the bin to agent-start, node start-up included (empty queue: ${idle.startedMs.toFixed(0)} ms); queue recovery itself ${full.queueOpenMs} ms`,
    ),
  ];
}

const area: BenchArea = {
  area: 'agent',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const q = options.quick;
    // BENCH_AGENT_ROWS=throughput,backlog,big runs only those groups (default: all of them)
    const only = process.env.BENCH_AGENT_ROWS?.split(',').map((x) => x.trim());
    const want = (g: string) => only === undefined || only.includes(g);
    return [
      ...(want('throughput') ? await throughput(q) : []),
      ...(want('backlog') ? await backlog(q ? 20_000 : 100_000, q ? 20_000 : 30_000) : []),
      // Below MQTT.js's 65,535 packet-id ceiling, for a rate both sides finish.
      ...(q || !want('backlog') ? [] : await backlog(60_000, 60_000)),
      ...(want('big') ? await bigQueue(q) : []),
    ];
  },
};
export default area;
