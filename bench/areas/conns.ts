/**
 * Issue 18.2: what an idle connection costs in RSS, at 5,000 and 20,000 connections, over TCP
 * and over WebSocket, and whether RSS comes back once they close. Side by side in each
 * scenario, all fresh processes:
 * - a bare Node server (`net.createServer` reading and discarding, an ES module): Node's own
 *   cost of a socket, the floor of any Node server (it answers nothing, WebSocket clients
 *   included: their handshake is its bytes to read);
 * - broker-lite's bin on `dist/` under plain node, as installed, one MQTT and one websockets
 *   listener;
 * - Mosquitto (its websockets listener bound to `lo`: given 127.0.0.1, Debian's libwebsockets
 *   binds every address).
 * Each client sends an MQTT 3.1.1 CONNECT (keepalive 0; on WebSocket after the upgrade, in one
 * masked binary frame) and waits for the CONNACK; to the bare server it only writes. RSS is
 * VmRSS once it holds still, after a full GC in both Node servers (a preloaded hook: without
 * it, each figure carries whatever garbage V8 had not collected yet, 2-10 KB per connection
 * from one run to the next; V8's memory reducer collects it by itself some 10-30 s after the
 * activity stops), read before the clients connect, with them connected, and after they closed. The bench raises its own and its
 * children's open-file limit with prlimit (root); where that fails, the 20,000 rows are skipped.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, hasMosquitto, MOSQUITTO_BIN } from '../../test/helpers/mosquitto.ts';
import { ROOT } from '../../test/helpers/packed-install.ts';
import {
  type BenchArea,
  type BenchOptions,
  type BenchRow,
  costRow,
  onLines,
  stopProcess,
  untilListening,
} from '../harness.ts';

const BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const BROKER_UNIT = path.join(ROOT, 'packages/broker-lite/broker-lite.service');

/**
 * The environment the installed systemd unit gives the broker (its `Environment=` lines), so
 * the bench runs it as users do.
 */
function unitEnvironment(unit = readFileSync(BROKER_UNIT, 'utf8')): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of unit.split('\n')) {
    const m = /^Environment=(.*)$/.exec(line.trim());
    if (m === null) continue;
    for (const a of m[1].split(/\s+/)) {
      const eq = a.indexOf('=');
      if (eq > 0) env[a.slice(0, eq)] = a.slice(eq + 1);
    }
  }
  return env;
}
/** Target: broker-lite at most this many bytes per idle connection above the bare server. */
const OVER_BARE = 2048;
/** Target: RSS after the connections closed at most this times the idle figure. */
const AFTER_CLOSE = 1.1;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * RSS of each process once it holds still: the median of the last 8 samples (500 ms apart,
 * all processes in the same rounds) once they lie within 0.25 MB, from `minMs` on; at `maxMs`
 * the last 8 samples, flagged not steady.
 */
async function steadyRss(
  pids: number[],
  minMs: number,
  maxMs: number,
): Promise<Array<{ mb: number; steady: boolean; afterS: number }>> {
  const t0 = performance.now();
  const samples = pids.map(() => [] as number[]);
  const out: Array<{ mb: number; steady: boolean; afterS: number } | undefined> = pids.map(() => undefined);
  await sleep(Math.max(0, minMs - 4000));
  while (out.includes(undefined)) {
    const now = performance.now() - t0;
    for (const [i, pid] of pids.entries()) {
      if (out[i] !== undefined) continue;
      const s = samples[i];
      s.push(rssMb(pid));
      if (s.length > 8) s.shift();
      const full = s.length === 8;
      const still = full && Math.max(...s) - Math.min(...s) <= 0.25;
      if ((still && now >= minMs) || (full && now >= maxMs))
        out[i] = { mb: median(s), steady: still, afterS: now / 1000 };
    }
    if (out.includes(undefined)) await sleep(500);
  }
  return out as Array<{ mb: number; steady: boolean; afterS: number }>;
}

/** The open-file limit of this process (and so of the children it starts from now on), raised. */
function raiseFdLimit(want: number): number {
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { stdio: 'ignore' });
  } catch {
    // not root, or no prlimit: what there is
  }
  const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m ? Number(m[1]) : 1024;
}

