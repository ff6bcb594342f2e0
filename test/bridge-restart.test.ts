/**
 * The store-and-forward guarantee end to end, with both brokers as child processes of the real
 * CLI (`bin/broker-lite.js -c conf`): a gateway broker-lite bridged to an upstream broker-lite
 * (persistence on both). Under a QoS 1 load the upstream is killed (SIGKILL), the gateway is
 * killed (SIGKILL) and restarted while the upstream is away, more is published, then the
 * upstream comes back: every message the gateway acknowledged to its publisher arrives at the
 * upstream subscriber, in order per topic (duplicates allowed: QoS 1 is at least once).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type MqttClient } from '@mqtt-edge/client';
import { afterAll, expect, it } from 'vitest';
import { followJsonLog, type LogWaiter } from './helpers/json-log.ts';
import { freePort } from './helpers/mosquitto.ts';

const BIN = fileURLToPath(new URL('../packages/broker-lite/bin/broker-lite.js', import.meta.url));

interface Line {
  level: string;
  msg: string;
  [k: string]: unknown;
}

class LiteProcess {
  lines: Line[] = [];
  private child: ChildProcess | null = null;
  /** @internal followJsonLog's */
  waiters: Array<LogWaiter<Line>> = [];
  /** @internal followJsonLog's */
  stderrTail = '';
  constructor(readonly conf: string) {}

  async start(): Promise<void> {
    const from = this.lines.length;
    const child = spawn(process.execPath, [BIN, '-c', this.conf, '--log-format', 'json'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    followJsonLog(child, this);
    await this.waitFor((l) => l.msg === 'ready', from);
  }

  waitFor(pred: (l: Line) => boolean, from = 0, ms = 15_000): Promise<Line> {
    const hit = this.lines.slice(from).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`no matching log line in ${ms} ms:\n${this.stderrTail}`)),
        ms,
      );
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
    });
  }

  /** The exit code of the running process, when it exits. */
  exitCode(): Promise<number | null> {
    const c = this.child!;
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(c.exitCode);
    return new Promise((resolve) => c.once('exit', (code) => resolve(code)));
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    if (c === null || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      c.once('exit', () => resolve());
      c.kill(signal);
    });
  }
}

const root = mkdtempSync(join(tmpdir(), 'bl-bridge-restart-'));
const procs: LiteProcess[] = [];
const clients: MqttClient[] = [];
afterAll(async () => {
  for (const c of clients) await c.end({ force: true });
  for (const p of procs) await p.kill();
  rmSync(root, { recursive: true, force: true });
});

function lite(name: string, lines: string[]): LiteProcess {
  const dir = join(root, name);
  mkdirSync(dir);
  const conf = join(dir, 'broker.conf');
  writeFileSync(
    conf,
    `${lines.join('\n')}\npersistence true\npersistence_location ${dir}\nallow_anonymous true\n`,
  );
  const p = new LiteProcess(conf);
  procs.push(p);
  return p;
}

function connected(c: MqttClient): Promise<void> {
  return c.connected ? Promise.resolve() : new Promise((r) => c.once('connect', () => r()));
}

