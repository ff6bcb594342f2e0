/**
 * broker-lite against Aedes and Mosquitto, each in its own child process (so its RSS is its
 * own), driven by one raw-socket load generator built on the codec: fan-in at QoS 0/1/2 with
 * every message checked (QoS 2 exactly once), fan-out to 200 subscribers, QoS 1 latency,
 * 5,000 idle connections, idle RSS. Every broker runs with its default settings.
 *
 * `BENCH_BASE=DIR` adds broker-lite built from another checkout (e.g. a `git worktree` of the
 * commit before a change) as one more peer, `broker-lite@base`, measured in the same run: an
 * A/B of our own code under the same machine load (target: ratio >= 0.95 on every row).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Packet, PacketParser, PacketWriter } from '@mqtt-edge/codec';
import {
  type BenchArea,
  type BenchOptions,
  type BenchRow,
  costRow,
  onLines,
  rateRow,
  untilListening,
} from '../harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Bundle path per broker-lite variant: `broker-lite`, and `broker-lite@base` with BENCH_BASE. */
const liteBundles = new Map<string, string>();
const BASE = 'broker-lite@base';
const MOSQUITTO = '/usr/sbin/mosquitto';

// ---- brokers in child processes --------------------------------------------------------

export interface RunningBroker {
  name: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
  /** Node brokers: a full GC in the broker process, so RSS shows what is live. */
  gc?(): Promise<void>;
}

export const LITE_SCRIPT = `
const { Broker } = await import(process.env.BROKER_LITE_BUNDLE);
const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }] });
await b.listen();
console.log('PORT ' + b.addresses[0].port);
process.on('SIGTERM', async () => { await b.close(); process.exit(0); });
process.stdin.on('data', (d) => { if (String(d).includes('gc')) { globalThis.gc?.(); globalThis.gc?.(); console.log('GCDONE'); } });
`;

const AEDES_SCRIPT = `
const { Aedes } = await import('aedes');
const net = await import('node:net');
const aedes = await Aedes.createBroker();
const server = net.createServer(aedes.handle);
server.listen(0, '127.0.0.1', () => console.log('PORT ' + server.address().port));
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('data', (d) => { if (String(d).includes('gc')) { globalThis.gc?.(); globalThis.gc?.(); console.log('GCDONE'); } });
`;

function waitForPort(child: ChildProcess, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start: ${err}`)), 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}): ${err}`));
    });
  });
}

/**
 * broker-lite as a gateway runs it: one esbuild bundle under plain node (no TypeScript loader
 * in the process, whose own ~25 MB would otherwise be counted as the broker's).
 */
