/**
 * `npm start`: broker-lite, three simulated devices on pseudo-terminals (socat; an in-process
 * link when socat is missing), the agent, and a subscriber printing readings as they arrive,
 * with the agent's queue depth. Every 30 s the broker goes away for 6 s: the readings queue on
 * disk and drain when it is back, none lost. Ctrl-C stops everything cleanly.
 * The broker also serves its status page (a websockets listener with `status_page`, default
 * port 9001) and its Prometheus metrics (`metrics_listener`, default 9234); both URLs are printed.
 * Environment: DEMO_PORT (the broker's port; 0 for any free one, the page's and the metrics'
 * too; default 1883 when free), DEMO_OUTAGE_EVERY_MS (0: no outages).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { Agent, createLogger, parseConfig, parseMessageId } from '@mqtt-edge/agent';
import { Broker, type BrokerOptions } from '@mqtt-edge/broker-lite';
import { connect } from '@mqtt-edge/client';
import {
  createLinkPair,
  DEFAULT_SENSORS,
  FirmwareSim,
  type FirmwareSimOptions,
  hasSocat,
  InProcessTransport,
  PtyTransport,
  TappedTransport,
  type Transport,
} from '@mqtt-edge/firmware-sim';
import { FrameDecoder } from '@mqtt-edge/serial-protocol';

const OUTAGE_EVERY_MS = Number(process.env.DEMO_OUTAGE_EVERY_MS ?? 30_000);
const OUTAGE_FOR_MS = 6_000;
const askedPort = process.env.DEMO_PORT ? Number(process.env.DEMO_PORT) : undefined;
if (askedPort !== undefined && !(Number.isInteger(askedPort) && askedPort >= 0 && askedPort <= 65535)) {
  process.stderr.write(
    `demo: DEMO_PORT="${process.env.DEMO_PORT}" is not a port number (0..65535; 0 for any free port)\n`,
  );
  process.exit(2);
}
const tty = process.stdout.isTTY;
const c = (code: string, s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const dim = (s: string) => c('2', s);
const bold = (s: string) => c('1', s);
const time = () => new Date().toISOString().slice(11, 19);
const say = (s: string) => process.stdout.write(`${dim(time())}  ${s}\n`);

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** The agent's metrics port: 9101 when free and no DEMO_PORT was asked for, else any free one. */
async function agentMetricsPort(): Promise<number> {
  return askedPort === undefined && (await portFree(9101)) ? 9101 : 0;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-edge-demo-'));
const devices: Array<{
  id: string;
  opts: Omit<FirmwareSimOptions, 'deviceId'>;
  framing: 'native' | 'key-value';
  note: string;
}> = [
  { id: 'kitchen', framing: 'native', opts: { intervalMs: 1000 }, note: 'native frames' },
  {
    id: 'greenhouse',
    framing: 'native',
    opts: { intervalMs: 1500, faults: { garbage: 0.1 } },
    note: 'native frames, noisy line (garbage before 1 frame in 10)',
  },
  {
    id: 'boiler',
    framing: 'key-value',
    opts: { intervalMs: 2000, mode: 'key-value' },
    note: 'key=value text lines',
  },
];

say(bold('mqtt-edge demo: three simulated devices -> agent -> broker-lite -> subscriber'));
say(dim(`working directory ${dir} (removed on exit)`));

// Broker: DEMO_PORT when set (0: any free port, as the tests use, for the page and the metrics
// too), else 1883 (9001, 9234) when free, else whatever the kernel gives; loopback only.
const portOr = async (usual: number): Promise<number> =>
  askedPort === 0
    ? 0
    : askedPort !== undefined && usual === 1883
      ? askedPort
      : (await portFree(usual))
        ? usual
        : 0;
const wanted = await portOr(1883);
const persistenceDir = path.join(dir, 'broker');
const brokerOptions: Partial<BrokerOptions> = {
  listeners: [
    { port: wanted, host: '127.0.0.1', protocol: 'mqtt' },
    { port: await portOr(9001), host: '127.0.0.1', protocol: 'websockets', statusPage: true },
  ],
  metricsListener: { port: await portOr(9234), host: '127.0.0.1' },
  persistenceDir,
  // The status page's broker figures (from $SYS) move once a second.
  sysInterval: 1,
};
let broker = new Broker(brokerOptions);
await broker.listen();
const port = broker.addresses[0].port;
const pagePort = broker.addresses[1].port;
const metricsPort = broker.metricsAddress?.port ?? 0;
// The outages restart the broker on the same ports (the page reconnects to the one it knows).
brokerOptions.listeners = broker.addresses.map((a, i) => ({ ...brokerOptions.listeners?.[i], ...a }));
brokerOptions.metricsListener = { port: metricsPort, host: '127.0.0.1' };
say(
  `broker-lite on ${bold(`mqtt://127.0.0.1:${port}`)}${wanted === 0 && askedPort === undefined ? ' (1883 is taken, so an ephemeral port)' : ''}`,
);
say(`status page  ${bold(`http://127.0.0.1:${pagePort}/`)}`);
say(`metrics      ${bold(`http://127.0.0.1:${metricsPort}/metrics`)} (broker)`);

// Devices.
const socat = hasSocat();
if (!socat)
  say(
    c(
      '33',
      'socat not found: devices use an in-process link instead of pseudo-terminals (apt-get install socat)',
    ),
  );
const sims: FirmwareSim[] = [];
/** Per native device, the DATA frames (`bootId:seq`) it received an ACK for. */
const acked = new Map<string, Set<string>>();
const hostEnds = new Map<string, Duplex>();
for (const d of devices) {
  let transport: Transport;
  const agentPath = path.join(dir, `tty-${d.id}`);
  if (socat) transport = await PtyTransport.create(agentPath);
  else {
    const pair = createLinkPair();
    hostEnds.set(agentPath, pair.host);
    transport = new InProcessTransport(pair);
  }
  // The ACKs the device receives: the readings it was told are safe, for the check at the end.
  const frames = new Set<string>();
  acked.set(d.id, frames);
  const decoder = new FrameDecoder();
  const tapped = new TappedTransport(transport, (bytes) => {
    for (const f of decoder.push(bytes)) if (f.type === 'ack') frames.add(`${f.bootId}:${f.seq}`);
  });
  const sim = new FirmwareSim(tapped, { deviceId: d.id, seed: sims.length + 7, ...d.opts });
  sims.push(sim);
  say(
    `device ${bold(d.id.padEnd(10))} ${socat ? `on pty ${agentPath}` : 'on an in-process link'}: ${d.note}`,
  );
}

// Agent (in this process, so the demo can show its queue depth live).
const config = parseConfig(
  {
    agent: {
      id: 'demo',
      stateDir: path.join(dir, 'agent'),
      // The status page shows the queue depth from the health topic: every 2 s.
      healthInterval: '2s',
      log: { level: 'warn', format: 'text' },
    },
    serial: devices.map((d) => ({
      path: path.join(dir, `tty-${d.id}`),
      framing: d.framing,
      ...(d.framing === 'native' ? {} : { device: d.id }),
    })),
    mqtt: { url: `mqtt://127.0.0.1:${port}`, version: 5, reconnectMin: '200ms', reconnectMax: '1s' },
    topics: { prefix: 'demo' },
    queue: { fsync: 'batch' },
    // Home Assistant on the same broker finds the devices by itself (issue 14).
    homeassistant: { enabled: true },
    metrics: { listen: `127.0.0.1:${await agentMetricsPort()}` },
  },
  { baseDir: dir },
);
const agentLog = createLogger({
  level: 'warn',
  format: 'text',
  write: (l) => process.stdout.write(`${dim(`          agent: ${l}`)}\n`),
});
const agent = await Agent.start({
  config,
  log: agentLog,
  openPort: socat
    ? undefined
    : async (p) => {
        const end = hostEnds.get(p.path ?? '');
        if (end === undefined) throw new Error(`no link for ${p.path}`);
        return end;
      },
});
say(
  `agent ${bold('demo')}: durable queue in ${config.queue.dir} (fsync per batch), topics demo/{device}/{sensor}`,
);
const metrics = agent.metricsAddress;
if (metrics !== undefined) say(`metrics      ${bold(`http://127.0.0.1:${metrics.port}/metrics`)} (agent)`);
say(
  `Home Assistant discovery on: retained configs under homeassistant/+/demo/+/config (point Home Assistant's MQTT integration at this broker)`,
);

// Subscriber: one line per DATA frame (its readings share device:boot:seq).
const sub = connect(`mqtt://127.0.0.1:${port}`, {
  protocolVersion: 5,
  clientId: 'demo-subscriber',
  clean: false,
  sessionExpiryInterval: 300,
  reconnectPeriod: 200,
  reconnectMaxDelay: 1000,
});
const pending = new Map<string, { device: string; parts: string[]; timer: NodeJS.Timeout }>();
let received = 0;
const duplicates = new Set<string>();
/** Message ids received, per device (the check at the end needs them all). */
const seen = new Map<string, Set<string>>();
const flushFrame = (key: string) => {
  const p = pending.get(key);
  if (p === undefined) return;
  pending.delete(key);
  clearTimeout(p.timer);
  const q = agent.queueStats();
  say(`${bold(p.device.padEnd(10))} ${p.parts.join('  ').padEnd(70)} ${dim(`queue ${q.count}`)}`);
};
sub.on('message', (topic, payload) => {
  const text = Buffer.from(payload).toString('utf8');
  const parts = topic.split('/');
  if (parts[2] === 'status' || parts[1] === '_agent') {
    if (parts[3] === 'health') return;
    say(c('36', `${topic} = ${text}`));
    return;
  }
  if (parts[2] === 'cmd') {
    if (parts.length === 4) return; // the request itself
    say(c('35', `${topic} <- ${text}`));
    return;
  }
  let r: { id: string; sensor: string; value: number; unit?: string };
  try {
    r = JSON.parse(text);
  } catch {
    return;
  }
  received++;
  const id = parseMessageId(r.id);
  if (id === undefined) return;
  let ids = seen.get(id.device);
  if (ids === undefined) seen.set(id.device, (ids = new Set()));
  if (ids.has(r.id)) duplicates.add(r.id);
  ids.add(r.id);
  const key = `${id.device}:${id.bootId}:${id.seq}`;
  let p = pending.get(key);
  if (p === undefined) {
    p = { device: id.device, parts: [], timer: setTimeout(() => flushFrame(key), 150) };
    pending.set(key, p);
  }
  p.parts.push(`${r.sensor}=${r.value}${r.unit ? ` ${r.unit}` : ''}`);
});
await sub.subscribe([{ filter: 'demo/#', qos: 1 }]);
say(`subscriber on ${bold('demo/#')} (QoS 1): one line per device report; Ctrl-C to stop`);
// The devices start once the subscriber listens, so that it can account for every reading.
for (const s of sims) s.start();

// A command round trip, MQTT 5 request/response.
setTimeout(() => {
  say(c('35', 'command: demo/kitchen/cmd/status (MQTT 5 response topic demo/kitchen/cmd/status/reply)'));
  sub
    .publish('demo/kitchen/cmd/status', '', {
      qos: 1,
      properties: { responseTopic: 'demo/kitchen/cmd/status/reply', correlationData: Buffer.from('demo-1') },
    })
    .catch(() => undefined);
}, 4000).unref();

// The point of it all: the broker goes away, readings queue on disk, and drain on its return.
let outages = 0;
const outageTimer =
  OUTAGE_EVERY_MS > 0
    ? setInterval(async () => {
        outages++;
        say(
          c(
            '33',
            `--- broker stopped for ${OUTAGE_FOR_MS / 1000} s: the agent keeps acknowledging readings into its disk queue ---`,
          ),
        );
        await stopBroker(broker);
        await new Promise((r) => setTimeout(r, OUTAGE_FOR_MS));
        broker = new Broker(brokerOptions);
        await broker.listen();
        say(c('33', `--- broker back (queue ${agent.queueStats().count}): the backlog drains in order ---`));
      }, OUTAGE_EVERY_MS)
    : undefined;
outageTimer?.unref();

/**
 * Broker.close() first waits for its listeners to close, and a Node server closes only when its
 * connections have: with clients connected it waits for ever. Dropping the sockets ends that.
 */
async function stopBroker(b: Broker): Promise<void> {
  const closing = b.close();
  for (const conn of b.connections) conn.socket.destroy();
  await closing;
}

// While the broker is away nothing reaches the subscriber: show the queue filling instead.
const depthTimer = setInterval(() => {
  if (!agent.isConnected && !stopping)
    say(c('33', `queue ${agent.queueStats().count} messages on disk, broker unreachable`));
}, 1000);
depthTimer.unref();

/**
 * The README's promise, checked per device: every reading of every DATA frame a native device
 * received an ACK for (was told is safe) reached the subscriber. Text-line devices get no ACKs,
 * so they are only counted.
 */
function lostReadings(): { checked: number; missing: string[] } {
  let checked = 0;
  const missing: string[] = [];
  for (const sim of sims) {
    const fw = sim.firmware;
    if (fw.mode !== 'native') continue;
    const ids = seen.get(fw.deviceId) ?? new Set<string>();
    for (const frame of acked.get(fw.deviceId) ?? []) {
      for (let i = 0; i < DEFAULT_SENSORS.length; i++) {
        checked++;
        const id = `${fw.deviceId}:${frame}:${i}`;
        if (!ids.has(id)) missing.push(id);
      }
    }
  }
  return { checked, missing };
}

function perDevice(): string {
  return devices.map((d) => `${d.id} ${seen.get(d.id)?.size ?? 0}`).join(', ');
}

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) process.exit(1);
  stopping = true;
  if (outageTimer) clearInterval(outageTimer);
  clearInterval(depthTimer);
  say('stopping: devices, agent (drains in-flight acknowledgements), subscriber, broker');
  for (const [k] of pending) flushFrame(k);
  await Promise.all(sims.map((s) => s.stop()));
  await agent.stop(1500);
  const queued = agent.queueStats().count;
  // What the broker took before the agent stopped is on its way to the subscriber: wait for it.
  const until = Date.now() + 3000;
  while (Date.now() < until && queued === 0 && lostReadings().missing.length > 0)
    await new Promise((r) => setTimeout(r, 50));
  await sub.end().catch(() => undefined);
  await stopBroker(broker);
  rmSync(dir, { recursive: true, force: true });
  const { checked, missing } = lostReadings();
  say(
    `received ${received} readings (${perDevice()}), ${duplicates.size} duplicate ids, ${outages} broker outages`,
  );
  if (missing.length === 0)
    say(bold(`none lost: all ${checked} readings the native devices were told are safe arrived`));
  else
    say(
      c(
        '31',
        `${missing.length} of ${checked} readings the devices were told are safe did not arrive${
          queued > 0
            ? ` (${queued} messages were still in the agent's queue at stop: a real agent sends them at its next start; the demo removes its queue)`
            : ''
        }: ${missing.slice(0, 5).join(' ')}${missing.length > 5 ? ' ...' : ''}`,
      ),
    );
  say('bye');
  process.exit(0);
}
process.on('SIGINT', () => void shutdown());
process.on('SIGTERM', () => void shutdown());
