/**
 * Issue 14, performance: what a status page watching costs broker-lite. The broker is the
 * built bin (`dist/`, plain node, as installed) in its own process, configured as the demo runs
 * it (an MQTT listener, a websockets listener with `status_page true`, `metrics_listener`,
 * `sys_interval 1`, persistence on). The demo's traffic comes from this process: an "agent"
 * publishing three devices' readings at QoS 1 (4 sensors each, every 1, 1.5 and 2 s, JSON as the
 * agent writes it), the agent's health every 2 s, and the demo's subscriber on `demo/#`.
 *
 * The broker's CPU time (utime + stime of /proc/PID/stat) is read over fixed windows, taken in
 * turn with nobody watching and with Debian's Chromium showing the page (it updates once a
 * second: `$SYS` every second, readings as they come). Rows: % of one core in each state, and
 * the difference (target: under 1 percentage point). Skipped, with the reason, without Chromium.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { CHROMIUM_SKIP, launchChromium } from '../../test/helpers/chromium.ts';
import { ROOT } from '../../test/helpers/packed-install.ts';
import { type BenchArea, type BenchOptions, type BenchRow, costRow } from '../harness.ts';

const BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const TICKS = 100; // USER_HZ on Linux

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** utime + stime of `pid`, seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICKS;
}

interface Started {
  child: ChildProcess;
  mqtt: number;
  page: number;
}

async function startBroker(dir: string): Promise<Started> {
  const conf = path.join(dir, 'broker.conf');
  writeFileSync(
    conf,
    [
      'allow_anonymous true',
      'sys_interval 1',
      'persistence true',
      `persistence_location ${dir}`,
      'metrics_listener 0 127.0.0.1',
      'listener 0 127.0.0.1',
      'listener 0 127.0.0.1',
      'protocol websockets',
      'status_page true',
      '',
    ].join('\n'),
  );
  // Plain node on dist/, as installed (the bench builds first): no source condition.
  const env = { ...process.env, NODE_OPTIONS: '' };
  const child = spawn(process.execPath, [BIN, '-c', conf, '--log-format', 'json'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    out += s;
  });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const m = /"msg":"ready".*"ports":"(\d+),(\d+)"/.exec(out);
    if (m) return { child, mqtt: Number(m[1]), page: Number(m[2]) };
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`broker-lite did not start: ${out.slice(0, 500)}`);
}

/** The demo's traffic: one agent with three devices, and the demo's subscriber. */
function demoTraffic(port: number): { stop(): Promise<void> } {
  const url = `mqtt://127.0.0.1:${port}`;
  const agent: MqttClient = connect(url, { protocolVersion: 5, clientId: 'bench-agent' });
  const sub: MqttClient = connect(url, { protocolVersion: 5, clientId: 'bench-subscriber' });
  sub.subscribe([{ filter: 'demo/#', qos: 1 }]).catch(() => {});
  agent.publish('demo/_agent/demo/status', 'online', { qos: 1, retain: true }).catch(() => {});
  const timers: NodeJS.Timeout[] = [];
  let seq = 0;
  const sensors: Array<[string, string, number]> = [
    ['temp', 'Cel', 21],
    ['hum', '%RH', 45],
    ['pressure', 'hPa', 1013.25],
    ['counter', '', 0],
  ];
  for (const [device, every] of [
    ['kitchen', 1000],
    ['greenhouse', 1500],
    ['boiler', 2000],
  ] as const) {
    agent.publish(`demo/${device}/status`, 'online', { qos: 1, retain: true }).catch(() => {});
    timers.push(
      setInterval(() => {
        seq++;
        sensors.forEach(([sensor, unit, base], i) => {
          const value = Math.round((base + Math.random()) * 100) / 100;
          const body = `{"id":"${device}:1:${seq}:${i}","device":"${device}","sensor":"${sensor}","value":${value}${unit ? `,"unit":"${unit}"` : ''},"ts":${Date.now()},"at":${Date.now()}}`;
          agent.publish(`demo/${device}/${sensor}`, body, { qos: 1 }).catch(() => {});
        });
      }, every),
    );
  }
  timers.push(
    setInterval(() => {
      const health = {
        agent: 'demo',
        queue: { count: 0, bytes: 0, oldestAgeMs: 0 },
        reconnects: 0,
        ports: [],
        counters: {},
      };
      agent.publish('demo/_agent/demo/health', JSON.stringify(health), { qos: 0 }).catch(() => {});
    }, 2000),
  );
  return {
    stop: async () => {
      for (const t of timers) clearInterval(t);
      await Promise.all([agent.end(), sub.end()]);
    },
  };
}

/** % of one core the broker used over `ms`. */
async function window(pid: number, ms: number): Promise<number> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(ms);
  return ((cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000)) * 100;
}

export default {
  area: 'page',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (CHROMIUM_SKIP !== undefined) {
      console.error(`page: skipped: ${CHROMIUM_SKIP}`);
      return [];
    }
    const WINDOW_MS = options.quick ? 5_000 : 30_000;
    const ROUNDS = options.quick ? 1 : 3;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-page-'));
    const broker = await startBroker(dir);
    const pid = broker.child.pid as number;
    const traffic = demoTraffic(broker.mqtt);
    const chrome = await launchChromium();
    const idle: number[] = [];
    const watched: number[] = [];
    try {
      await sleep(options.quick ? 2000 : 5000); // warm-up: JIT, first snapshot
      for (let r = 0; r < ROUNDS; r++) {
        idle.push(await window(pid, WINDOW_MS));
        const page = await chrome.context.newPage();
        await page.goto(`http://127.0.0.1:${broker.page}/`);
        await page.locator('[data-device="kitchen"] [data-channel="temp"] .v', { hasText: '°C' }).waitFor();
        await sleep(1000);
        watched.push(await window(pid, WINDOW_MS));
        await page.close();
        await sleep(1000);
      }
    } finally {
      await chrome.close();
      await traffic.stop();
      broker.child.kill('SIGTERM');
      await new Promise((r) => broker.child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const a = mean(idle);
    const b = mean(watched);
    const note = `${ROUNDS} x ${WINDOW_MS / 1000} s windows each, alternating; nobody watching: ${idle.map((x) => x.toFixed(2)).join(', ')}; page watching: ${watched.map((x) => x.toFixed(2)).join(', ')} (% of one core)`;
    return [
      costRow(
        'page: broker CPU at demo traffic, page watching vs nobody',
        '% of a core',
        b,
        a,
        'nobody watching',
        undefined,
        note,
      ),
      {
        name: 'page: broker CPU a watching page adds (target < 1)',
        unit: 'points of a core',
        ours: b - a,
        peer: null,
        peerName: '-',
        ratio: null,
      },
    ];
  },
} satisfies BenchArea;
