/**
 * The Node client against MQTT.js (`mqtt`), both on one Mosquitto started here, MQTT 3.1.1,
 * 64-byte payloads, one run after the other, best of the rounds:
 * - QoS 0: messages/s from the first publish() until the broker has read every message: the
 *   burst ends with one QoS 1 publish on the same connection, whose PUBACK (mosquitto handles
 *   a connection's packets in order) says all before it were processed.
 * - QoS 1: messages/s from the first publish() until the last PUBACK resolved its publish.
 * - Replay: 10,000 QoS 1 publishes written to a frozen broker (SIGSTOP) and never acknowledged;
 *   the broker is SIGKILLed and restarted; seconds from "listening again" to the last PUBACK.
 * - Heap per idle client: growth of V8 heap + ArrayBuffers (after GC) over 200 connected, idle
 *   clients / 200.
 * - CPU per QoS 0 / QoS 1 publish: this process's user+system CPU time over the run / messages.
 * - Broker ceiling: the same QoS 0 / QoS 1 / replay loads as bytes encoded before the clock
 *   starts, written in one go from a raw socket that only counts the PUBACK bytes: what the
 *   broker takes from a client that costs nothing. Not a client; it bounds what any client can
 *   reach on this broker and machine, so the QoS 0 / 1 rows are also given as a share of it.
 *   (The same idea for the replay is not a bound: one 10,000-packet write after a fresh
 *   CONNECT measured slower than our client's windowed replay, so it is not reported.)
 */
import net from 'node:net';
import { encode } from '@mqtt-edge/codec';
import mqtt from 'mqtt';
import { connect, type MqttClient } from '../../packages/client/src/node/index.ts';
import { hasMosquitto, type Mosquitto, startMosquitto } from '../../test/helpers/mosquitto.ts';
import {
  type BenchArea,
  type BenchOptions,
  type BenchRow,
  collectGarbage,
  costRow,
  rateRow,
} from '../harness.ts';

const PAYLOAD = new Uint8Array(64).fill(0x61);
const PEER = 'mqtt (MQTT.js)';

function ours(port: number, id: string): Promise<MqttClient> {
  const c = connect(`mqtt://127.0.0.1:${port}`, { clientId: id, protocolVersion: 4, reconnect: false });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('close', (e) => reject(e?.error ?? new Error('closed')));
  });
}

function peer(port: number, id: string): Promise<mqtt.MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: id,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

/**
 * A "client" that costs nothing per message: CONNECT, then `load` (encoded before the clock
 * starts) in one write; resolves with the seconds from that write until `acks` PUBACKs (4 bytes
 * each in 3.1.1) have arrived after the CONNACK.
 */
async function rawCeiling(port: number, clientId: string, load: Uint8Array, acks: number): Promise<number> {
  const connectBytes = encode(
    { type: 'connect', protocolVersion: 4, clientId, clean: true, keepalive: 60 },
    4,
  );
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
  try {
    return await new Promise<number>((resolve, reject) => {
      socket.once('error', reject);
      let t0 = 0;
      // CONNACK (4 bytes) first, then 4 bytes per PUBACK.
      let want = 4 + acks * 4;
      socket.on('data', (chunk: Buffer) => {
        if (t0 === 0) {
          if (chunk[0] !== 0x20 || chunk[3] !== 0) return reject(new Error('CONNACK refused'));
          t0 = performance.now();
          socket.write(load);
        }
        want -= chunk.length;
        if (want === 0) resolve((performance.now() - t0) / 1000);
        else if (want < 0) reject(new Error('more bytes than the PUBACKs expected'));
      });
      socket.write(connectBytes);
    });
  } finally {
    socket.destroy();
  }
}