/**
 * The clients of one server, in a process of their own (each process has its own open-file
 * limit): `node -e HOLDER PORT TRANSPORT N ANSWERED`. Prints READY once all are connected (and,
 * ANSWERED, have their CONNACK); on `close` from stdin ends them all and prints CLOSED.
 * Each sends an MQTT 3.1.1 CONNECT (keepalive 0); over WebSocket after the upgrade, in one
 * masked binary frame. 100 at a time: Mosquitto listens with a backlog of 100.
 */
const HOLDER = `
const [port, transport, n, answered] = process.argv.slice(-4);
const N = Number(n), ws = transport === 'ws', wait = answered === '1';
const CONNECT = Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 0, 0, 0]);
const mask = [0x12, 0x34, 0x56, 0x78];
const FRAME = Buffer.alloc(6 + CONNECT.length);
FRAME[0] = 0x82; FRAME[1] = 0x80 | CONNECT.length;
for (let i = 0; i < 4; i++) FRAME[2 + i] = mask[i];
for (let i = 0; i < CONNECT.length; i++) FRAME[6 + i] = CONNECT[i] ^ mask[i & 3];
const UPGRADE = 'GET /mqtt HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Protocol: mqtt\\r\\n\\r\\n';
const CONNACK_FRAME = Buffer.from([0x82, 4, 0x20, 2, 0, 0]);
const one = () => new Promise((resolve, reject) => {
  const s = net.connect(Number(port), '127.0.0.1');
  const timer = setTimeout(() => reject(new Error('no CONNACK in 30 s')), 30000);
  const done = () => { clearTimeout(timer); s.removeAllListeners('data'); s.on('data', () => {}); resolve(s); };
  s.once('error', (e) => { clearTimeout(timer); reject(e); });
  s.once('connect', () => {
    s.write(ws ? UPGRADE : CONNECT);
    if (!wait) { if (ws) s.write(FRAME); done(); }
  });
  if (!wait) return;
  let got = Buffer.alloc(0), upgraded = !ws;
  s.on('data', (d) => {
    got = Buffer.concat([got, d]);
    if (!upgraded) {
      const end = got.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      if (!got.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) return reject(new Error('upgrade refused: ' + got.toString('latin1', 0, end)));
      upgraded = true; got = got.subarray(end + 4); s.write(FRAME);
    }
    if (ws ? got.indexOf(CONNACK_FRAME) >= 0 : got.length >= 4) done();
  });
});
const held = [];
try {
  for (let i = 0; i < N; i += 100) held.push(...(await Promise.all(Array.from({ length: Math.min(100, N - i) }, one))));
} catch (e) { console.log('FAILED ' + (e && e.message)); process.exit(1); }
console.log('READY');
process.stdin.on('data', async () => {
  await Promise.all(held.map((s) => new Promise((r) => { s.once('close', r); s.end(); setTimeout(() => s.destroy(), 3000).unref(); })));
  console.log('CLOSED');
  process.exit(0);
});
`;

type Transport = 'tcp' | 'ws';

interface Holder {
  child: ChildProcess;
  next(): Promise<string>;
}