export async function bundleBrokerLite(root: string): Promise<string> {
  const { build } = await import('esbuild');
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-lite-')), 'broker-lite.mjs');
  await build({
    entryPoints: [path.join(root, 'packages/broker-lite/src/index.ts')],
    // the base checkout's own @mqtt-edge packages, not this one's
    nodePaths: [path.join(root, 'node_modules')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['bufferutil', 'utf-8-validate'],
    // ws is CommonJS: give the ESM bundle a real require for Node's built-in modules
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'silent',
  });
  return out;
}

/** A Node broker (or the floor) in a child process; `env` on top of this one's (bench/latency-probe.ts). */
export async function startNodeBroker(
  name: string,
  script: string,
  flags: string[] = [],
  env: Record<string, string> = {},
): Promise<RunningBroker> {
  const prof = process.env.BENCH_PROFILE === name ? ['--cpu-prof', '--cpu-prof-dir=/tmp/bl/prof'] : [];
  const child = spawn(
    process.execPath,
    [...prof, ...flags, '--expose-gc', '--input-type=module', '-e', script],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, BROKER_LITE_BUNDLE: liteBundles.get(name) ?? '', ...env },
    },
  );
  const port = await waitForPort(child, name);
  const gc = (): Promise<void> =>
    new Promise((resolve) => {
      const onData = (d: Buffer): void => {
        if (d.toString().includes('GCDONE')) {
          child.stdout?.off('data', onData);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stdin?.write('gc\n');
    });
  return { name, port, pid: child.pid as number, stop: () => stopChild(child), gc };
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startMosquitto(): Promise<RunningBroker> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-mosq-'));
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\n`);
  // Its log goes nowhere: an unread pipe would fill and stall the broker.
  const child = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  await untilListening(port, child, 'mosquitto');
  return {
    name: 'mosquitto',
    port,
    pid: child.pid as number,
    stop: async () => {
      await stopChild(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * CPU time of every thread of `pid` (the event loop, libuv's pool, V8's GC helpers), in
 * nanoseconds, from /proc/PID/task/TID/schedstat: a figure of our own code's cost that does not
 * depend on how the load generator and the broker share the 2 cores.
 */
export function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return ns;
}

function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- the raw-socket client -------------------------------------------------------------

const writer = new PacketWriter(1 << 16);
const ACK = new Uint8Array([0x40, 2, 0, 0]);

class RawClient {
  readonly socket: net.Socket;
  private readonly parser = new PacketParser({ protocolVersion: 4 });
  onPacket: (p: Packet) => void = () => {};
  private out: Buffer | null = null;
  private outPos = 0;
  private outScheduled = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.parser.push(chunk, (p) => this.onPacket(p));
      this.flush();
    });
    socket.on('error', () => {});
  }

  static connect(port: number, clientId: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      const c = new RawClient(socket);
      const timer = setTimeout(() => reject(new Error(`CONNACK timeout for ${clientId}`)), 30_000);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      c.onPacket = (p) => {
        if (p.type === 'connack') {
          clearTimeout(timer);
          c.onPacket = () => {};
          if (p.reasonCode !== 0) reject(new Error(`CONNACK ${p.reasonCode}`));
          else resolve(c);
        }
      };
      socket.write(
        writer.encode({ type: 'connect', protocolVersion: 4, clientId, clean: true, keepalive: 120 }).slice(),
      );
    });
  }

  /** Queued; written once per turn (or at the end of the data event being handled). */
  send(p: Packet): void {
    this.sendBytes(writer.encode(p, 4));
  }

  sendBytes(bytes: Uint8Array): void {
    const n = bytes.length;
    const at = this.reserve(n);
    const out = this.out as Buffer;
    if (n <= 8) for (let i = 0; i < n; i++) out[at + i] = bytes[i];
    else out.set(bytes, at);
  }

  /** Room for `n` bytes in this turn's buffer (`outBuffer`); returns where they start. */
  reserve(n: number): number {
    if (this.out === null) this.out = Buffer.allocUnsafe(Math.max(4096, n));
    else if (this.outPos + n > this.out.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.outPos + n));
      this.out.copy(grown, 0, 0, this.outPos);
      this.out = grown;
    }
    const at = this.outPos;
    this.outPos += n;
    if (!this.outScheduled) {
      this.outScheduled = true;
      setImmediate(() => this.flush());
    }
    return at;
  }

  get outBuffer(): Buffer {
    return this.out as Buffer;
  }

  /**
   * From now on the broker's 4-byte acks (PUBACK, PUBREC, PUBCOMP) go to `onAck(type, pid)`
   * without the codec (the fan-in load generator's hot path); anything else, or an ack
   * with a reason code, sends the rest of the stream back through the codec parser.
   */
  rawAcks(onAck: (first: number, pid: number) => void): void {
    let rest: Buffer | null = null;
    const socket = this.socket;
    socket.removeAllListeners('data');
    const onData = (chunk: Buffer): void => {
      let buf = chunk;
      if (rest !== null) {
        buf = Buffer.concat([rest, chunk]);
        rest = null;
      }
      const n = buf.length;
      let i = 0;
      for (; i + 4 <= n; i += 4) {
        const first = buf[i];
        if ((first !== 0x40 && first !== 0x50 && first !== 0x70) || buf[i + 1] !== 2) break;
        onAck(first, (buf[i + 2] << 8) | buf[i + 3]);
      }
      if (i + 4 <= n || (i < n && buf[i] !== 0x40 && buf[i] !== 0x50 && buf[i] !== 0x70)) {
        // not a bare ack: the general path, for good
        socket.off('data', onData);
        socket.on('data', (c: Buffer) => {
          this.parser.push(c, (p) => this.onPacket(p));
          this.flush();
        });
        this.parser.push(buf.subarray(i), (p) => this.onPacket(p));
      } else if (i < n) rest = Buffer.from(buf.subarray(i));
      this.flush();
    };
    socket.on('data', onData);
  }

  /** Four-byte PUBACK / PUBREC / PUBREL / PUBCOMP. */
  ack(first: number, pid: number): void {
    ACK[0] = first;
    ACK[2] = pid >> 8;
    ACK[3] = pid & 0xff;
    this.sendBytes(ACK);
  }

  flush(): boolean {
    this.outScheduled = false;
    if (this.out === null || this.outPos === 0) return true;
    const b = this.out.subarray(0, this.outPos);
    this.out = null;
    this.outPos = 0;
    return this.socket.write(b);
  }

  subscribe(filter: string, qos: 0 | 1 | 2): Promise<void> {
    return new Promise((resolve) => {
      const prev = this.onPacket;
      this.onPacket = (p) => {
        if (p.type === 'suback') {
          this.onPacket = prev;
          resolve();
        } else prev(p);
      };
      this.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: filter, qos }] });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A subscriber that acks QoS 1/2 and calls `onMessage` once per PUBLISH received. */
function consume(c: RawClient, onMessage: (payload: Uint8Array) => void): void {
  c.onPacket = (p) => {
    if (p.type === 'publish') {
      if (p.qos === 1) c.ack(0x40, p.packetId as number);
      else if (p.qos === 2) c.ack(0x50, p.packetId as number);
      onMessage(p.payload);
    } else if (p.type === 'pubrel') c.ack(0x70, p.packetId);
  };
}

// ---- scenarios -------------------------------------------------------------------------

interface FaninResult {
  rate: number;
  received: number;
  unique: number;
  expected: number;
}

/**
 * The fan-in subscriber runs in its own process, so that it is not slowed down by the 20
 * publishers sharing its event loop: it acks, counts each message once (a bitmap over
 * publisher x sequence) and reports `unique received lastArrivalTime` every 100 ms.
 */
const FANIN_SUBSCRIBER = `
const { PacketParser, encode } = await import('@mqtt-edge/codec');
const net = await import('node:net');
const [port, qos, expected, per] = process.argv.slice(-4).map(Number);
const seen = new Uint8Array(expected);
let received = 0, unique = 0, last = 0;
const parser = new PacketParser({ protocolVersion: 4 });
const s = net.connect(port, '127.0.0.1');
s.setNoDelay(true);
// This turn's acks, written once at the end of the chunk (a fresh buffer per write: the
// socket may still hold the previous one).
let out = Buffer.allocUnsafe(2048), outPos = 0;
const ack = (first, pid) => {
  if (outPos + 4 > out.length) { const g = Buffer.allocUnsafe(out.length * 2); out.copy(g, 0, 0, outPos); out = g; }
  out[outPos] = first; out[outPos + 1] = 2; out[outPos + 2] = pid >> 8; out[outPos + 3] = pid & 255;
  outPos += 4;
};
s.on('data', (chunk) => {
  const before = received;
  parser.push(chunk, (p) => {
    if (p.type === 'connack') s.write(encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '#', qos }] }));
    else if (p.type === 'suback') console.log('READY');
    else if (p.type === 'publish') {
      if (p.qos > 0) ack(p.qos === 1 ? 0x40 : 0x50, p.packetId);
      received++;
      const pl = p.payload;
      const idx = ((pl[0] << 8) | pl[1]) * per + ((pl[2] << 8) | pl[3]);
      if (idx < expected && seen[idx]++ === 0) unique++;
    } else if (p.type === 'pubrel') ack(0x70, p.packetId);
  });
  if (outPos > 0) {
    s.write(out.subarray(0, outPos));
    out = Buffer.allocUnsafe(out.length);
    outPos = 0;
  }
  if (received !== before) last = performance.timeOrigin + performance.now();
});
s.write(encode({ type: 'connect', protocolVersion: 4, clientId: 'fanin-sub-' + qos, clean: true, keepalive: 120 }));
setInterval(() => console.log('P ' + received + ' ' + unique + ' ' + last), 100);
`;

export async function fanin(
  port: number,
  qos: 0 | 1 | 2,
  publishers: number,
  perPublisher: number,
): Promise<FaninResult> {
  const expected = publishers * perPublisher;
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      FANIN_SUBSCRIBER,
      '--',
      String(port),
      String(qos),
      String(expected),
      String(perPublisher),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let received = 0;
  let unique = 0;
  let lastAt = 0;
  let progressAt = performance.now();
  let ready: () => void = () => {};
  const isReady = new Promise<void>((r) => {
    ready = r;
  });
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      if (line === 'READY') ready();
      else if (line.startsWith('P ')) {
        const [, r, u, t] = line.split(' ');
        if (Number(u) !== unique) progressAt = performance.now();
        received = Number(r);
        unique = Number(u);
        lastAt = Number(t);
      }
    }
  });
  await isReady;
  const pubs = await Promise.all(
    Array.from({ length: publishers }, (_, i) => RawClient.connect(port, `fanin-pub-${qos}-${i}`)),
  );
  const payloadFor = (p: number, n: number): Uint8Array => {
    const payload = new Uint8Array(64);
    payload[0] = p >> 8;
    payload[1] = p & 0xff;
    payload[2] = n >> 8;
    payload[3] = n & 0xff;
    return payload;
  };
  const start = performance.timeOrigin + performance.now();
  for (let p = 0; p < publishers; p++) {
    const c = pubs[p];
    const topic = `bench/fanin/p${p}`;
    if (qos === 0) {
      void (async () => {
        for (let n = 0; n < perPublisher; ) {
          const parts: Buffer[] = [];
          for (let k = 0; k < 250 && n < perPublisher; k++, n++)
            parts.push(
              Buffer.from(
                writer.encode({
                  type: 'publish',
                  topic,
                  payload: payloadFor(p, n),
                  qos: 0,
                  retain: false,
                  dup: false,
                }),
              ),
            );
          if (!c.socket.write(Buffer.concat(parts))) await new Promise((r) => c.socket.once('drain', r));
        }
      })();
      continue;
    }
    // QoS 1/2: a window of 100 unacknowledged publishes per publisher. The PUBLISH is encoded
    // once and copied per message with its packet id and payload index patched in (the load
    // generator shares the 2 CPUs with the broker and the subscriber: the less it costs, the
    // less it decides the figures, for every broker alike).
    const template = Buffer.from(
      writer.encode({
        type: 'publish',
        topic,
        payload: payloadFor(p, 0),
        qos,
        retain: false,
        dup: false,
        packetId: 1,
      }),
    );
    const pidAt = template.length - 64 - 2;
    let next = 0;
    let open = 0;
    const sendOne = (): void => {
      const n = next++;
      open++;
      const at = c.reserve(template.length);
      const out = c.outBuffer;
      template.copy(out, at);
      const pid = (n % 65_000) + 1;
      out[at + pidAt] = pid >> 8;
      out[at + pidAt + 1] = pid & 0xff;
      out[at + pidAt + 4] = n >> 8;
      out[at + pidAt + 5] = n & 0xff;
    };
    const onAck = (first: number, pid: number): void => {
      if (first === 0x50) {
        c.ack(0x62, pid);
        return;
      }
      open--;
      while (open < 100 && next < perPublisher) sendOne();
    };
    c.onPacket = (pk) => {
      if (pk.type === 'pubrec') onAck(0x50, pk.packetId);
      else if (pk.type === 'puback' || pk.type === 'pubcomp') onAck(0x40, pk.packetId);
    };
    c.rawAcks(onAck);
    while (open < 100 && next < perPublisher) sendOne();
  }
  // Done when everything arrived, or when nothing new has arrived for 2 s (a broker that dropped).
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline && unique < expected && performance.now() - progressAt < 2000)
    await sleep(50);
  // QoS 2: give a duplicate a moment to show up.
  if (qos === 2 && unique === expected) await sleep(300);
  await sleep(120);
  const end = lastAt;
  for (const c of pubs) c.close();
  child.kill();
  return { rate: (unique * 1000) / (end - start), received, unique, expected };
}

export async function fanout(
  port: number,
  subscribers: number,
  messages: number,
): Promise<{ rate: number; delivered: number; expected: number }> {
  const counts = new Array<number>(subscribers).fill(0);
  let delivered = 0;
  const expected = subscribers * messages;
  let done: () => void = () => {};
  const allIn = new Promise<void>((r) => {
    done = r;
  });
  let lastAt = 0;
  const subs: RawClient[] = [];
  for (let i = 0; i < subscribers; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, subscribers - i) }, (_, k) =>
        RawClient.connect(port, `fanout-sub-${i + k}`),
      ),
    );
    await Promise.all(batch.map((c) => c.subscribe('bench/fanout', 0)));
    subs.push(...batch);
  }
  for (let i = 0; i < subs.length; i++) {
    consume(subs[i], () => {
      counts[i]++;
      lastAt = performance.now();
      if (++delivered === expected) done();
    });
  }
  const pub = await RawClient.connect(port, 'fanout-pub');
  const payload = new Uint8Array(64);
  const start = performance.now();
  for (let n = 0; n < messages; ) {
    const parts: Buffer[] = [];
    for (let k = 0; k < 100 && n < messages; k++, n++)
      parts.push(
        Buffer.from(
          writer.encode({
            type: 'publish',
            topic: 'bench/fanout',
            payload,
            qos: 0,
            retain: false,
            dup: false,
          }),
        ),
      );
    if (!pub.socket.write(Buffer.concat(parts))) await new Promise((r) => pub.socket.once('drain', r));
  }
  const stalled = (async () => {
    const deadline = performance.now() + 60_000;
    while (performance.now() < deadline) {
      await sleep(250);
      if (delivered === expected || (lastAt > 0 && performance.now() - lastAt > 2000)) return;
    }
  })();
  await Promise.race([allIn, stalled]);
  const end = lastAt;
  pub.close();
  for (const c of subs) c.close();
  return { rate: (delivered * 1000) / (end - start), delivered, expected };
}

/** Issue 15's topic: 48 characters, the kind a building's sensors publish under. */
export const ALIAS_TOPIC = 'site-0042/building-7/floor-3/room-12/temperature';

/**
 * Outbound topic aliases (issue 15.3): `subscribers` MQTT 5 clients on ALIAS_TOPIC, each allowing
 * topic aliases or not, `messages` QoS 0 publishes of a 16-byte payload to them. What the
 * subscribers' sockets carried per PUBLISH delivered (every byte after the SUBACK), and how many.
 */
export async function aliasFanout(
  port: number,
  aliases: boolean,
  subscribers: number,
  messages: number,
): Promise<{ bytesPerDelivery: number; delivered: number; expected: number }> {
  const expected = subscribers * messages;
  let delivered = 0;
  let bytes = 0;
  let lastAt = performance.now();
  const socks: net.Socket[] = [];
  for (let i = 0; i < subscribers; i++) {
    const sock = net.connect(port, '127.0.0.1');
    socks.push(sock);
    const parser = new PacketParser({ protocolVersion: 5 });
    let counting = false;
    await new Promise<void>((resolve, reject) => {
      sock.on('error', reject);
      sock.on('data', (chunk: Buffer) => {
        if (counting) bytes += chunk.length;
        parser.push(chunk, (p) => {
          if (p.type === 'connack')
            sock.write(
              writer.encode(
                { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: ALIAS_TOPIC, qos: 0 }] },
                5,
              ),
            );
          else if (p.type === 'suback') {
            counting = true;
            resolve();
          } else if (p.type === 'publish') {
            delivered++;
            lastAt = performance.now();
          }
        });
      });
      sock.write(
        writer.encode(
          {
            type: 'connect',
            protocolVersion: 5,
            clientId: `alias-${aliases ? 'on' : 'off'}-${i}`,
            clean: true,
            keepalive: 120,
            properties: aliases ? { topicAliasMaximum: 16 } : undefined,
          },
          5,
        ),
      );
    });
  }
  const pub = await RawClient.connect(port, `alias-pub-${aliases ? 'on' : 'off'}`);
  const payload = new Uint8Array(16);
  for (let n = 0; n < messages; ) {
    const parts: Buffer[] = [];
    for (let k = 0; k < 100 && n < messages; k++, n++)
      parts.push(
        Buffer.from(
          writer.encode({ type: 'publish', topic: ALIAS_TOPIC, payload, qos: 0, retain: false, dup: false }),
        ),
      );
    if (!pub.socket.write(Buffer.concat(parts))) await new Promise((r) => pub.socket.once('drain', r));
    // paced by the subscribers: QoS 0 past the broker's write limit would be dropped, not measured
    while (delivered < (n - 200) * subscribers && performance.now() - lastAt < 2000) await sleep(1);
  }
  const deadline = performance.now() + 30_000;
  while (delivered < expected && performance.now() < deadline && performance.now() - lastAt < 2000)
    await sleep(20);
  pub.close();
  for (const s of socks) s.destroy();
  return { bytesPerDelivery: bytes / Math.max(1, delivered), delivered, expected };
}

/** Rounds before the measured ones: long enough for the JIT to have optimised every broker's hot path. */
const WARMUP = 5000;

/**
 * Publish-to-subscriber latency, one message at a time: a publish at `qos` when the previous one
 * was delivered (the subscriber subscribed at `qos` too), `warmup` rounds left out; the samples
 * in ms.
 */
export async function latency(port: number, rounds: number, qos: 0 | 1, warmup = WARMUP): Promise<number[]> {
  const sub = await RawClient.connect(port, `lat-sub-${qos}`);
  await sub.subscribe('bench/lat', qos);
  const pub = await RawClient.connect(port, `lat-pub-${qos}`);
  let arrived: () => void = () => {};
  consume(sub, () => arrived());
  pub.onPacket = () => {};
  const times: number[] = [];
  const payload = new Uint8Array(64);
  for (let i = 0; i < rounds + warmup; i++) {
    const got = new Promise<void>((r) => {
      arrived = r;
    });
    const t0 = performance.now();
    pub.socket.write(
      writer.encode({
        type: 'publish',
        topic: 'bench/lat',
        payload,
        qos,
        retain: false,
        dup: false,
        packetId: qos === 0 ? undefined : (i % 60_000) + 1,
      }),
    );
    await got;
    if (i >= warmup) times.push(performance.now() - t0);
  }
  pub.close();
  sub.close();
  return times;
}

/** The `p`-th fraction of `samples` (sorted in place). */
export function percentile(samples: number[], p: number): number {
  samples.sort((a, b) => a - b);
  return samples[Math.min(samples.length - 1, Math.floor(samples.length * p))];
}

/**
 * A background load in a process of its own: `publishers` clients publishing 64-byte messages at
 * `qos` to `bench/load/pN`, paced to `rate` messages a second in all (each ~1 ms timer tick
 * sends what is due), and one subscriber on `bench/load/#` at `qos` that acks and counts. It
 * prints READY once everything is connected and sending, then `R sent received` every 250 ms.
 * Raw bytes, no codec: the less the load costs, the less it decides the figures.
 */