/** n PUBLISH packets of 64 bytes on `topic`, QoS 1 ids 1..n, or QoS 0, as one buffer. */
function encodedLoad(topic: string, n: number, qos: 0 | 1): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++)
    parts.push(
      encode(
        qos === 1
          ? { type: 'publish', topic, payload: PAYLOAD, qos: 1, packetId: i + 1, retain: false, dup: false }
          : { type: 'publish', topic, payload: PAYLOAD, qos: 0, retain: false, dup: false },
        4,
      ).slice(),
    );
  return Buffer.concat(parts);
}

const endPeer = (c: mqtt.MqttClient) => new Promise<void>((r) => c.end(true, {}, () => r()));

/** Publishes n QoS 1 messages; resolves when all are acknowledged. */
function qos1Ours(c: MqttClient, n: number): Promise<unknown> {
  const all: Array<Promise<unknown>> = new Array(n);
  for (let i = 0; i < n; i++) all[i] = c.publish('bench/q1', PAYLOAD, { qos: 1 });
  return Promise.all(all);
}

function qos1Peer(c: mqtt.MqttClient, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = n;
    const buf = Buffer.from(PAYLOAD);
    for (let i = 0; i < n; i++)
      c.publish('bench/q1', buf, { qos: 1 }, (err) => {
        if (err) reject(err);
        else if (--left === 0) resolve();
      });
  });
}

async function heapPerClient(
  count: number,
  open: (i: number) => Promise<() => Promise<void>>,
): Promise<number> {
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  // Warm-up: one-time allocations (code, lazy module state) are not per client.
  const warm = await Promise.all(Array.from({ length: 10 }, (_, i) => open(count + i)));
  await Promise.all(warm.map((c) => c()));
  await new Promise((r) => setTimeout(r, 50));
  collectGarbage();
  const before = used();
  const closers: Array<() => Promise<void>> = [];
  for (let i = 0; i < count; i += 20) {
    const batch = [];
    for (let k = i; k < Math.min(count, i + 20); k++) batch.push(open(k));
    closers.push(...(await Promise.all(batch)));
  }
  // Let handshakes settle, then measure.
  await new Promise((r) => setTimeout(r, 200));
  collectGarbage();
  const after = used();
  await Promise.all(closers.map((c) => c()));
  return (after - before) / count;
}

