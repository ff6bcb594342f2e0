/**
 * The installed bins (issue 13): broker-lite and mqtt-edge-agent as a user gets them
 * (test/helpers/packed-install.ts: npm pack, one npm install --omit=dev of the tarballs), each
 * in its own process under plain node, against, in the same run:
 * - a bare Node server (an ES module file: `net.createServer` on 127.0.0.1 reading and
 *   discarding what it gets), the floor for any Node process that listens;
 * - Mosquitto (Debian's /usr/sbin/mosquitto, `user root`, one listener);
 * - the single-file bundles (`npm run bundle`);
 * - "before": the same bins on the TypeScript sources through tsx, which is what they ran
 *   before issue 13 (`node --conditions=mqtt-edge-source bin/...`: the shim registers tsx and
 *   imports src/cli.ts, as the old shim did).
 * RSS is VmRSS once it holds still (steadyRss: at least SETTLE_MS after the process listens,
 * past V8's heap shrink some 8-9 s after start-up), no forced GC (what `systemctl status` shows).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Broker } from '@mqtt-edge/broker-lite';
import { PacketWriter } from '@mqtt-edge/codec';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { buildBundles } from '../../scripts/bundle.ts';
import { freePort, hasMosquitto, MOSQUITTO_BIN } from '../../test/helpers/mosquitto.ts';
import { installPacked, ROOT, userEnv } from '../../test/helpers/packed-install.ts';
import { WatchedDevice } from '../../test/helpers/processes.ts';
import { type BenchArea, type BenchOptions, type BenchRow, costRow, stopProcess } from '../harness.ts';

const SRC_BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const SRC_AGENT_BIN = path.join(ROOT, 'packages/agent/bin/mqtt-edge-agent.js');

interface Server {
  name: string;
  /** Starts it listening on 127.0.0.1:port; resolves with the process once it is. */
  start(port: number): ChildProcess;
  mqtt: boolean;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** A process's idle RSS: the figure, and when it was read (s after `since`). */
interface SteadyRss {
  mb: number;
  afterS: number;
  /** False when it never held still for a whole window before `maxMs`. */
  steady: boolean;
}

const SAMPLE_MS = 500;
/** Samples (4 s) that must agree, within WINDOW_MB, for a figure. */
const WINDOW = 8;
const WINDOW_MB = 0.25;

/**
 * RSS once it holds still. Every process given is sampled in the same rounds, 500 ms apart, so
 * load on the machine falls on all of them alike. A process is read once the WINDOW samples
 * taken since `minMs` after its `since` (what V8 does after start-up: its heap shrinks ~8-9 s
 * after it, later on a loaded machine) lie within WINDOW_MB of each other: their median. A shrink
 * that falls inside that window only moves the window on. At `maxMs` the last WINDOW samples
 * give the figure, flagged not steady.
 */
async function steadyRss(
  procs: Array<{ pid: number; since: number }>,
  minMs: number,
  maxMs: number,
): Promise<SteadyRss[]> {
  const samples = procs.map(() => [] as number[]);
  const out: Array<SteadyRss | undefined> = procs.map(() => undefined);
  while (out.includes(undefined)) {
    const now = performance.now();
    for (const [i, p] of procs.entries()) {
      if (out[i] !== undefined || now - p.since < minMs) continue;
      const s = samples[i];
      s.push(rssMb(p.pid));
      if (s.length > WINDOW) s.shift();
      const full = s.length === WINDOW;
      const still = full && Math.max(...s) - Math.min(...s) <= WINDOW_MB;
      if (still || (full && now - p.since >= maxMs))
        out[i] = { mb: median(s), afterS: (now - p.since) / 1000, steady: still };
    }
    if (out.includes(undefined)) await sleep(SAMPLE_MS);
  }
  return out as SteadyRss[];
}

/** `steadyRss` of one process. */
async function steadyRssOf(pid: number, since: number, minMs: number, maxMs: number): Promise<SteadyRss> {
  return (await steadyRss([{ pid, since }], minMs, maxMs))[0];
}