const LOAD = `
import net from 'node:net';
const [port, qos, rate, publishers] = process.argv.slice(-4).map(Number);
const str = (s) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]); };
const packet = (first, body) => Buffer.concat([Buffer.from([first, body.length]), body]);
const connect = (id) => new Promise((resolve, reject) => {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  s.once('error', reject);
  s.once('data', () => resolve(s));
  s.write(packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 2, 0, 0]), str(id)])));
});
let received = 0;
const sub = await connect('load-sub');
await new Promise((r) => { sub.once('data', r); sub.write(packet(0x82, Buffer.concat([Buffer.from([0, 1]), str('bench/load/#'), Buffer.from([qos])]))); });
let rest = null;
sub.on('data', (chunk) => {
  let b = rest === null ? chunk : Buffer.concat([rest, chunk]);
  rest = null;
  const acks = [];
  let i = 0;
  while (i < b.length) {
    let len = 0, mul = 1, j = i + 1;
    for (;;) { if (j >= b.length) { len = -1; break; } const x = b[j++]; len += (x & 127) * mul; mul *= 128; if (!(x & 128)) break; }
    if (len < 0 || j + len > b.length) break;
    if (b[i] >> 4 === 3) {
      received++;
      if ((b[i] & 6) === 2) { const t = (b[j] << 8) | b[j + 1]; acks.push(0x40, 2, b[j + 2 + t], b[j + 3 + t]); }
    }
    i = j + len;
  }
  if (i < b.length) rest = Buffer.from(b.subarray(i));
  if (acks.length > 0) sub.write(Buffer.from(acks));
});
const pubs = [];
for (let p = 0; p < publishers; p++) {
  const s = await connect('load-pub-' + p);
  s.on('data', () => {});
  const body = Buffer.concat([str('bench/load/p' + p), qos > 0 ? Buffer.from([0, 1]) : Buffer.alloc(0), Buffer.alloc(64)]);
  pubs.push({ s, t: packet(0x30 | (qos << 1), body), pid: 0 });
}
const start = performance.now();
let sent = 0, next = 0;
const tick = () => {
  // what is due, at most 50 ms of it after a stall
  let due = Math.min(Math.floor((rate * (performance.now() - start)) / 1000) - sent, Math.ceil(rate / 20));
  while (due > 0) {
    const pb = pubs[next];
    next = (next + 1) % pubs.length;
    const k = Math.max(1, Math.min(due, Math.ceil(due / pubs.length)));
    const t = pb.t;
    const out = Buffer.allocUnsafe(k * t.length);
    for (let m = 0; m < k; m++) {
      t.copy(out, m * t.length);
      if (qos > 0) { pb.pid = (pb.pid % 65000) + 1; const at = m * t.length + t.length - 66; out[at] = pb.pid >> 8; out[at + 1] = pb.pid & 255; }
    }
    pb.s.write(out);
    sent += k;
    due -= k;
  }
  setTimeout(tick, 1);
};
tick();
console.log('READY');
setInterval(() => console.log('R ' + sent + ' ' + received + ' ' + (performance.now() - start).toFixed(0)), 250);
`;