function holder(port: number, transport: Transport, n: number, answered: boolean): Holder {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', HOLDER, '--', String(port), transport, String(n), answered ? '1' : '0'],
    { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  const lines: string[] = [];
  let waiting: ((l: string) => void) | null = null;
  onLines(child, (l) => {
    if (waiting !== null) {
      const w = waiting;
      waiting = null;
      w(l);
    } else lines.push(l);
  });
  child.once('exit', (code) => waiting?.(`EXIT ${code}`));
  return {
    child,
    next: () =>
      new Promise((resolve, reject) => {
        const got = (l: string): void =>
          l === 'READY' || l === 'CLOSED' ? resolve(l) : reject(new Error(`clients of port ${port}: ${l}`));
        const l = lines.shift();
        if (l !== undefined) got(l);
        else waiting = got;
      }),
  };
}

interface Server {
  name: string;
  child: ChildProcess;
  ports: Record<Transport, number>;
  answered: boolean;
}

async function startServers(dir: string): Promise<Server[]> {
  const env = { ...process.env, NODE_OPTIONS: '' };
  const servers: Server[] = [];
  // Both Node servers load the same hook: `gc` on stdin runs a full GC and answers GCDONE.
  const hook = path.join(dir, 'gc-hook.mjs');
  writeFileSync(
    hook,
    "process.stdin.on('data', (d) => { if (String(d).includes('gc')) { globalThis.gc(); globalThis.gc(); process.stdout.write('GCDONE\\n'); } });\n",
  );
  const nodeArgs = ['--expose-gc', '--import', hook];
  const bare = path.join(dir, 'bare-server.mjs');
  writeFileSync(
    bare,
    "import net from 'node:net';\nfor (const p of process.argv.slice(2)) net.createServer((s) => s.on('data', () => {})).listen(Number(p), '127.0.0.1');\n",
  );
  const bp = { tcp: await freePort(), ws: await freePort() };
  const bareChild = spawn(process.execPath, [...nodeArgs, bare, String(bp.tcp), String(bp.ws)], {
    env,
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  servers.push({ name: 'bare node server', child: bareChild, ports: bp, answered: false });

  const lp = { tcp: await freePort(), ws: await freePort() };
  const conf = path.join(dir, 'broker.conf');
  writeFileSync(
    conf,
    `allow_anonymous true\nlistener ${lp.tcp} 127.0.0.1\nlistener ${lp.ws} 127.0.0.1\nprotocol websockets\n`,
  );
  // Plain node on dist/, as installed (the bench builds first), in the unit's environment.
  const lite = spawn(process.execPath, [...nodeArgs, BROKER_BIN, '-c', conf], {
    env: { ...env, ...unitEnvironment() },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  servers.push({ name: 'broker-lite', child: lite, ports: lp, answered: true });

  if (hasMosquitto()) {
    const mp = { tcp: await freePort(), ws: await freePort() };
    const mconf = path.join(dir, 'mosquitto.conf');
    // `lo`, not 127.0.0.1: Debian's libwebsockets takes the address as an interface name and,
    // finding none of that name, would bind every address.
    writeFileSync(
      mconf,
      `user root\nallow_anonymous true\nlistener ${mp.tcp} 127.0.0.1\nlistener ${mp.ws} lo\nprotocol websockets\n`,
    );
    const m = spawn(MOSQUITTO_BIN, ['-c', mconf], { stdio: 'ignore' });
    servers.push({ name: 'mosquitto', child: m, ports: mp, answered: true });
  }
  for (const s of servers)
    for (const t of ['tcp', 'ws'] as const) await untilListening(s.ports[t], s.child, s.name);
  return servers;
}

/** A full GC in each Node server (those started with the hook); Mosquitto has none to run. */
async function collect(servers: Server[]): Promise<void> {
  await Promise.all(
    servers.map((s) => {
      const out = s.child.stdout;
      if (out === null || s.child.stdin === null) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const onData = (d: Buffer): void => {
          if (!d.toString().includes('GCDONE')) return;
          out.off('data', onData);
          resolve();
        };
        out.on('data', onData);
        s.child.stdin?.write('gc\n');
      });
    }),
  );
}

interface Figures {
  idle: number;
  loaded: number;
  after: number;
  perConn: number;
  steady: string;
}

export default {
  area: 'conns',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const quick = options.quick;
    const SETTLE_MS = quick ? 3000 : 12_000;
    const MAX_SETTLE_MS = quick ? 8000 : 40_000;
    // After the close, V8's memory reducer gives back the young generation it grew and the old
    // space's free pages once the process has been quiet for a while (15-45 s here): a broker
    // left alone after a burst of clients gets there by itself, the figure is read after it.
    const AFTER_MIN_MS = quick ? 8000 : 60_000;
    const AFTER_MAX_MS = quick ? 12_000 : 100_000;
    const wanted = process.env.BENCH_CONNS?.split(',').map(Number) ?? (quick ? [1000, 2000] : [5000, 20_000]);
    // Each server holds one side of its connections, its clients' process the other.
    const limit = raiseFdLimit(Math.max(...wanted) + 1000);
    // Room for what a server has open anyway (listeners, stdio, epoll, its log...).
    const counts = wanted.map((n) => Math.min(n, limit - 100));
    const rows: BenchRow[] = [];
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-conns-'));
    try {
      for (const [ci, n] of counts.entries()) {
        for (const transport of ['tcp', 'ws'] as const) {
          const servers = await startServers(dir);
          const figures = new Map<string, Figures>();
          try {
            const pids = servers.map((s) => s.child.pid as number);
            await sleep(SETTLE_MS);
            await collect(servers);
            const idle = await steadyRss(pids, 4000, MAX_SETTLE_MS);
            const held: Holder[] = [];
            try {
              for (const s of servers) {
                const h = holder(s.ports[transport], transport, n, s.answered);
                held.push(h);
                await h.next();
              }
            } catch (err) {
              for (const h of held) h.child.kill();
              throw err;
            }
            await sleep(1000);
            await collect(servers);
            const loaded = await steadyRss(pids, 4000, MAX_SETTLE_MS);
            for (const h of held) {
              h.child.stdin?.write('close\n');
              await h.next();
            }
            await sleep(1000);
            await collect(servers);
            const after = await steadyRss(pids, AFTER_MIN_MS, AFTER_MAX_MS);
            for (const [i, s] of servers.entries())
              figures.set(s.name, {
                idle: idle[i].mb,
                loaded: loaded[i].mb,
                after: after[i].mb,
                perConn: ((loaded[i].mb - idle[i].mb) * 2 ** 20) / n,
                steady: [idle[i], loaded[i], after[i]]
                  .map((r) => `${r.afterS.toFixed(0)}s${r.steady ? '' : '!'}`)
                  .join('/'),
              });
          } finally {
            await Promise.all(servers.map((s) => stopProcess(s.child)));
          }
          if (process.env.BENCH_VERBOSE)
            console.error(`  conns ${transport} ${n}: ${JSON.stringify(Object.fromEntries(figures))}`);
          const lite = figures.get('broker-lite') as Figures;
          const bare = figures.get('bare node server') as Figures;
          const mosq = figures.get('mosquitto');
          const label = `${n.toLocaleString('en-US')} ${transport === 'tcp' ? 'TCP' : 'WebSocket'}`;
          const capped =
            n < wanted[ci]
              ? `; ${n} in place of ${wanted[ci]}: the open-file limit is ${limit} and could not be raised (prlimit needs CAP_SYS_RESOURCE)`
              : '';
          const fmt = (f: Figures) =>
            `idle ${f.idle.toFixed(1)} MB, with them ${f.loaded.toFixed(1)} MB, after ${f.after.toFixed(1)} MB (read at ${f.steady})`;
          const note = `broker-lite ${fmt(lite)}; bare ${fmt(bare)}${mosq ? `; mosquitto ${fmt(mosq)}` : '; mosquitto not installed'}${capped}`;
          rows.push(
            costRow(
              `conns:rss per idle connection, ${label}`,
              'bytes/conn',
              lite.perConn,
              bare.perConn,
              'bare node server',
              undefined,
              note,
            ),
            costRow(
              `conns:rss per idle connection, ${label}`,
              'bytes/conn',
              lite.perConn,
              mosq?.perConn ?? null,
              'mosquitto',
            ),
            costRow(
              `conns:rss per idle connection above bare node, ${label}`,
              'bytes/conn',
              lite.perConn - bare.perConn,
              OVER_BARE,
              'target',
              1,
            ),
            costRow(
              `conns:rss kept after they closed, above bare node's, ${label}`,
              'bytes/conn',
              ((lite.after - lite.idle - (bare.after - bare.idle)) * 2 ** 20) / n,
              null,
              '-',
              undefined,
              "what broker-lite keeps beyond what Node itself keeps after the same connections closed (the bare server's RSS does not come back either: freed memory stays in glibc's heap, which Node never trims)",
            ),
            costRow(
              `conns:rss after they closed / idle rss, ${label}`,
              'ratio',
              lite.after / lite.idle,
              AFTER_CLOSE,
              'target',
              1,
              mosq
                ? `mosquitto ${(mosq.after / mosq.idle).toFixed(3)}, bare node ${(bare.after / bare.idle).toFixed(3)}`
                : undefined,
            ),
          );
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
} satisfies BenchArea;
