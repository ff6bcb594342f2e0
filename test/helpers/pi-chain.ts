/**
 * The demo's chain for the `pi` and `flash` areas (issue 18.3, 18.4): three firmware-sim devices
 * on ptys (socat) -> the agent's bin -> a broker (broker-lite's bin, or Mosquitto) -> a
 * subscriber on `demo/#` (QoS 1, a persistent session, as the demo's). The bins run on `dist/`
 * under plain node, as installed, each optionally inside a cgroup. Devices and the subscriber
 * live in this process: they stand for the microcontrollers and the consumer, not the gateway.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { freePort, MOSQUITTO_BIN } from './mosquitto.ts';
import { ROOT } from './packed-install.ts';

import { stopProcess, untilListening, WatchedDevice } from './processes.ts';

const BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const AGENT_BIN = path.join(ROOT, 'packages/agent/bin/mqtt-edge-agent.js');
/** Readings per DATA frame of firmware-sim's default sensors (temp, hum, pressure, counter). */
export const SENSORS = 4;
const DEVICES = ['kitchen', 'greenhouse', 'boiler'];

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** utime + stime of `pid` (every thread), seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** Bytes `pid` caused to be written to storage (counted when it dirties a page). */
export function writeBytes(pid: number): number {
  const m = /write_bytes:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/** One counter from a Prometheus text endpoint. */
export async function scrape(port: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** A cgroup v1 `cpu` child (and a `cpuset` one pinning it to one CPU, where that controller is). */
export interface Cgroup {
  /** `sh -c` prefix that moves the shell into the groups before it execs the command. */
  enter: string;
  /** Periods, throttled periods, throttled seconds (cpu.stat). */
  stat(): { periods: number; throttled: number; throttledS: number };
  /** Removes the groups (their processes must have exited). */
  remove(): Promise<void>;
}

/** Makes the group, or says why not. */
export function makeCgroup(name: string, quotaUs: number, periodUs: number): Cgroup | string {
  const cpu = `/sys/fs/cgroup/cpu/${name}`;
  const cpuset = `/sys/fs/cgroup/cpuset/${name}`;
  try {
    mkdirSync(cpu);
    writeFileSync(`${cpu}/cpu.cfs_period_us`, String(periodUs));
    writeFileSync(`${cpu}/cpu.cfs_quota_us`, String(quotaUs));
  } catch (err) {
    try {
      rmdirSync(cpu);
    } catch {}
    return `no cgroup v1 cpu controller to use at /sys/fs/cgroup/cpu (${(err as Error).message}; needs root)`;
  }
  let pinned = false;
  try {
    mkdirSync(cpuset);
    writeFileSync(`${cpuset}/cpuset.cpus`, '0');
    writeFileSync(`${cpuset}/cpuset.mems`, '0');
    pinned = true;
  } catch {
    try {
      rmdirSync(cpuset);
    } catch {}
  }
  return {
    enter: `echo $$ > ${cpu}/cgroup.procs && ${pinned ? `echo $$ > ${cpuset}/cgroup.procs && ` : ''}exec "$@"`,
    stat() {
      const t = readFileSync(`${cpu}/cpu.stat`, 'utf8');
      const v = (k: string) => Number(new RegExp(`${k} (\\d+)`).exec(t)?.[1] ?? Number.NaN);
      return {
        periods: v('nr_periods'),
        throttled: v('nr_throttled'),
        throttledS: v('throttled_time') / 1e9,
      };
    },
    async remove() {
      // A process that just exited may still be listed for a moment (EBUSY): a few tries.
      for (const d of pinned ? [cpu, cpuset] : [cpu])
        for (let i = 0; i < 40; i++) {
          try {
            rmdirSync(d);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EBUSY') break;
            await sleep(50);
          }
        }
    },
  };
}

function spawnIn(cg: Cgroup | null, cmd: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const stdio: ['ignore', 'ignore', 'pipe'] = ['ignore', 'ignore', 'pipe'];
  const child =
    cg === null
      ? spawn(cmd, args, { env, stdio })
      : spawn('sh', ['-c', cg.enter, 'sh', cmd, ...args], { env, stdio });
  let tail = '';
  child.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  });
  (child as ChildProcess & { logTail: () => string }).logTail = () => tail;
  return child;
}