/**
 * Latency of `rounds` single publishes while LOAD runs at `rate` messages a second: the samples,
 * and the rate the load subscriber received during the probes (what the broker really carried).
 */
export async function loadedLatency(
  port: number,
  qos: 0 | 1,
  rate: number,
  rounds: number,
  loadCpus?: string,
): Promise<{ samples: number[]; carried: number }> {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', LOAD, '--', String(port), String(qos), String(Math.round(rate)), '10'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } },
  );
  // started from a pinned probe, it inherited the pin: the load runs where it is told
  if (loadCpus !== undefined && child.pid !== undefined) pinTo(child.pid, loadCpus, true);
  let last = { received: 0, at: 0 };
  let ready: () => void = () => {};
  const isReady = new Promise<void>((r) => {
    ready = r;
  });
  onLines(child, (line) => {
    if (line === 'READY') ready();
    else if (line.startsWith('R ')) {
      const [, , r, t] = line.split(' ');
      last = { received: Number(r), at: Number(t) };
    }
  });
  try {
    await isReady;
    await sleep(750);
    const from = last;
    const samples = await latency(port, rounds, qos, 200);
    await sleep(300);
    const carried = ((last.received - from.received) * 1000) / Math.max(1, last.at - from.at);
    return { samples, carried };
  } finally {
    child.kill();
  }
}