/** How a figure was read, for a row's note. */
function readAt(name: string, r: SteadyRss): string {
  return `${name} read at ${r.afterS.toFixed(0)} s${r.steady ? '' : ' (never steady within ' + WINDOW_MB + ' MB)'}`;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** Milliseconds from now until 127.0.0.1:port accepts a connection (polled every 5 ms). */
async function untilListening(child: ChildProcess, port: number, name: string, t0: number): Promise<number> {
  const deadline = t0 + 30_000;
  for (;;) {
    if (await canConnect(port)) return performance.now() - t0;
    if (child.exitCode !== null || performance.now() > deadline) throw new Error(`${name} did not listen`);
    await sleep(5);
  }
}

const stop = stopProcess;

const CONNECT = new PacketWriter().encode(
  { type: 'connect', protocolVersion: 4, clientId: '', clean: true, keepalive: 0 },
  4,
);

/** `n` idle connections, each having sent CONNECT (and, to an MQTT server, got its CONNACK). */
async function openIdle(port: number, n: number, mqtt: boolean): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < n; i += 100) {
    const batch = Array.from(
      { length: Math.min(100, n - i) },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1');
          s.once('error', reject);
          s.once('connect', () => {
            s.write(CONNECT);
            if (!mqtt) resolve(s);
          });
          if (mqtt) s.once('data', () => resolve(s));
        }),
    );
    sockets.push(...(await Promise.all(batch)));
  }
  return sockets;
}