export interface ChainOptions {
  dir: string;
  /** Readings a second from the three devices together (4 per frame). */
  readingsPerSecond: number;
  broker: 'broker-lite' | 'mosquitto';
  /** The agent's queue.fsync: `batch` (default) or an interval such as `1s`. */
  agentFsync?: string;
  /** The agent's queue.commitWindow with `batch` (`0`, `100ms`, ...); its default when absent. */
  agentCommitWindow?: string;
  /** broker-lite's persistence_commit_window, ms; absent: the broker's default (50 ms, issue 18.4). */
  brokerCommitWindowMs?: number;
  /**
   * The agent's health interval: `2s` as the demo (its health messages carry the queue depth);
   * null for the agent's default (30 s; each health also rewrites its status file, a page).
   */
  healthInterval?: string | null;
  /** The agent's `agent.statusInterval` (status.json rewrites); absent: its default (2 s). */
  statusInterval?: string;
  /** The devices' firmware understands HELD (issue 18.4; firmware-sim's default); false: older firmware. */
  understandsHeld?: boolean;
  /** The devices' rings of unacknowledged DATA (firmware-sim's default: 32); HELLO `h` says it. */
  ringSize?: number;
  /** The agent's `agent.statusDir` (status.json); absent: its default (the state directory here). */
  statusDir?: string;
  cgroup?: Cgroup | null;
  /**
   * The bins' environment. Default: this one with NODE_OPTIONS cleared (dist/, as installed); a
   * test passes its own, whose source condition runs src/.
   */
  env?: NodeJS.ProcessEnv;
}

export interface Chain {
  broker: ChildProcess;
  agent: ChildProcess;
  brokerMetrics: number;
  agentMetrics: number;
  devices: WatchedDevice[];
  /** Readings the subscriber got, with their latency from the device's sample time, ms. */
  received: Array<{ at: number; latency: number; bytes: number }>;
  /** Agent queue depth from its health messages, with when it came. */
  queue: Array<{ at: number; count: number }>;
  stop(): Promise<void>;
}