async function idle(
  b: RunningBroker,
  count: number,
): Promise<{ perConn: number; rate: number; before: number }> {
  await b.gc?.();
  await sleep(300);
  const before = rssBytes(b.pid);
  const clients: RawClient[] = [];
  const start = performance.now();
  // 100 at a time: Mosquitto listens with a backlog of 100, and a SYN beyond it waits a second
  for (let i = 0; i < count; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(100, count - i) }, (_, k) => RawClient.connect(b.port, `idle-${i + k}`)),
    );
    clients.push(...batch);
  }
  const rate = (count * 1000) / (performance.now() - start);
  await sleep(500);
  await b.gc?.();
  await sleep(500);
  const after = rssBytes(b.pid);
  for (const c of clients) c.close();
  await sleep(300);
  return { perConn: (after - before) / count, rate, before };
}

// ---- the area --------------------------------------------------------------------------

interface Figures {
  /** broker-lite only: aliases off then on (bytes on the wire and CPU per delivery). */
  alias?: Array<{ bytes: number; cpu: number; delivered: number; expected: number }>;
  idleRss: number;
  fanin: FaninResult[];
  fanout: { rate: number; delivered: number; expected: number };
  idle: { perConn: number; rate: number };
  /** Broker CPU per message received (fan-in QoS 0/1/2) and per delivery (fan-out), microseconds. */
  cpu: { fanin: number[]; fanout: number };
}

async function measure(
  b: RunningBroker,
  quick: boolean,
  idleRss: number,
  id: Figures['idle'],
): Promise<Figures> {
  const per = quick ? 1000 : 5000;
  const fan: FaninResult[] = [];
  const say = (what: string, v: unknown): void => {
    if (process.env.BENCH_VERBOSE) console.error(`  ${b.name} ${what}: ${JSON.stringify(v)}`);
  };
  // The machine is shared (2 cores, other work running): each figure is the better of two
  // runs, for every broker alike.
  const runs = quick ? 1 : 2;
  const cpuFanin: number[] = [];
  for (const qos of [0, 1, 2] as const) {
    let best: FaninResult | null = null;
    let cpu = Number.POSITIVE_INFINITY;
    for (let r = 0; r < runs; r++) {
      const c0 = cpuNs(b.pid);
      const f = await fanin(b.port, qos, 20, per);
      cpu = Math.min(cpu, (cpuNs(b.pid) - c0) / 1000 / Math.max(1, f.unique));
      say(`fanin qos${qos}`, f);
      // completeness first: a run that lost messages never beats one that did not
      if (best === null || f.unique > best.unique || (f.unique === best.unique && f.rate > best.rate))
        best = f;
    }
    fan.push(best as FaninResult);
    cpuFanin.push(cpu);
  }
  let fo: Awaited<ReturnType<typeof fanout>> | null = null;
  let cpuFanout = Number.POSITIVE_INFINITY;
  for (let r = 0; r < runs; r++) {
    const c0 = cpuNs(b.pid);
    const f = await fanout(b.port, 200, quick ? 200 : 2000);
    cpuFanout = Math.min(cpuFanout, (cpuNs(b.pid) - c0) / 1000 / Math.max(1, f.delivered));
    say('fanout', f);
    if (fo === null || f.delivered > fo.delivered || (f.delivered === fo.delivered && f.rate > fo.rate))
      fo = f;
  }
  // Topic aliases (issue 15.3): broker-lite's own, so measured for our variants only.
  let alias: Figures['alias'];
  if (b.name.startsWith('broker-lite')) {
    alias = [];
    for (const on of [false, true]) {
      let best = { bytes: 0, cpu: Number.POSITIVE_INFINITY, delivered: 0, expected: 0 };
      for (let r = 0; r < runs; r++) {
        const c0 = cpuNs(b.pid);
        const a = await aliasFanout(b.port, on, 50, quick ? 200 : 2000);
        const cpu = (cpuNs(b.pid) - c0) / 1000 / Math.max(1, a.delivered);
        say(`alias ${on ? 'on' : 'off'}`, { ...a, cpu });
        if (cpu < best.cpu)
          best = { bytes: a.bytesPerDelivery, cpu, delivered: a.delivered, expected: a.expected };
      }
      alias.push(best);
    }
  }
  return {
    alias,
    idleRss,
    fanin: fan,
    fanout: fo as Awaited<ReturnType<typeof fanout>>,
    idle: id,
    cpu: { fanin: cpuFanin, fanout: cpuFanout },
  };
}

function lossNote(r: { expected: number }, got: number, who: string): string | undefined {
  return got < r.expected ? `${who} delivered ${got} of ${r.expected}` : undefined;
}

/** Latency samples (ms) by QoS, one at a time and under half load; the load offered and carried. */
interface Latencies {
  idle: [number[], number[]];
  /** At half of this broker's own capacity. */
  loaded: [number[], number[]];
  load: [number, number];
  carried: [number, number];
  /** At half of Mosquitto's capacity, the same load for every broker that has it. */
  sameLoad: [number[], number[]];
  sameRate: [number, number];
}