it('delivers every locally acknowledged message upstream, in order per topic, across kill -9 of both sides', async () => {
  const upPort = await freePort();
  const gwPort = await freePort();
  // The sink may be offline when the bridge drains: its queue must hold the whole backlog
  // (the default bound, 1000, would drop the rest, counted, by the upstream's own policy).
  const upstream = lite('upstream', [`listener ${upPort} 127.0.0.1`, 'max_queued_messages 10000']);
  const gateway = lite('gateway', [
    `listener ${gwPort} 127.0.0.1`,
    'connection cloud',
    `address 127.0.0.1:${upPort}`,
    'topic data/# out 1',
    'remote_clientid gw-1',
    'cleansession false',
    'restart_timeout 1',
  ]);
  await upstream.start();
  await gateway.start();

  // The upstream subscriber keeps a persistent session: it gets what the upstream acknowledged.
  const got = new Map<string, number[]>();
  const sink = connect({
    host: '127.0.0.1',
    port: upPort,
    clientId: 'sink',
    clean: false,
    reconnectPeriod: 50,
  });
  clients.push(sink);
  sink.on('message', (topic, payload) => {
    const list = got.get(topic) ?? [];
    list.push(Number(Buffer.from(payload).toString()));
    got.set(topic, list);
  });
  await connected(sink);
  await sink.subscribe({ filter: 'data/#', qos: 1 });
  await gateway.waitFor((l) => l.msg === 'bridge connected');

  const pub = connect({ host: '127.0.0.1', port: gwPort, clientId: 'pub', reconnectPeriod: 50 });
  clients.push(pub);
  await connected(pub);
  const TOPICS = ['data/a', 'data/b'];
  const acked = new Map<string, Set<number>>(TOPICS.map((t) => [t, new Set()]));
  let seq = 0;
  const burst = async (n: number) => {
    const waits: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const topic = TOPICS[i % 2];
      const v = seq++;
      waits.push(
        pub.publish(topic, String(v), { qos: 1 }).then(
          () => acked.get(topic)!.add(v),
          () => {},
        ),
      );
    }
    return waits;
  };

  // 1. Load with the upstream up; the upstream killed in the middle of it.
  const w1 = await burst(400);
  await upstream.kill('SIGKILL');
  await Promise.all(w1);
  await gateway.waitFor((l) => l.msg === 'bridge disconnected');
  // 2. More while it is away, then the gateway killed with messages in its queue.
  const w2 = await burst(300);
  await Promise.all(w2.slice(0, 150));
  await gateway.kill('SIGKILL');
  // 3. The gateway restarts (upstream still away) and takes more.
  await gateway.start();
  await connected(pub);
  await Promise.all(w2.slice(150).concat(await burst(300)));
  const total = [...acked.values()].reduce((n, s) => n + s.size, 0);
  expect(total).toBeGreaterThanOrEqual(850);

  // 4. The upstream comes back: everything acknowledged arrives.
  await upstream.start();
  const deadline = Date.now() + 25_000;
  const missing = () =>
    TOPICS.flatMap((t) => [...acked.get(t)!].filter((v) => !(got.get(t) ?? []).includes(v)));
  while (missing().length > 0 && Date.now() < deadline) {
    // No event says "the last one arrived": wait for the next message (or a short tick).
    await new Promise<void>((r) => {
      const done = () => {
        clearTimeout(t);
        sink.off('message', done);
        r();
      };
      const t = setTimeout(done, 200);
      sink.on('message', done);
    });
  }
  expect(missing()).toEqual([]);
  for (const t of TOPICS) {
    const list = got.get(t)!;
    const firsts = list.filter((v, i) => list.indexOf(v) === i);
    // In order per topic: the first copy of each message comes after the first copy of every earlier one.
    expect(firsts).toEqual([...firsts].sort((a, b) => a - b));
  }
  const stats = await gateway.waitFor((l) => l.msg === 'bridge connected', 0);
  expect(stats.bridge).toBe('cloud');
}, 60_000);

it('the CLI closes its bridges before the broker on SIGTERM and exits 0', async () => {
  const dead = await freePort();
  const port = await freePort();
  const gw = lite('sigterm', [
    `listener ${port} 127.0.0.1`,
    'connection nowhere',
    `address 127.0.0.1:${dead}`,
    'topic x/# out 1',
    'restart_timeout 1',
  ]);
  await gw.start();
  await gw.waitFor((l) => l.msg === 'bridge connect failed');
  const exit = gw.exitCode();
  await gw.kill('SIGTERM');
  expect(await exit).toBe(0);
  const msgs = gw.lines.map((l) => l.msg);
  const bridgeStopped = msgs.indexOf('bridge stopped');
  expect(bridgeStopped).toBeGreaterThan(msgs.indexOf('SIGTERM received, closing'));
  expect(bridgeStopped).toBeLessThan(msgs.indexOf('broker-lite stopped'));
  // The queue is where the documentation says: persistence_location/bridges/NAME.
  expect(gw.lines.find((l) => l.msg === 'bridge starting')?.queueDir).toMatch(/sigterm\/bridges\/nowhere$/);
}, 20_000);