export async function startChain(o: ChainOptions): Promise<Chain> {
  mkdirSync(o.dir, { recursive: true });
  const cg = o.cgroup ?? null;
  const env = o.env ?? { ...process.env, NODE_OPTIONS: '' };
  const mqttPort = await freePort();
  const brokerMetrics = await freePort();
  let broker: ChildProcess;
  if (o.broker === 'broker-lite') {
    const conf = path.join(o.dir, 'broker.conf');
    // As the demo runs it: a status page on a websockets listener, /metrics, $SYS every second.
    writeFileSync(
      conf,
      [
        'allow_anonymous true',
        'sys_interval 1',
        'persistence true',
        `persistence_location ${o.dir}/broker`,
        ...(o.brokerCommitWindowMs === undefined
          ? []
          : [`persistence_commit_window ${o.brokerCommitWindowMs}`]),
        `metrics_listener ${brokerMetrics} 127.0.0.1`,
        `listener ${mqttPort} 127.0.0.1`,
        `listener ${await freePort()} 127.0.0.1`,
        'protocol websockets',
        'status_page true',
        '',
      ].join('\n'),
    );
    mkdirSync(`${o.dir}/broker`, { recursive: true });
    broker = spawnIn(cg, process.execPath, [BROKER_BIN, '-c', conf], env);
  } else {
    const conf = path.join(o.dir, 'mosquitto.conf');
    mkdirSync(`${o.dir}/mosquitto`, { recursive: true });
    writeFileSync(
      conf,
      `user root\nallow_anonymous true\npersistence true\npersistence_location ${o.dir}/mosquitto/\nlistener ${mqttPort} 127.0.0.1\n`,
    );
    broker = spawnIn(cg, MOSQUITTO_BIN, ['-c', conf], env);
  }
  const children: ChildProcess[] = [broker];
  const devices: WatchedDevice[] = [];
  let sub: MqttClient | null = null;
  const stop = async (): Promise<void> => {
    await sub?.end().catch(() => undefined);
    for (const c of [...children].reverse()) await stopProcess(c);
    for (const d of devices) {
      await d.stop();
      await d.sim.transport.close();
    }
  };
  try {
    await untilListening(mqttPort, broker, o.broker);
    const received: Chain['received'] = [];
    const queue: Chain['queue'] = [];
    const byId = new Map<string, WatchedDevice>();
    // The subscriber first, so that it accounts for every reading.
    sub = connect(`mqtt://127.0.0.1:${mqttPort}`, {
      protocolVersion: 5,
      clientId: 'bench-subscriber',
      clean: false,
      sessionExpiryInterval: 300,
    });
    sub.on('message', (topic: string, payload: Uint8Array) => {
      const now = Date.now();
      if (topic.endsWith('/health')) {
        try {
          const h = JSON.parse(Buffer.from(payload).toString()) as { queue?: { count?: number } };
          if (typeof h.queue?.count === 'number') queue.push({ at: now, count: h.queue.count });
        } catch {}
        return;
      }
      let r: { device?: string; ts?: number };
      try {
        r = JSON.parse(Buffer.from(payload).toString());
      } catch {
        return;
      }
      const d = r.device === undefined ? undefined : byId.get(r.device);
      if (d === undefined || typeof r.ts !== 'number') return;
      // firmware-sim's clock is Date.now(); a reading's ts is its uptime at sampling
      const bootAt = (d.sim.firmware as unknown as { bootAt: number }).bootAt;
      received.push({ at: now, latency: now - (bootAt + r.ts), bytes: payload.length });
    });
    await sub.subscribe([{ filter: 'demo/#', qos: 1 }]);
    const intervalMs = Math.round((DEVICES.length * SENSORS * 1000) / o.readingsPerSecond);
    for (const id of DEVICES) {
      const d = await WatchedDevice.create(path.join(o.dir, `tty-${id}`), {
        deviceId: id,
        intervalMs,
        ...(o.understandsHeld === undefined ? {} : { understandsHeld: o.understandsHeld }),
        ...(o.ringSize === undefined ? {} : { ringSize: o.ringSize }),
      });
      devices.push(d);
      byId.set(id, d);
    }
    const agentMetrics = await freePort();
    const yaml = path.join(o.dir, 'agent.yaml');
    writeFileSync(
      yaml,
      `agent:\n  id: pi\n  stateDir: ${path.join(o.dir, 'agent')}\n${o.healthInterval === null ? '' : `  healthInterval: ${o.healthInterval ?? '2s'}\n`}${o.statusInterval === undefined ? '' : `  statusInterval: ${o.statusInterval}\n`}${o.statusDir === undefined ? '' : `  statusDir: ${o.statusDir}\n`}  log:\n    level: warn\n` +
        `serial:\n${devices.map((d) => `  - path: ${d.agentPath}\n    device: ${d.id}\n`).join('')}` +
        `mqtt:\n  url: mqtt://127.0.0.1:${mqttPort}\n  version: 5\ntopics:\n  prefix: demo\n` +
        `queue:\n  fsync: ${o.agentFsync ?? 'batch'}\n${o.agentCommitWindow === undefined ? '' : `  commitWindow: ${o.agentCommitWindow}\n`}` +
        `metrics:\n  listen: 127.0.0.1:${agentMetrics}\n`,
    );
    const agent = spawnIn(cg, process.execPath, [AGENT_BIN, '-c', yaml], env);
    children.push(agent);
    await untilListening(agentMetrics, agent, 'agent');
    for (const d of devices) d.start();
    return {
      broker,
      agent,
      brokerMetrics,
      agentMetrics,
      devices,
      received,
      queue,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The `p`-th fraction of `xs`. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}