const FLOOR = 'node floor';
/**
 * The least a Node broker can do on the latency rows: CONNACK, SUBACK, and each PUBLISH
 * forwarded as read to the subscribers whose filter is its topic or a `prefix/#` of it (QoS 1
 * with a PUBACK), through Node's net streams.
 */
export const FLOOR_SCRIPT = `
const net = await import('node:net');
const subs = [];
const srv = net.createServer((s) => {
  s.setNoDelay(true);
  s.on('error', () => {});
  s.on('close', () => { for (let k = subs.length - 1; k >= 0; k--) if (subs[k].s === s) subs.splice(k, 1); });
  let rest = null;
  s.on('data', (chunk) => {
    const c = rest === null ? chunk : Buffer.concat([rest, chunk]);
    rest = null;
    let i = 0;
    while (i < c.length) {
      let len = 0, mul = 1, j = i + 1;
      for (;;) { if (j >= c.length) { len = -1; break; } const b = c[j++]; len += (b & 127) * mul; mul *= 128; if (!(b & 128)) break; }
      if (len < 0 || j + len > c.length) break;
      const t = c[i] >> 4;
      if (t === 1) s.write(Buffer.from([0x20, 2, 0, 0]));
      else if (t === 8) {
        const fl = (c[j + 2] << 8) | c[j + 3];
        const f = c.toString('latin1', j + 4, j + 4 + fl);
        subs.push({ s, exact: f.endsWith('/#') ? null : f, prefix: f.endsWith('/#') ? f.slice(0, -1) : null });
        s.write(Buffer.from([0x90, 3, c[j], c[j + 1], c[j + len - 1]]));
      } else if (t === 3) {
        const tl = (c[j] << 8) | c[j + 1];
        const topic = c.toString('latin1', j + 2, j + 2 + tl);
        const p = c.subarray(i, j + len);
        for (const x of subs) if (x.exact === topic || (x.prefix !== null && topic.startsWith(x.prefix))) x.s.write(p);
        if ((c[i] & 6) === 2) s.write(Buffer.from([0x40, 2, c[j + 2 + tl], c[j + 3 + tl]]));
      }
      i = j + len;
    }
    if (i < c.length) rest = Buffer.from(c.subarray(i));
  });
});
srv.listen(0, '127.0.0.1', () => console.log('PORT ' + srv.address().port));
`;

/**
 * Where the one-at-a-time latency rows run (BENCH_LATENCY_CPUS): `same` (the default) puts the
 * event-loop threads of the probe (this process) and of every broker on one CPU, `apart` the
 * probe's on the first CPU and the brokers' on the last, `free` leaves it to the scheduler. On
 * these VMs waking a task on the other, idle vCPU costs ~30 us per hop: left free, the scheduler
 * kept some brokers beside the probe and moved others (or the same one, from round to round) to
 * the other vCPU, and that, not the broker, decided a p50 (broker-lite's QoS 0 p50 read 0.072 ms
 * side by side and 0.017 alone; pinned apart, Mosquitto's reads 0.080 too). Only the event loops
 * are pinned: V8's helper threads (parallel scavenges, compilers) stay free, as on a multi-core
 * gateway; pinned beside the event loop they took Node's p99 from ~0.1 to 0.26-0.45 ms.
 * Under load, the probe and the broker being measured are pinned the same way and the load
 * generator runs on the other CPUs (`same`): left free, it shared a CPU with the broker or the
 * probe by chance, and Node's QoS 1 p99 read 0.38-0.40 ms against 0.20-0.23 pinned (Mosquitto
 * 0.21-0.25 and 0.20-0.22).
 */
export type LatencyCpus = 'same' | 'apart' | 'free';

/** A thread's CPU list (`Cpus_allowed_list`), to put back after the rows. */
function cpusAllowed(tid: number): string {
  const m = /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync(`/proc/${tid}/status`, 'utf8'));
  return m ? m[1] : `0-${os.cpus().length - 1}`;
}

/**
 * The main thread of `pid` (its event loop; the thread whose id is the pid) onto `cpus`; with
 * `all`, every thread (putting them back: a thread started while pinned inherited the pin).
 */
