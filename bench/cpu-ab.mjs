/**
 * `npm run build && node bench/cpu-ab.mjs BASE_CHECKOUT [N] [ROUNDS]`: broker-lite's CPU time per
 * message, this checkout against another (e.g. `git archive COMMIT | tar -x -C /tmp/base`, with a
 * node_modules whose @mqtt-edge/codec, client and log resolve to built packages), each bundled as
 * bench/areas/broker.ts bundles them, in alternating rounds. The figure is the broker process's
 * utime + stime (/proc/PID/stat) over a fixed workload (one publisher, one subscriber on
 * `ab/#`, N messages of 64 bytes at QoS 0 then QoS 1), so other processes on a shared machine
 * move it far less than they move a throughput; the median of ROUNDS per side. Issue 14 used it to
 * hold its counters to the 2% budget where `npm run bench -- --only broker` varied by 20%.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PacketParser, PacketWriter } from '@mqtt-edge/codec';
import { build } from 'esbuild';

async function bundle(root, out) {
  await build({
    entryPoints: [path.join(root, 'packages/broker-lite/src/index.ts')],
    nodePaths: [path.join(root, 'node_modules')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['bufferutil', 'utf-8-validate'],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'silent',
  });
  return out;
}
const SCRIPT = `const { Broker } = await import(process.env.B); const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }] }); await b.listen(); console.log('PORT ' + b.addresses[0].port); process.on('SIGTERM', async () => { await b.close(); process.exit(0); });`;
function start(bundlePath) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], {
      env: { ...process.env, B: bundlePath, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve({ c, port: Number(m[1]) });
    });
  });
}
const cpu = (pid) => {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const w = new PacketWriter(1 << 16);
function client(port, id) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.setNoDelay(true);
      s.write(
        Buffer.from(
          w.encode({ type: 'connect', protocolVersion: 4, clientId: id, clean: true, keepalive: 0 }, 4),
        ),
      );
    });
    const p = new PacketParser({ protocolVersion: 4 });
    const c = { s, on: () => {} };
    s.on('data', (d) =>
      p.push(d, (pk) => {
        if (pk.type === 'connack') resolve(c);
        else c.on(pk);
      }),
    );
  });
}
async function run(port, qos, N) {
  const sub = await client(port, 'sub');
  await new Promise((r) => {
    sub.on = (pk) => {
      if (pk.type === 'suback') r();
    };
    sub.s.write(
      Buffer.from(
        w.encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'ab/#', qos }] }, 4),
      ),
    );
  });
  const pub = await client(port, 'pub');
  let got = 0;
  const done = new Promise((r) => {
    sub.on = (pk) => {
      if (pk.type === 'publish') {
        got++;
        if (qos > 0) sub.s.write(Buffer.from(w.encode({ type: 'puback', packetId: pk.packetId }, 4)));
        if (got === N) r();
      }
    };
  });
  const payload = new Uint8Array(64);
  const BATCH = 500;
  let acked = 0;
  pub.on = (pk) => {
    if (pk.type === 'puback') acked++;
  };
  for (let i = 0; i < N; i += BATCH) {
    const parts = [];
    for (let j = 0; j < BATCH; j++)
      parts.push(
        Buffer.from(
          w.encode(
            {
              type: 'publish',
              topic: 'ab/x',
              payload,
              qos,
              retain: false,
              dup: false,
              packetId: qos ? ((i + j) % 60000) + 1 : undefined,
            },
            4,
          ),
        ),
      );
    if (!pub.s.write(Buffer.concat(parts))) await new Promise((r) => pub.s.once('drain', r));
    if (qos > 0) while (acked < i - 20000) await new Promise((r) => setImmediate(r));
  }
  await done;
  pub.s.destroy();
  sub.s.destroy();
}
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
if (process.argv[2] === undefined) {
  console.error('usage: node bench/cpu-ab.mjs BASE_CHECKOUT [N] [ROUNDS]');
  process.exit(2);
}
const tmp = fs.mkdtempSync('/tmp/cpu-ab-');
const ours = await bundle(ROOT, path.join(tmp, 'ours.mjs'));
const base = await bundle(path.resolve(process.argv[2]), path.join(tmp, 'base.mjs'));
const N = Number(process.argv[3] ?? 1_500_000);
const res = { ours: { 0: [], 1: [] }, base: { 0: [], 1: [] } };
for (let round = 0; round < Number(process.argv[4] ?? 7); round++) {
  for (const [name, b] of round % 2
    ? [
        ['base', base],
        ['ours', ours],
      ]
    : [
        ['ours', ours],
        ['base', base],
      ]) {
    const { c, port } = await start(b);
    await run(port, 0, 50000); // warm-up
    for (const qos of [0, 1]) {
      const c0 = cpu(c.pid);
      await run(port, qos, N);
      res[name][qos].push(((cpu(c.pid) - c0) / N) * 1e6);
    }
    c.kill('SIGTERM');
    await new Promise((r) => c.once('exit', r));
  }
}
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const qos of [0, 1])
  console.log(
    `QoS ${qos} fan-in, broker CPU µs/msg: ours ${res.ours[qos].map((x) => x.toFixed(2)).join(' ')} (median ${med(res.ours[qos]).toFixed(3)}); base ${res.base[qos].map((x) => x.toFixed(2)).join(' ')} (median ${med(res.base[qos]).toFixed(3)}); ours/base ${(med(res.ours[qos]) / med(res.base[qos])).toFixed(3)}`,
  );
fs.rmSync(tmp, { recursive: true, force: true });
