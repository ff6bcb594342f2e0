/**
 * `npm run bench:ab-client -- BASE_DIR [WHAT] [ROUNDS]`: the Node client's CPU per message, this
 * checkout against another (a copy of the tree at the commit before a change, with its
 * node_modules, e.g. `git archive BASE | tar -x -C DIR` plus `cp -a node_modules DIR`), in one run.
 * Each side is one long-lived child process (its JIT warm) running the client bundled from its
 * tree; the rounds alternate between them (ABBA) against one Mosquitto, and each round's figure is
 * the child's own CPU time (user + system, every thread: process.cpuUsage) divided by the
 * messages: unlike a rate, that does not depend on how the two cores are shared with the broker
 * and whatever else runs. The first 3 rounds are warm-up and left out. WHAT (default all):
 * - replay-dq: 20,000 QoS 1 messages of 64 bytes already in a DurableQueue (fsync never), a client
 *   with that queue as its outbox and a window of 1,000 (the agent's) connects; until the last
 *   one left the queue. The shell feeds the session from the queue: the agent's backlog replay.
 * - replay-mem: 20,000 QoS 1 publish() calls before the connection is up (the default
 *   MemoryOutbox), then connected; until the last PUBACK: the client bench's replay.
 * - qos1: 50,000 QoS 1 publish() calls on a connected client; until the last PUBACK.
 * - core-fed, core-own: the sans-IO session alone, no socket and no broker: 100,000 QoS 1 entries
 *   in a store replayed through a window of 1,000, a scripted server answering PUBACKs in batches
 *   of 64. core-fed: the store is outside the session (a DurableQueue's place; here an in-memory
 *   store, so only the session and its shell's loop are measured): a base session reads and acks
 *   it itself, this one is fed by the harness doing what the Node client does. core-own: the
 *   session's own MemoryOutbox. Each round is the best of 5 replays (about 50 ms each).
 * Printed: the median and the minimum of the rounds per side.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { hasMosquitto, startMosquitto } from '../test/helpers/mosquitto.ts';

const WHATS = ['replay-dq', 'replay-mem', 'qos1', 'core-fed', 'core-own'] as const;
type What = (typeof WHATS)[number];
const baseDir = process.argv[2];
const whatArg = process.argv[3] ?? 'all';
if (baseDir === undefined || (whatArg !== 'all' && !(WHATS as readonly string[]).includes(whatArg))) {
  console.error(`usage: npm run bench:ab-client -- BASE_DIR [${WHATS.join('|')}|all] [ROUNDS]`);
  process.exit(2);
}
if (!hasMosquitto()) {
  console.error('ab-client: /usr/sbin/mosquitto not installed');
  process.exit(2);
}
const whats: What[] = whatArg === 'all' ? [...WHATS] : [whatArg as What];
const rounds = Math.max(4, Number(process.argv[4] ?? 12));
const WARMUP = 3;

async function bundle(root: string): Promise<string> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ab-client-')), 'c.mjs');
  await build({
    entryPoints: [path.join(root, 'packages/client/src/index.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['ws', 'bufferutil', 'utf-8-validate'],
    logLevel: 'silent',
    conditions: ['mqtt-edge-source'],
  });
  return out;
}

/** The child: one command per stdin line, one JSON line per result on stdout. */
const CHILD = `
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
const C = await import(process.env.B);
const url = 'mqtt://127.0.0.1:' + process.env.PORT;
const payload = new Uint8Array(64).fill(0x61);
const cpu = () => { const u = process.cpuUsage(); return u.user + u.system; };
const connected = (c) => new Promise((res, rej) => { c.once('connect', res); c.once('close', (e) => rej(e?.error ?? new Error('closed'))); });
let round = 0;
/** Packet ids of the QoS 1/2 PUBLISHes in a chunk of client output (3.1.1). */
function publishIds(b, ids) {
  for (let i = 0; i < b.length; ) {
    const t = b[i];
    let len = 0, mul = 1, j = i + 1;
    for (;;) { const x = b[j++]; len += (x & 127) * mul; mul *= 128; if ((x & 128) === 0) break; }
    if ((t & 0xf0) === 0x30 && (t & 6) !== 0) { const k = j + 2 + ((b[j] << 8) | b[j + 1]); ids.push((b[k] << 8) | b[k + 1]); }
    i = j + len;
  }
}
function coreReplay(fed) {
  const N = 100000;
  const store = new C.MemoryOutbox({ maxCount: N + 1 });
  for (let i = 0; i < N; i++) store.putSync({ topic: 'ab/core', payload, qos: 1, retain: false });
  const feeds = typeof C.ClientSession.prototype.feedOutbox === 'function';
  // A base session reads and acks an outside store itself: give it one without putSync.
  const outside = { put: (m) => store.put(m), read: (a, n) => store.read(a, n), ack: (q) => store.ack(q), stats: () => store.stats(), close: () => store.close() };
  const s = new C.ClientSession({ clientId: 'ab', keepalive: 0, maxInflight: 1000, outbox: !fed ? store : feeds ? null : outside });
  const shell = fed && feeds;
  let now = 1;
  let done = 0;
  const ids = [];
  const serve = () => {
    if (shell) for (let n = s.outboxWant; n > 0; n = s.outboxWant) s.feedOutbox(store.read(s.outboxCursor, n), now);
    const out = s.takeOutput();
    if (out !== null) publishIds(out, ids);
    const ev = s.takeEvents();
    for (let i = 0; i < ev.length; i++)
      if (ev[i].type === 'published') { done++; if (shell) store.ack(ev[i].seq); }
  };
  globalThis.gc();
  const c0 = cpu();
  s.open(now);
  s.receive(Uint8Array.of(0x20, 2, 0, 0), now);
  serve();
  const acks = new Uint8Array(64 * 4);
  let head = 0;
  while (done < N) {
    let k = 0;
    for (; k < 64 && head < ids.length; k++, head++) {
      const id = ids[head];
      acks[k * 4] = 0x40; acks[k * 4 + 1] = 2; acks[k * 4 + 2] = id >> 8; acks[k * 4 + 3] = id & 255;
    }
    if (k === 0) throw new Error('stalled at ' + done);
    s.receive(acks.subarray(0, k * 4), ++now);
    serve();
  }
  const us = cpu() - c0;
  if (store.stats().count !== 0) throw new Error('store not empty');
  return us / N;
}
async function run(what) {
  if (what === 'core-fed' || what === 'core-own') {
    // Interference only ever adds CPU time: a round is the best of 5 replays.
    let best = Infinity;
    for (let i = 0; i < 5; i++) best = Math.min(best, coreReplay(what === 'core-fed'));
    return best;
  }
  const id = 'ab-' + process.pid + '-' + round++;
  if (what === 'replay-dq') {
    const N = 20000;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ab-client-q-'));
    const q = await C.DurableQueue.open(dir, { fsync: 'never' });
    const puts = [];
    for (let i = 0; i < N; i++) puts.push(q.put({ topic: 'ab/replay', payload, qos: 1, retain: false }));
    await Promise.all(puts);
    globalThis.gc();
    const c0 = cpu();
    const c = C.connect(url, { clientId: id, protocolVersion: 5, outbox: q, maxInflight: 1000, reconnect: false });
    let left = N;
    await new Promise((res) => c.on('settled', () => { if (--left === 0) res(); }));
    const us = cpu() - c0;
    await c.end();
    await q.close();
    fs.rmSync(dir, { recursive: true, force: true });
    return us / N;
  }
  if (what === 'replay-mem') {
    const N = 20000;
    globalThis.gc();
    const c0 = cpu();
    const c = C.connect(url, { clientId: id, protocolVersion: 4, reconnect: false });
    const all = new Array(N);
    for (let i = 0; i < N; i++) all[i] = c.publish('ab/replay', payload, { qos: 1 });
    await Promise.all(all);
    const us = cpu() - c0;
    await c.end();
    return us / N;
  }
  const N = 50000;
  const c = C.connect(url, { clientId: id, protocolVersion: 4, reconnect: false });
  await connected(c);
  globalThis.gc();
  const c0 = cpu();
  const all = new Array(N);
  for (let i = 0; i < N; i++) all[i] = c.publish('ab/q1', payload, { qos: 1 });
  await Promise.all(all);
  const us = cpu() - c0;
  await c.end();
  return us / N;
}
for await (const line of readline.createInterface({ input: process.stdin })) {
  const usPerMsg = await run(line.trim());
  process.stdout.write(JSON.stringify({ usPerMsg }) + '\\n');
}
`;