function pinTo(pid: number, cpus: string, all = false): void {
  execFileSync('taskset', [...(all ? ['-a'] : []), '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

/**
 * Pins the probe's and the `brokers`' event loops as `how` says: a function that puts them back,
 * or why they were left free (no taskset, `free`, one CPU).
 */
export function pinLatency(
  how: LatencyCpus,
  brokers: number[],
): { restore: () => void; loadCpus: string } | { skipped: string } {
  const cpus = os.cpus().length;
  if (how === 'free') return { skipped: 'BENCH_LATENCY_CPUS=free' };
  if (cpus < 2 && how === 'apart') return { skipped: 'one CPU: nothing to pin apart' };
  const last = String(cpus - 1);
  const before = [process.pid, ...brokers].map((pid) => [pid, cpusAllowed(pid)] as const);
  try {
    pinTo(process.pid, how === 'apart' ? '0' : last);
    for (const pid of brokers) pinTo(pid, last);
  } catch (err) {
    for (const [pid, c] of before) {
      try {
        pinTo(pid, c, true);
      } catch {}
    }
    return { skipped: `taskset failed (${(err as Error).message.split('\n')[0]})` };
  }
  return {
    restore: () => {
      for (const [pid, c] of before) pinTo(pid, c, true);
    },
    // a load generator: the CPUs the probe and brokers left, or (apart, one CPU) where it was
    loadCpus: how === 'same' && cpus > 1 ? (cpus === 2 ? '0' : `0-${cpus - 2}`) : before[0][1],
  };
}

/** `xs` rotated by `r`: who goes first changes from round to round. */
function rotate<T>(xs: T[], r: number): T[] {
  const k = r % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}

const area: BenchArea = {
  area: 'broker',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const results = new Map<string, Figures>();
    liteBundles.set('broker-lite', await bundleBrokerLite(ROOT));
    const base = process.env.BENCH_BASE;
    if (base !== undefined && base !== '') liteBundles.set(BASE, await bundleBrokerLite(path.resolve(base)));
    // Idle figures: both Node brokers with a 1 MiB young generation, as a gateway holding
    // thousands of idle devices would run them (V8's default lets it grow to 16 MiB, which the
    // per-connection figure would then carry); the load runs use V8's defaults.
    const IDLE_FLAGS = ['--max-semi-space-size=1'];
    const starters: Array<[string, (idle: boolean) => Promise<RunningBroker>]> = [
      ['broker-lite', (idle) => startNodeBroker('broker-lite', LITE_SCRIPT, idle ? IDLE_FLAGS : [])],
      ['aedes', (idle) => startNodeBroker('aedes', AEDES_SCRIPT, idle ? IDLE_FLAGS : [])],
    ];
    if (liteBundles.has(BASE))
      starters.push([BASE, (idle) => startNodeBroker(BASE, LITE_SCRIPT, idle ? IDLE_FLAGS : [])]);
    const haveMosquitto = fs.existsSync(MOSQUITTO);
    if (haveMosquitto) starters.push(['mosquitto', () => startMosquitto()]);
    const only = process.env.BENCH_BROKERS?.split(',');
    const running = new Map<string, { b: RunningBroker; idleRss: number; id: Figures['idle'] }>();
    for (const [name, start] of starters) {
      if (only !== undefined && !only.includes(name)) continue;
      if (process.env.BENCH_VERBOSE) console.error(`broker: measuring ${name}`);
      // Idle figures from fresh processes, throughput from another: a heap grown by the load
      // runs would blur the per-connection RSS. RSS moves by a few hundred bytes per connection
      // from one process to the next (allocator and heap page reuse): the median of three.
      const idles: Array<Figures['idle'] & { idleRss: number }> = [];
      for (let r = 0; r < (options.quick ? 1 : 3); r++) {
        const fresh = await start(true);
        try {
          await sleep(1000);
          await fresh.gc?.();
          const idleRss = rssBytes(fresh.pid);
          const id = await idle(fresh, options.quick ? 1000 : 5000);
          if (process.env.BENCH_VERBOSE)
            console.error(`  ${name} idle: ${JSON.stringify({ idleRss, ...id })}`);
          idles.push({ idleRss, ...id });
        } finally {
          await fresh.stop();
        }
      }
      idles.sort((a, b) => a.perConn - b.perConn);
      const mid = idles[idles.length >> 1];
      const idleRss = [...idles].sort((a, b) => a.idleRss - b.idleRss)[idles.length >> 1].idleRss;
      const id: Figures['idle'] = {
        perConn: mid.perConn,
        rate: [...idles].sort((a, b) => a.rate - b.rate)[idles.length >> 1].rate,
      };
      if (process.env.BENCH_IDLE_ONLY) continue;
      running.set(name, { b: await start(false), idleRss, id });
    }
    const latencies = new Map<string, Latencies>();
    let latencyPlacement = '';
    let loadPlacement = 'not pinned';
    const floor = process.env.BENCH_IDLE_ONLY ? null : await startNodeBroker(FLOOR, FLOOR_SCRIPT);
    try {
      const quick = options.quick;
      // One message at a time: every broker (and the Node floor) running side by side, the
      // rounds taking turns, so that the machine's other load falls on all of them alike.
      const all: Array<[string, number]> = [...running].map(([n, r]) => [n, r.b.port]);
      if (floor !== null) all.push([FLOOR, floor.port]);
      const pool = (name: string): Latencies => {
        let l = latencies.get(name);
        if (l === undefined)
          latencies.set(
            name,
            (l = {
              idle: [[], []],
              loaded: [[], []],
              carried: [0, 0],
              load: [0, 0],
              sameLoad: [[], []],
              sameRate: [0, 0],
            }),
          );
        return l;
      };
      const how = (process.env.BENCH_LATENCY_CPUS ?? 'same') as LatencyCpus;
      const pins = pinLatency(how, [
        ...[...running.values()].map((r) => r.b.pid),
        ...(floor ? [floor.pid] : []),
      ]);
      const pidOf = new Map<string, number>([...running].map(([n, r]) => [n, r.b.pid]));
      if (floor !== null) pidOf.set(FLOOR, floor.pid);
      latencyPlacement =
        'skipped' in pins
          ? `event loops not pinned: ${pins.skipped}`
          : `event loops of probe and brokers pinned: ${how}`;
      try {
        for (const q of [0, 1] as const) {
          for (const [, port] of all) await latency(port, 0, q, quick ? 500 : WARMUP);
          for (let r = 0; r < (quick ? 2 : 4); r++)
            for (const [name, port] of rotate(all, r))
              pool(name).idle[q].push(...(await latency(port, quick ? 250 : 1000, q, 300)));
        }
      } finally {
        if ('restore' in pins) pins.restore();
      }
      for (const [name, r] of running) results.set(name, await measure(r.b, quick, r.idleRss, r.id));
      // At half of each broker's capacity (its own fan-in rate at that QoS in this run), and
      // at half of Mosquitto's for broker-lite and Mosquitto alike: the same work for both.
      const underLoad = async (same: boolean): Promise<void> => {
        const mosquitto = results.get('mosquitto');
        if (same && mosquitto === undefined) return;
        for (const q of [0, 1] as const) {
          const carried = new Map<string, number[]>();
          for (let r = 0; r < (quick ? 1 : 3); r++)
            for (const [name, port] of rotate(all, r)) {
              const f = results.get(name);
              // The floor has no capacity of its own: it runs at the same load only.
              if (same ? !['broker-lite', 'mosquitto', FLOOR].includes(name) : f === undefined) continue;
              const rate = ((same ? mosquitto : f) as Figures).fanin[q].rate / 2;
              const pid = pidOf.get(name);
              const pin = pid === undefined ? { skipped: 'no pid' } : pinLatency(how, [pid]);
              let l: Awaited<ReturnType<typeof loadedLatency>>;
              try {
                l = await loadedLatency(
                  port,
                  q,
                  rate,
                  quick ? 300 : 1000,
                  'restore' in pin ? pin.loadCpus : undefined,
                );
              } finally {
                if ('restore' in pin) pin.restore();
              }
              if ('restore' in pin)
                loadPlacement = `probe and broker event loops pinned: ${how}, load on CPUs ${pin.loadCpus}`;
              const mine = pool(name);
              (same ? mine.sameLoad : mine.loaded)[q].push(...l.samples);
              if (same) mine.sameRate[q] = rate;
              else mine.load[q] = rate;
              if (!carried.has(name)) carried.set(name, []);
              carried.get(name)?.push(l.carried);
            }
          if (!same) for (const [name, c] of carried) pool(name).carried[q] = median(c);
        }
      };
      await underLoad(false);
      await underLoad(true);
    } finally {
      await floor?.stop();
      for (const r of running.values()) await r.b.stop();
    }
    const ours = results.get('broker-lite');
    if (ours === undefined) return [];
    const rows: BenchRow[] = [];
    const [off, on] = ours.alias ?? [];
    if (off !== undefined && on !== undefined) {
      const loss = [lossNote(off, off.delivered, 'aliases off'), lossNote(on, on.delivered, 'aliases on')]
        .filter((x) => x !== undefined)
        .join('; ');
      rows.push(
        costRow(
          'broker:alias-48char-topic wire bytes per delivery, aliases on vs off',
          'bytes/delivery',
          on.bytes,
          off.bytes,
          'aliases off',
          undefined,
          `50 MQTT 5 subscribers, QoS 0, 16-byte payload${loss ? `; ${loss}` : ''}`,
        ),
        costRow(
          'broker:alias-48char-topic cpu per delivery, aliases on vs off',
          'us/delivery',
          on.cpu,
          off.cpu,
          'aliases off',
          undefined,
          'broker process CPU, all threads, per delivery',
        ),
      );
    }
    const peers = ['mosquitto', 'aedes', ...(liteBundles.has(BASE) ? [BASE] : [])];
    // The Node floor: what any Node broker pays on the latency rows (libuv, streams, two sockets).
    const floorLat = latencies.get(FLOOR);
    const ol = latencies.get('broker-lite');
    if (floorLat !== undefined && ol !== undefined)
      for (const q of [0, 1] as const)
        for (const kind of ['idle', 'sameLoad'] as const)
          for (const p of [0.5, 0.99]) {
            if (ol[kind][q].length === 0 || floorLat[kind][q].length === 0) continue;
            rows.push(
              costRow(
                `broker:latency-qos${q}${kind === 'idle' ? '' : '-same-load'}-p${p * 100} vs ${FLOOR}`,
                'ms',
                percentile(ol[kind][q], p),
                percentile(floorLat[kind][q], p),
                FLOOR,
                undefined,
                `a Node process forwarding each PUBLISH to its subscribers as it reads it, nothing else: the floor of a Node broker on this row${kind === 'idle' ? `; ${latencyPlacement}` : ''}`,
              ),
            );
          }
    for (const peer of peers) {
      const f = results.get(peer);
      const target = peer === 'aedes' ? 3 : peer === BASE ? 0.95 : 1;
      const baseTarget = peer === BASE ? 0.95 : undefined;
      const skip =
        f === undefined
          ? peer === 'mosquitto' && !haveMosquitto
            ? `mosquitto not installed (${MOSQUITTO}): row skipped`
            : `${peer} not measured in this run`
          : undefined;
      const note = (...parts: Array<string | undefined>): string | undefined =>
        [skip, ...parts].filter((x) => x !== undefined).join('; ') || undefined;
      for (let q = 0; q < 3; q++) {
        const o = ours.fanin[q];
        const p = f?.fanin[q];
        const dup =
          q === 2 && o.received !== o.unique
            ? `broker-lite sent ${o.received - o.unique} duplicates`
            : undefined;
        rows.push(
          rateRow(
            `broker:fanin-qos${q} vs ${peer}`,
            'msg/s',
            o.rate,
            p?.rate ?? null,
            peer,
            target,
            note(lossNote(o, o.unique, 'broker-lite'), p ? lossNote(p, p.unique, peer) : undefined, dup),
          ),
        );
      }
      rows.push(
        rateRow(
          `broker:fanout-200 vs ${peer}`,
          'deliveries/s',
          ours.fanout.rate,
          f?.fanout.rate ?? null,
          peer,
          target,
          note(
            lossNote(ours.fanout, ours.fanout.delivered, 'broker-lite'),
            f ? lossNote(f.fanout, f.fanout.delivered, peer) : undefined,
          ),
        ),
      );
      for (let q = 0; q < 3; q++)
        rows.push(
          costRow(
            `broker:fanin-qos${q} cpu per msg vs ${peer}`,
            'us/msg',
            ours.cpu.fanin[q],
            f?.cpu.fanin[q] ?? null,
            peer,
            baseTarget,
            note('broker process CPU, all threads, per message received'),
          ),
        );
      rows.push(
        costRow(
          `broker:fanout-200 cpu per delivery vs ${peer}`,
          'us/delivery',
          ours.cpu.fanout,
          f?.cpu.fanout ?? null,
          peer,
          baseTarget,
          note('broker process CPU, all threads, per delivery'),
        ),
      );
      const ol = latencies.get('broker-lite');
      const pl = latencies.get(peer);
      for (const q of [0, 1] as const)
        for (const kind of ['idle', 'loaded', 'sameLoad'] as const) {
          const o = ol?.[kind][q] ?? [];
          const p = pl?.[kind][q] ?? [];
          if (o.length === 0 || (kind === 'sameLoad' && p.length === 0)) continue;
          const how =
            kind === 'idle'
              ? `one at a time, ${o.length} samples, ${latencyPlacement}`
              : kind === 'sameLoad'
                ? `one at a time under ${Math.round(ol?.sameRate[q] ?? 0)} msg/s of QoS ${q} load (half of Mosquitto's fan-in rate) on both, ${o.length} samples, ${loadPlacement}`
                : `one at a time under a load at half each broker's fan-in QoS ${q} rate (broker-lite ${Math.round(ol?.load[q] ?? 0)} msg/s offered, ${Math.round(ol?.carried[q] ?? 0)} carried${pl ? `; ${peer} ${Math.round(pl.load[q])} offered, ${Math.round(pl.carried[q])} carried` : ''}), ${o.length} samples, ${loadPlacement}`;
          const suffix = kind === 'idle' ? '' : kind === 'loaded' ? '-half-load' : '-same-load';
          const vsMosquitto = peer === 'mosquitto';
          rows.push(
            costRow(
              `broker:latency-qos${q}${suffix}-p50 vs ${peer}`,
              'ms',
              percentile(o, 0.5),
              p.length > 0 ? percentile(p, 0.5) : null,
              peer,
              vsMosquitto ? 1 : baseTarget,
              note(how),
            ),
            costRow(
              `broker:latency-qos${q}${suffix}-p99 vs ${peer}`,
              'ms',
              percentile(o, 0.99),
              p.length > 0 ? percentile(p, 0.99) : null,
              peer,
              vsMosquitto ? 1 / 1.2 : baseTarget,
              note(),
            ),
          );
        }
      rows.push(
        rateRow(
          `broker:connect-rate vs ${peer}`,
          'conn/s',
          ours.idle.rate,
          f?.idle.rate ?? null,
          peer,
          baseTarget,
          note(),
        ),
      );
      rows.push(
        costRow(
          `broker:rss-per-idle-conn vs ${peer}`,
          'bytes/conn',
          ours.idle.perConn,
          f?.idle.perConn ?? null,
          peer,
          baseTarget,
          note('target <= 4096 bytes'),
        ),
      );
      rows.push(
        costRow(
          `broker:idle-rss vs ${peer}`,
          'bytes',
          ours.idleRss,
          f?.idleRss ?? null,
          peer,
          baseTarget,
          note(),
        ),
      );
    }
    return rows;
  },
};

export default area;
