/**
 * `npm run build && node --import tsx bench/cpu-ab.ts BASE_CHECKOUT [N] [ROUNDS]`: broker-lite's CPU time per
 * message, this checkout against another (e.g. `git archive COMMIT | tar -x -C /tmp/base`, with a
 * node_modules whose @mqtt-edge/codec, client and log resolve to built packages), each bundled as
 * bench/areas/broker.ts bundles them, in alternating rounds. The figure is the broker process's
 * utime + stime (/proc/PID/stat) over a fixed workload (one publisher, one subscriber on
 * `ab/#`, N messages of 64 bytes at QoS 0 then QoS 1), so other processes on a shared machine
 * move it far less than they move a throughput; the median of ROUNDS per side. Issue 14 used it to
 * hold its counters to the 2% budget where `npm run bench -- --only broker` varied by 20%.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { type Packet, PacketParser, PacketWriter } from '@mqtt-edge/codec';
import { bundleBrokerLite } from './areas/broker.ts';

const SCRIPT = `const { Broker } = await import(process.env.B); const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }] }); await b.listen(); console.log('PORT ' + b.addresses[0].port); process.on('SIGTERM', async () => { await b.close(); process.exit(0); });`;
function start(bundlePath: string): Promise<{ c: ChildProcess; port: number }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], {
      env: { ...process.env, B: bundlePath, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout?.on('data', (d: Buffer) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve({ c, port: Number(m[1]) });
    });
  });
}
const cpu = (pid: number): number => {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const w = new PacketWriter(1 << 16);
interface Peer {
  s: net.Socket;
  on: (p: Packet) => void;
}
function client(port: number, id: string): Promise<Peer> {
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
    const c: Peer = { s, on: () => {} };
    s.on('data', (d: Buffer) =>
      p.push(d, (pk) => {
        if (pk.type === 'connack') resolve(c);
        else c.on(pk);
      }),
    );
  });
}
async function run(port: number, qos: 0 | 1, N: number): Promise<void> {
  const sub = await client(port, 'sub');
  await new Promise<void>((r) => {
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
  const done = new Promise<void>((r) => {
    sub.on = (pk) => {
      if (pk.type === 'publish') {
        got++;
        if (qos > 0 && pk.packetId !== undefined)
          sub.s.write(Buffer.from(w.encode({ type: 'puback', packetId: pk.packetId }, 4)));
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
    const parts: Buffer[] = [];
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
  console.error('usage: node --import tsx bench/cpu-ab.ts BASE_CHECKOUT [N] [ROUNDS]');
  process.exit(2);
}
const ours = await bundleBrokerLite(ROOT);
const base = await bundleBrokerLite(path.resolve(process.argv[2]));
const N = Number(process.argv[3] ?? 1_500_000);
const QOS = [0, 1] as const;
const res: Record<'ours' | 'base', [number[], number[]]> = { ours: [[], []], base: [[], []] };
for (let round = 0; round < Number(process.argv[4] ?? 7); round++) {
  const order: Array<['ours' | 'base', string]> = [
    ['ours', ours],
    ['base', base],
  ];
  if (round % 2 === 1) order.reverse();
  for (const [name, b] of order) {
    const { c, port } = await start(b);
    const pid = c.pid as number;
    await run(port, 0, 50000); // warm-up
    for (const qos of QOS) {
      const c0 = cpu(pid);
      await run(port, qos, N);
      res[name][qos].push(((cpu(pid) - c0) / N) * 1e6);
    }
    c.kill('SIGTERM');
    await new Promise((r) => c.once('exit', r));
  }
}
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const qos of QOS)
  console.log(
    `QoS ${qos} fan-in, broker CPU µs/msg: ours ${res.ours[qos].map((x: number) => x.toFixed(2)).join(' ')} (median ${med(res.ours[qos]).toFixed(3)}); base ${res.base[qos].map((x: number) => x.toFixed(2)).join(' ')} (median ${med(res.base[qos]).toFixed(3)}); ours/base ${(med(res.ours[qos]) / med(res.base[qos])).toFixed(3)}`,
  );
for (const b of [ours, base]) fs.rmSync(path.dirname(b), { recursive: true, force: true });