async function run(options: BenchOptions): Promise<BenchRow[]> {
  if (!hasMosquitto()) {
    const note = 'skipped: /usr/sbin/mosquitto not installed';
    return [
      rateRow('client:publish qos0 64B', 'msgs/s', 0, null, PEER, 2, note),
      rateRow('client:publish qos1 64B', 'msgs/s', 0, null, PEER, 2, note),
      costRow('client:replay 10k qos1', 's', 0, null, PEER, 10, note),
      costRow('client:heap per idle client', 'bytes', 0, null, PEER, 2, note),
    ];
  }
  const quick = options.quick;
  const N0 = quick ? 20_000 : 100_000;
  const N1 = quick ? 10_000 : 50_000;
  const NR = 10_000;
  const IDLE = quick ? 50 : 200;
  const ROUNDS = quick ? 1 : 5;
  // No broker log: the helper would keep it in this process and charge it to the heap figures.
  const broker: Mosquitto = await startMosquitto({ config: 'log_dest none' });
  const rows: BenchRow[] = [];
  try {
    // Heap per idle connected client.
    const heapOurs = await heapPerClient(IDLE, async (i) => {
      const c = await ours(broker.port, `idle-ours-${i}`);
      return () => c.end();
    });
    const heapPeer = await heapPerClient(IDLE, async (i) => {
      const c = await peer(broker.port, `idle-peer-${i}`);
      return () => endPeer(c);
    });
    const heapRow = costRow(
      'client:heap per idle client',
      'bytes',
      heapOurs,
      heapPeer,
      PEER,
      2,
      `${IDLE} connected idle clients, V8 heap + ArrayBuffer growth after GC / count`,
    );

    const cpuSince = (c: NodeJS.CpuUsage) => {
      const d = process.cpuUsage(c);
      return d.user + d.system;
    };

    // The broker's ceiling for each load, as bytes prepared before the clock starts.
    const load0 = Buffer.concat([encodedLoad('bench/q0', N0, 0), encodedLoad('bench/q0', 1, 1)]);
    const load1 = encodedLoad('bench/q1', N1, 1);
    let ceil0 = 0;
    let ceil1 = 0;

    // QoS 0 until the broker has read them all (a QoS 1 fence at the end).
    let best0 = 0;
    let best0Peer = 0;
    let cpu0 = Number.POSITIVE_INFINITY;
    let cpu0Peer = Number.POSITIVE_INFINITY;
    for (let r = 0; r < ROUNDS; r++) {
      const a = await ours(broker.port, 'bench-pub-ours');
      let c0 = process.cpuUsage();
      let t0 = performance.now();
      for (let i = 0; i < N0; i++) a.publish('bench/q0', PAYLOAD);
      await a.publish('bench/q0', PAYLOAD, { qos: 1 });
      best0 = Math.max(best0, (N0 * 1000) / (performance.now() - t0));
      cpu0 = Math.min(cpu0, cpuSince(c0) / N0);
      await a.end();
      const b = await peer(broker.port, 'bench-pub-peer');
      const buf = Buffer.from(PAYLOAD);
      c0 = process.cpuUsage();
      t0 = performance.now();
      for (let i = 0; i < N0; i++) b.publish('bench/q0', buf, { qos: 0 });
      await new Promise<void>((resolve, reject) =>
        b.publish('bench/q0', buf, { qos: 1 }, (err) => (err ? reject(err) : resolve())),
      );
      best0Peer = Math.max(best0Peer, (N0 * 1000) / (performance.now() - t0));
      cpu0Peer = Math.min(cpu0Peer, cpuSince(c0) / N0);
      await endPeer(b);
      ceil0 = Math.max(ceil0, N0 / (await rawCeiling(broker.port, 'bench-raw-q0', load0, 1)));
    }
    rows.push(
      rateRow(
        'client:publish qos0 64B',
        'msgs/s',
        best0,
        best0Peer,
        PEER,
        2,
        `${N0} msgs, until the PUBACK of a QoS 1 publish sent after them (the broker read them all)`,
      ),
      costRow(
        'client:cpu per qos0 publish',
        'us/msg',
        cpu0,
        cpu0Peer,
        PEER,
        undefined,
        'client process CPU (user+system) over the QoS 0 run, waiting for the broker included',
      ),
    );

    // QoS 1 until every PUBACK.
    let best1 = 0;
    let best1Peer = 0;
    let cpu1 = Number.POSITIVE_INFINITY;
    let cpu1Peer = Number.POSITIVE_INFINITY;
    for (let r = 0; r < ROUNDS; r++) {
      const a = await ours(broker.port, 'bench-q1-ours');
      let c0 = process.cpuUsage();
      let t0 = performance.now();
      await qos1Ours(a, N1);
      best1 = Math.max(best1, (N1 * 1000) / (performance.now() - t0));
      cpu1 = Math.min(cpu1, cpuSince(c0) / N1);
      await a.end();
      const b = await peer(broker.port, 'bench-q1-peer');
      c0 = process.cpuUsage();
      t0 = performance.now();
      await qos1Peer(b, N1);
      best1Peer = Math.max(best1Peer, (N1 * 1000) / (performance.now() - t0));
      cpu1Peer = Math.min(cpu1Peer, cpuSince(c0) / N1);
      await endPeer(b);
      ceil1 = Math.max(ceil1, N1 / (await rawCeiling(broker.port, 'bench-raw-q1', load1, N1)));
    }
    rows.push(
      rateRow(
        'client:publish qos1 64B',
        'msgs/s',
        best1,
        best1Peer,
        PEER,
        2,
        `${N1} msgs, until the last PUBACK`,
      ),
      costRow(
        'client:cpu per qos1 publish',
        'us/msg',
        cpu1,
        cpu1Peer,
        PEER,
        undefined,
        'client process CPU (user+system) over the QoS 1 run; the broker runs in its own process',
      ),
    );

    // Replay after a reconnect: 10,000 QoS 1 publishes written to a frozen broker (never
    // acknowledged), the broker SIGKILLed and restarted; timed from "listening again" to the
    // last PUBACK (both clients reconnect after at most 10 ms).
    const replayOurs = async () => {
      const c = connect(`mqtt://127.0.0.1:${broker.port}`, {
        clientId: 'bench-replay-ours',
        protocolVersion: 4,
        clean: false,
        reconnectPeriod: 10,
        reconnectMaxDelay: 10,
      });
      await new Promise<void>((r) => c.once('connect', () => r()));
      broker.signal('SIGSTOP');
      const all: Array<Promise<unknown>> = [];
      for (let i = 0; i < NR; i++) all.push(c.publish('bench/replay', PAYLOAD, { qos: 1 }));
      const offline = new Promise<void>((r) => c.once('offline', () => r()));
      await new Promise((r) => setTimeout(r, 50));
      await broker.kill();
      await offline;
      await broker.restart();
      const t0 = performance.now();
      await Promise.all(all);
      const s = (performance.now() - t0) / 1000;
      await c.end();
      return s;
    };
    const replayPeer = async () => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, {
        clientId: 'bench-replay-peer',
        protocolVersion: 4,
        clean: false,
        reconnectPeriod: 10,
      });
      await new Promise<void>((r) => c.once('connect', () => r()));
      broker.signal('SIGSTOP');
      const done = qos1Peer(c, NR);
      const offline = new Promise<void>((r) => c.once('offline', () => r()));
      await new Promise((r) => setTimeout(r, 50));
      await broker.kill();
      await offline;
      await broker.restart();
      const t0 = performance.now();
      await done;
      const s = (performance.now() - t0) / 1000;
      await endPeer(c);
      return s;
    };
    let bestR = Number.POSITIVE_INFINITY;
    let bestRPeer = Number.POSITIVE_INFINITY;
    for (let r = 0; r < ROUNDS; r++) {
      bestR = Math.min(bestR, await replayOurs());
      bestRPeer = Math.min(bestRPeer, await replayPeer());
    }
    rows.push(
      costRow(
        'client:replay 10k qos1',
        's',
        bestR,
        bestRPeer,
        PEER,
        10,
        'written to a frozen broker, broker SIGKILLed + restarted; from listening again to the last PUBACK; ' +
          `10x MQTT.js needs ${(bestRPeer / 10).toFixed(3)} s, while ${NR} PUBACKs at the measured QoS 1 ` +
          `ceiling alone take ${(NR / ceil1).toFixed(3)} s`,
      ),
    );

    const CEIL = 'mosquitto ceiling (raw socket, pre-encoded bytes)';
    rows.push(
      rateRow(
        'client:qos0 as share of the broker ceiling',
        'msgs/s',
        best0,
        ceil0,
        CEIL,
        undefined,
        `MQTT.js: ${((best0Peer / ceil0) * 100).toFixed(0)}% of the ceiling; 2x MQTT.js needs ${(((2 * best0Peer) / ceil0) * 100).toFixed(0)}%`,
      ),
      rateRow(
        'client:qos1 as share of the broker ceiling',
        'msgs/s',
        best1,
        ceil1,
        CEIL,
        undefined,
        `MQTT.js: ${((best1Peer / ceil1) * 100).toFixed(0)}% of the ceiling; 2x MQTT.js needs ${(((2 * best1Peer) / ceil1) * 100).toFixed(0)}%`,
      ),
    );
    rows.push(heapRow);
  } finally {
    broker.signal('SIGCONT');
    await broker.stop();
  }
  return rows;
}

const area: BenchArea = { area: 'client', run };
export default area;