function conf(dir: string, name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

export default {
  area: 'install',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const quick = options.quick;
    // From when a process listens (or gets its connections, or its first reading): the earliest
    // an RSS sample counts, and the latest a figure is read at (steadyRss).
    const SETTLE_MS = quick ? 3000 : 12_000;
    const MAX_SETTLE_MS = quick ? 8000 : 40_000;
    const LOADED_MS = quick ? 2000 : 5000;
    const CONNECTIONS = quick ? 200 : 1000;
    const STARTS = quick ? 2 : 5;
    const rows: BenchRow[] = [];
    // Every process this area starts, so that a failure part-way leaves none running.
    const spawned: ChildProcess[] = [];
    const track = (c: ChildProcess): ChildProcess => {
      spawned.push(c);
      return c;
    };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-install-'));
    const inst = await installPacked();
    const bundles = await buildBundles(path.join(dir, 'bundles'));
    const env = userEnv();
    const bare = conf(
      dir,
      'bare-server.mjs',
      "import net from 'node:net';\nnet.createServer((s) => s.on('data', () => {})).listen(Number(process.argv[2]), '127.0.0.1');\n",
    );
    const brokerConf = (port: number) =>
      conf(dir, `broker-${port}.conf`, `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
    const node = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
      spawn(process.execPath, args, { cwd: dir, env: { ...env, ...extraEnv }, stdio: 'ignore' });
    const servers: Server[] = [
      {
        name: 'broker-lite (installed)',
        mqtt: true,
        start: (port) =>
          spawn(inst.bin('broker-lite'), ['-c', brokerConf(port)], { cwd: dir, env, stdio: 'ignore' }),
      },
      { name: 'bare node', mqtt: false, start: (port) => node([bare, String(port)]) },
      {
        name: 'bare node (-e, CommonJS)',
        mqtt: false,
        start: (port) =>
          node([
            '-e',
            `require('net').createServer((s) => s.on('data', () => {})).listen(${port}, '127.0.0.1')`,
          ]),
      },
      {
        name: 'broker-lite (bundle)',
        mqtt: true,
        start: (port) => node([bundles.broker, '-c', brokerConf(port)]),
      },
      {
        name: 'broker-lite (tsx, before)',
        mqtt: true,
        start: (port) =>
          node([SRC_BROKER_BIN, '-c', brokerConf(port)], { NODE_OPTIONS: '--conditions=mqtt-edge-source' }),
      },
    ];
    if (hasMosquitto()) {
      servers.push({
        name: 'mosquitto',
        mqtt: true,
        start: (port) =>
          spawn(
            MOSQUITTO_BIN,
            [
              '-c',
              conf(dir, `mosq-${port}.conf`, `user root\nlistener ${port} 127.0.0.1\nallow_anonymous true\n`),
            ],
            {
              cwd: dir,
              stdio: 'ignore',
            },
          ),
      });
    }
    const has = (name: string) => servers.some((s) => s.name === name);
    const mosquittoNote = hasMosquitto() ? undefined : 'mosquitto not installed (/usr/sbin/mosquitto)';

    try {
      // ---- idle RSS, all side by side --------------------------------------------------
      const idle = new Map<string, number>();
      const idleAt = new Map<string, SteadyRss>();
      const running: Array<{ s: Server; child: ChildProcess; port: number; since: number }> = [];
      for (const s of servers) {
        const port = await freePort();
        const child = track(s.start(port));
        await untilListening(child, port, s.name, performance.now());
        running.push({ s, child, port, since: performance.now() });
      }
      const idleRss = await steadyRss(
        running.map((r) => ({ pid: r.child.pid!, since: r.since })),
        SETTLE_MS,
        MAX_SETTLE_MS,
      );
      for (const [i, r] of running.entries()) {
        idle.set(r.s.name, idleRss[i].mb);
        idleAt.set(r.s.name, idleRss[i]);
      }

      // ---- 1,000 idle connections, one server at a time --------------------------------
      const loaded = new Map<string, number>();
      for (const r of running) {
        if (r.s.name.includes('CommonJS') || r.s.name.includes('tsx')) continue;
        const sockets = await openIdle(r.port, CONNECTIONS, r.s.mqtt);
        const at = await steadyRssOf(r.child.pid!, performance.now(), LOADED_MS, MAX_SETTLE_MS);
        loaded.set(r.s.name, at.mb);
        for (const s of sockets) s.destroy();
      }
      await Promise.all(running.map((r) => stop(r.child)));

      const lite = idle.get('broker-lite (installed)')!;
      const bareIdle = idle.get('bare node')!;
      const mosq = idle.get('mosquitto') ?? null;
      rows.push(
        costRow(
          'install:broker-lite idle RSS',
          'MB',
          lite,
          bareIdle,
          'bare node server',
          0.91,
          `within 10% of a bare Node server is the target; bare node run as \`node -e\` (CommonJS, no ES module loader): ${idle.get('bare node (-e, CommonJS)')!.toFixed(1)} MB; ` +
            `${readAt('broker-lite', idleAt.get('broker-lite (installed)')!)}, ${readAt('bare node', idleAt.get('bare node')!)} after listening`,
        ),
        costRow('install:broker-lite idle RSS', 'MB', lite, mosq, 'mosquitto', undefined, mosquittoNote),
        costRow(
          'install:broker-lite idle RSS',
          'MB',
          lite,
          idle.get('broker-lite (tsx, before)')!,
          'tsx bin (before)',
        ),
        costRow(
          'install:broker-lite idle RSS, single-file bundle',
          'MB',
          idle.get('broker-lite (bundle)')!,
          bareIdle,
          'bare node server',
        ),
      );
      const perConn = (name: string) =>
        (((loaded.get(name) ?? Number.NaN) - (idle.get(name) ?? Number.NaN)) * 1024) / CONNECTIONS;
      rows.push(
        costRow(
          `install:broker-lite RSS, ${CONNECTIONS.toLocaleString('en-US')} idle connections`,
          'MB',
          loaded.get('broker-lite (installed)')!,
          loaded.get('bare node')!,
          'bare node server',
          undefined,
          `per connection: broker-lite ${perConn('broker-lite (installed)').toFixed(1)} KB, bare node ${perConn('bare node').toFixed(1)} KB` +
            (has('mosquitto') ? `, mosquitto ${perConn('mosquitto').toFixed(1)} KB` : ''),
        ),
        costRow(
          `install:broker-lite RSS, ${CONNECTIONS.toLocaleString('en-US')} idle connections`,
          'MB',
          loaded.get('broker-lite (installed)')!,
          loaded.get('mosquitto') ?? null,
          'mosquitto',
          undefined,
          mosquittoNote,
        ),
      );

      // ---- start time: spawn to listening, one at a time ------------------------------
      const startMs = new Map<string, number>();
      for (const s of servers) {
        if (s.name.includes('bare')) continue;
        const times: number[] = [];
        for (let i = 0; i < STARTS; i++) {
          const port = await freePort();
          const t0 = performance.now();
          const child = track(s.start(port));
          times.push(await untilListening(child, port, s.name, t0));
          await stop(child);
        }
        startMs.set(s.name, median(times));
      }
      const note = `spawn of the command to its port accepting a TCP connection (polled every 5 ms), median of ${STARTS}`;
      rows.push(
        costRow(
          'install:broker-lite start',
          'ms',
          startMs.get('broker-lite (installed)')!,
          startMs.get('mosquitto') ?? null,
          'mosquitto',
          undefined,
          note,
        ),
        costRow(
          'install:broker-lite start',
          'ms',
          startMs.get('broker-lite (installed)')!,
          startMs.get('broker-lite (tsx, before)')!,
          'tsx bin (before)',
          undefined,
          note,
        ),
        costRow(
          'install:broker-lite start, single-file bundle',
          'ms',
          startMs.get('broker-lite (bundle)')!,
          startMs.get('broker-lite (installed)')!,
          'installed bin',
          undefined,
          note,
        ),
      );

      // ---- the agent with 3 devices on ptys --------------------------------------------
      if (!hasSocat()) {
        rows.push(
          costRow(
            'install:agent RSS, 3 devices',
            'MB',
            Number.NaN,
            null,
            '-',
            undefined,
            'socat missing: no ptys',
          ),
        );
      } else {
        const broker = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }] });
        await broker.listen();
        const brokerPort = broker.addresses[0].port;
        const agents = [
          { name: 'installed', cmd: inst.bin('mqtt-edge-agent'), args: [] as string[], extra: {} },
          { name: 'bundle', cmd: process.execPath, args: [bundles.agent], extra: {} },
          {
            name: 'tsx, before',
            cmd: process.execPath,
            args: [SRC_AGENT_BIN],
            extra: { NODE_OPTIONS: '--conditions=mqtt-edge-source' },
          },
        ];
        const results = new Map<string, { rss: SteadyRss; firstMs: number }>();
        try {
          for (const a of agents) {
            const firsts: number[] = [];
            let rss: SteadyRss = { mb: Number.NaN, afterS: Number.NaN, steady: false };
            for (let i = 0; i < (quick ? 1 : 3); i++) {
              const run = path.join(dir, `agent-${a.name.replace(/\W/g, '')}-${i}`);
              mkdirSync(run);
              const devices = await Promise.all(
                ['kitchen', 'greenhouse', 'boiler'].map((id) =>
                  WatchedDevice.create(path.join(run, `tty-${id}`), { deviceId: id, intervalMs: 200 }),
                ),
              );
              for (const d of devices) d.start();
              const yaml = conf(
                run,
                'agent.yaml',
                `agent:\n  id: bench\n  stateDir: ${path.join(run, 'state')}\n  healthInterval: 0\nserial:\n` +
                  devices.map((d) => `  - path: ${d.agentPath}\n    device: ${d.id}\n`).join('') +
                  `mqtt:\n  url: mqtt://127.0.0.1:${brokerPort}\ntopics:\n  prefix: bench\n`,
              );
              const t0 = performance.now();
              const child = track(
                spawn(a.cmd, [...a.args, '-c', yaml], {
                  cwd: run,
                  env: { ...env, ...a.extra },
                  stdio: ['ignore', 'ignore', 'pipe'],
                }),
              );
              let log = '';
              child.stderr!.on('data', (d: Buffer) => {
                log = (log + d.toString()).slice(-4000);
              });
              // The agent ACKs a reading only once it is durably in its queue: the first ACK a
              // device receives is the first reading stored.
              const acked = (): boolean => devices.some((d) => d.acksAt.length > 0);
              try {
                const deadline = Date.now() + 30_000;
                while (!acked() && Date.now() < deadline && child.exitCode === null) await sleep(2);
                if (!acked()) throw new Error(`agent (${a.name}) stored no reading in 30 s:\n${log}`);
                const first = Math.min(...devices.filter((d) => d.acksAt.length > 0).map((d) => d.acksAt[0]));
                firsts.push(first - (performance.timeOrigin + t0));
                // Devices keep sending: a figure that does not hold still is taken at 20 s.
                if (i === 0)
                  rss = await steadyRssOf(
                    child.pid!,
                    first - performance.timeOrigin,
                    SETTLE_MS,
                    SETTLE_MS + 8000,
                  );
              } finally {
                // Also on a failure: an agent left running would outlive the bench.
                await stop(child);
                for (const d of devices) {
                  await d.stop();
                  await d.sim.transport.close();
                }
              }
            }
            results.set(a.name, { rss, firstMs: median(firsts) });
          }
        } finally {
          const closing = broker.close();
          for (const c of broker.connections) c.socket.destroy();
          await closing;
        }
        const r = (n: string) => results.get(n)!;
        const startNote = `spawn to the first ACK a device gets (the agent ACKs once the reading is on disk), 3 devices sending every 200 ms, median of ${quick ? 1 : 3}`;
        rows.push(
          costRow(
            'install:agent RSS, 3 devices',
            'MB',
            r('installed').rss.mb,
            r('tsx, before').rss.mb,
            'tsx bin (before)',
            undefined,
            `${readAt('installed', r('installed').rss)}, ${readAt('tsx', r('tsx, before').rss)} after the first reading stored`,
          ),
          costRow(
            'install:agent RSS, 3 devices, single-file bundle',
            'MB',
            r('bundle').rss.mb,
            r('installed').rss.mb,
            'installed bin',
          ),
          costRow(
            'install:agent start to first reading stored',
            'ms',
            r('installed').firstMs,
            r('tsx, before').firstMs,
            'tsx bin (before)',
            undefined,
            startNote,
          ),
          costRow(
            'install:agent start to first reading stored, single-file bundle',
            'ms',
            r('bundle').firstMs,
            r('installed').firstMs,
            'installed bin',
            undefined,
            startNote,
          ),
        );
      }
      rows.push(
        costRow(
          'install:npm install of the 5 tarballs',
          's',
          inst.timings.installS,
          null,
          '-',
          undefined,
          `npm pack ${inst.timings.packS.toFixed(1)} s; npm ci's cache warm`,
        ),
      );
    } finally {
      await Promise.all(spawned.map(stop));
      inst.remove();
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
} satisfies BenchArea;
