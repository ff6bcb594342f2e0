/**
 * Run by bridge-soak.test.ts as `node --expose-gc --import tsx bridge-soak.child.ts`, so that the
 * heap can be measured after a real GC and nothing else in the process allocates. Two bridges
 * fail for ever, every FAIL_MS: one at a port nobody listens on (bound, then closed), one at a
 * server that accepts TCP then resets, answers garbage or closes, in turn. Meanwhile a local
 * client does QoS 1 round trips through the broker (also into the failing bridges' queues).
 * Prints one JSON line: the samples at WARM and at TOTAL failed attempts, and the round trips.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { connect } from '@mqtt-edge/client';
import { type Bridge, startBridges } from '../src/bridge.ts';
import { Broker } from '../src/broker.ts';
import { parseConfig } from '../src/config.ts';

const WARM = Number(process.env.SOAK_WARM ?? 100);
const TOTAL = Number(process.env.SOAK_TOTAL ?? 1000);
const DEADLINE_MS = Number(process.env.SOAK_DEADLINE_MS ?? 60_000);
const FAIL_MS = 10;
const QUEUED = 200;
/** SOAK_RTT=0: no round trips during the attempts (to tell a leak of the bridge from the broker's). */
const RTT = process.env.SOAK_RTT !== '0';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

/** What a bridge's remote client holds that could pile up across attempts. */
interface Inspectable {
  client: (NodeJS.EventEmitter & { session: object }) | null;
  timer: NodeJS.Timeout | null;
}

async function refusedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface Hostile {
  port: number;
  accepted(): number;
  /** Accepted connections not yet closed: the bridge must not leave them half-open. */
  open(): number;
  close(): Promise<void>;
}

async function hostileServer(): Promise<Hostile> {
  let n = 0;
  const garbage = new Uint8Array([0x20, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x01]);
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    const mode = n++ % 3;
    if (mode === 0) s.resetAndDestroy();
    else if (mode === 1) s.once('data', () => s.end(garbage));
    else {
      // Read on, or the client's FIN is never seen and the socket stays half-open here.
      s.resume();
      s.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => n,
    open: () => open.size,
    close: () => {
      for (const s of open) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

function listenerCount(e: NodeJS.EventEmitter | null): number {
  if (e === null) return 0;
  let n = 0;
  for (const name of e.eventNames()) n += e.listenerCount(name);
  return n;
}

async function settledHeap(): Promise<number> {
  // Let sockets finish closing (their close callbacks run on later turns) before collecting.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    gc!();
  }
  // Without the code spaces: V8 keeps compiling hot functions for a while, which is not a leak.
  let used = 0;
  for (const sp of getHeapSpaceStatistics())
    if (!sp.space_name.startsWith('code')) used += sp.space_used_size;
  return used;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bl-bridge-soak-'));
  const refused = await refusedPort();
  const hostile = await hostileServer();
  const cfg = parseConfig(
    [
      'listener 0 127.0.0.1',
      'allow_anonymous true',
      'connection refused',
      `address 127.0.0.1:${refused}`,
      'topic soak/# out 1',
      'connection hostile',
      `address 127.0.0.1:${hostile.port}`,
      'topic soak/# both 1',
      'bridge_protocol_version mqttv50',
      '',
    ].join('\n'),
    join(dir, 'broker.conf'),
  );
  // restart_timeout takes whole seconds in the file; the soak needs attempts every few ms.
  for (const b of cfg.bridges) b.restartTimeout = { baseSeconds: FAIL_MS / 1000 };
  let logLines = 0;
  const broker = new Broker({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    allowAnonymous: true,
    logger: {
      log: () => {
        logLines++;
      },
    },
  });
  await broker.listen();
  const bridges = await startBridges(broker, cfg.bridges, {
    queueDir: (name) => join(dir, 'bridges', name),
    fsync: 'never',
  });
  const failures = (): number => bridges.list.reduce((n, b) => n + b.stats().connectFailures, 0);
  const inspect = (b: Bridge): Inspectable => b as unknown as Inspectable;

  const c = connect({
    host: '127.0.0.1',
    port: broker.addresses[0].port,
    clientId: 'soak',
    reconnect: false,
  });
  await new Promise<void>((r, j) => {
    c.once('connect', () => r());
    c.once('error', j);
  });
  await c.subscribe([{ filter: 'local/#', qos: 1 }]);
  // Into both failing bridges' queues (acknowledged here once on disk), before the first sample:
  // the queues hold the same messages at both samples, so the heap compares like with like.
  for (let i = 0; i < QUEUED; i++) await c.publish('soak/q', `q${i}`, { qos: 1 });
  const rtts: number[] = [];
  let stop = false;
  let seq = 0;
  // One QoS 1 message at a time: PUBACK and the message back both awaited.
  const roundTrips = (async () => {
    while (!stop && RTT) {
      const payload = String(seq++);
      const t0 = performance.now();
      const back = new Promise<void>((r) => {
        const on = (_t: string, p: Uint8Array): void => {
          if (Buffer.from(p).toString() !== payload) return;
          c.off('message', on);
          r();
        };
        c.on('message', on);
      });
      await c.publish('local/rtt', payload, { qos: 1 });
      await back;
      rtts.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();

  const sample = async () => {
    const heap = await settledHeap();
    return {
      attempts: failures(),
      heapUsed: heap,
      resources: resources(),
      listeners: bridges.list.map((b) => listenerCount(inspect(b).client)),
      queued: bridges.list.map((b) => b.stats().queue.count),
      hostileOpen: hostile.open(),
    };
  };
  const waitFailures = async (n: number): Promise<void> => {
    const t0 = Date.now();
    while (failures() < n) {
      if (Date.now() - t0 > DEADLINE_MS) throw new Error(`only ${failures()} of ${n} attempts in time`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const t0 = Date.now();
  await waitFailures(WARM);
  const warm = await sample();
  await waitFailures(TOTAL);
  const end = await sample();
  const elapsedMs = Date.now() - t0;
  stop = true;
  await roundTrips;
  const sorted = [...rtts].sort((a, b) => a - b);
  const states = bridges.stats().map((s) => ({ name: s.name, state: s.state, lastError: s.lastError }));
  await c.end();
  await bridges.close();
  await broker.close();
  await hostile.close();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(
    `${JSON.stringify({
      warm,
      end,
      elapsedMs,
      hostileAccepted: hostile.accepted(),
      logLines,
      states,
      roundTrips: sorted.length,
      rttP50: sorted[Math.floor(sorted.length / 2)],
      rttP99: sorted[Math.floor(sorted.length * 0.99)],
      rttMax: sorted[sorted.length - 1],
    })}\n`,
  );
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