interface Child {
  ask(what: What): Promise<number>;
  stop(): void;
}

function startChild(bundlePath: string, port: number): Child {
  const c = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD], {
    env: { ...process.env, B: bundlePath, PORT: String(port), NODE_OPTIONS: '' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let buf = '';
  let waiting: ((v: number) => void) | null = null;
  let failed: ((e: Error) => void) | null = null;
  c.once('exit', (code) => failed?.(new Error(`child exited (${code})`)));
  c.stdout!.setEncoding('utf8');
  c.stdout!.on('data', (d: string) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiting;
      waiting = null;
      w?.((JSON.parse(line) as { usPerMsg: number }).usPerMsg);
      nl = buf.indexOf('\n');
    }
  });
  return {
    ask(what) {
      return new Promise((resolve, reject) => {
        waiting = resolve;
        failed = reject;
        c.stdin!.write(`${what}\n`);
      });
    },
    stop() {
      c.stdin!.end();
      c.kill();
    },
  };
}

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const broker = await startMosquitto({ config: 'log_dest none\nmax_queued_messages 100000' });
const sides: Record<'this' | 'base', Child> = {
  this: startChild(await bundle(ROOT), broker.port),
  base: startChild(await bundle(path.resolve(baseDir)), broker.port),
};
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const min = (a: number[]) => Math.min(...a);
try {
  for (const what of whats) {
    const res: Record<'this' | 'base', number[]> = { this: [], base: [] };
    for (let r = 0; r < rounds; r++)
      for (const k of r % 2 === 0 ? (['this', 'base'] as const) : (['base', 'this'] as const))
        res[k].push(await sides[k].ask(what));
    const a = res.this.slice(WARMUP);
    const b = res.base.slice(WARMUP);
    console.log(
      `${what}: this checkout ${med(a).toFixed(3)} us/msg, base ${med(b).toFixed(3)} us/msg (medians of ${a.length} rounds); base/this ${(med(b) / med(a)).toFixed(3)} (>= 0.95: within 5%); minima ${min(a).toFixed(3)} / ${min(b).toFixed(3)}, base/this ${(min(b) / min(a)).toFixed(3)}`,
    );
    console.log(
      `  this: ${a.map((x) => x.toFixed(3)).join(' ')}\n  base: ${b.map((x) => x.toFixed(3)).join(' ')}`,
    );
  }
} finally {
  sides.this.stop();
  sides.base.stop();
  await broker.stop();
}
process.exit(0);
