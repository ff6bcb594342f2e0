/**
 * codec: our encoder and streaming parser against mqtt-packet, same process, same packets.
 * Decode rows feed each packet as its own chunk to one long-lived parser (how a socket hands
 * bytes over); fragmented rows cut a stream of packets into 1..7-byte pieces (fixed seed).
 * Rates are per CPU-second (see cpuRate), best of 5 alternating rounds per side.
 */
import mqttPacket from 'mqtt-packet';
import {
  type Packet,
  PacketParser,
  PacketWriter,
  type ProtocolVersion,
} from '../../packages/codec/src/index.ts';
import {
  type BenchArea,
  type BenchRow,
  collectGarbage,
  costRow,
  measureAllocation,
  rateRow,
} from '../harness.ts';

const PEER = 'mqtt-packet';

interface Case {
  name: string;
  version: ProtocolVersion;
  ours: Packet;
  /** The same packet in mqtt-packet's field names. */
  theirs: mqttPacket.Packet;
}

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The codec area's packets (the engines area times the same ones). */
export function cases(): Case[] {
  const p16 = bytes(16, 1);
  const p1k = bytes(1024, 2);
  const pw = bytes(12, 3);
  const willPayload = bytes(8, 4);
  const p5 = bytes(64, 5);
  return [
    {
      name: 'publish-qos0',
      version: 4,
      ours: { type: 'publish', topic: 'sensors/gw-01/temp', payload: p16, qos: 0, retain: false, dup: false },
      theirs: {
        cmd: 'publish',
        topic: 'sensors/gw-01/temp',
        payload: Buffer.from(p16),
        qos: 0,
        retain: false,
        dup: false,
      },
    },
    {
      name: 'publish-qos1-1k',
      version: 4,
      ours: {
        type: 'publish',
        topic: 'sensors/gw-01/blob',
        payload: p1k,
        qos: 1,
        retain: false,
        dup: false,
        packetId: 4242,
      },
      theirs: {
        cmd: 'publish',
        topic: 'sensors/gw-01/blob',
        payload: Buffer.from(p1k),
        qos: 1,
        retain: false,
        dup: false,
        messageId: 4242,
      },
    },
    {
      name: 'connect-will',
      version: 4,
      ours: {
        type: 'connect',
        protocolVersion: 4,
        clientId: 'gateway-01-7f3a',
        clean: true,
        keepalive: 60,
        username: 'gateway-01',
        password: pw,
        will: { topic: 'gateways/gw-01/status', payload: willPayload, qos: 1, retain: true },
      },
      theirs: {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: 'gateway-01-7f3a',
        clean: true,
        keepalive: 60,
        username: 'gateway-01',
        password: Buffer.from(pw),
        will: { topic: 'gateways/gw-01/status', payload: Buffer.from(willPayload), qos: 1, retain: true },
      },
    },
    {
      name: 'subscribe-3',
      version: 4,
      ours: {
        type: 'subscribe',
        packetId: 17,
        subscriptions: [
          { topicFilter: 'commands/gw-01/#', qos: 1 },
          { topicFilter: 'config/+/gw-01', qos: 2 },
          { topicFilter: '$SYS/broker/uptime', qos: 0 },
        ],
      },
      theirs: {
        cmd: 'subscribe',
        messageId: 17,
        subscriptions: [
          { topic: 'commands/gw-01/#', qos: 1 },
          { topic: 'config/+/gw-01', qos: 2 },
          { topic: '$SYS/broker/uptime', qos: 0 },
        ],
      },
    },
    {
      name: 'publish-v5-props',
      version: 5,
      ours: {
        type: 'publish',
        topic: 'sensors/gw-01/humidity',
        payload: p5,
        qos: 1,
        retain: false,
        dup: false,
        packetId: 99,
        properties: {
          messageExpiryInterval: 3600,
          contentType: 'application/cbor',
          userProperties: [
            ['device', 'th-sensor-7'],
            ['unit', 'percent'],
          ],
        },
      },
      theirs: {
        cmd: 'publish',
        topic: 'sensors/gw-01/humidity',
        payload: Buffer.from(p5),
        qos: 1,
        retain: false,
        dup: false,
        messageId: 99,
        properties: {
          messageExpiryInterval: 3600,
          contentType: 'application/cbor',
          userProperties: { device: 'th-sensor-7', unit: 'percent' },
        },
      },
    },
  ];
}

/** A stream of `copies` packets cut into pieces of 1..7 bytes (deterministic). */
function fragment(packet: Uint8Array, copies: number): Uint8Array[] {
  const stream = new Uint8Array(packet.length * copies);
  for (let i = 0; i < copies; i++) stream.set(packet, i * packet.length);
  const pieces: Uint8Array[] = [];
  let seed = 12345;
  for (let at = 0; at < stream.length; ) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const n = 1 + (seed % 7);
    pieces.push(stream.slice(at, Math.min(stream.length, at + n)));
    at += n;
  }
  return pieces;
}

/**
 * Operations per CPU-second of this process (process.cpuUsage: user + system, GC threads
 * included), after a warm-up. The machine is shared with other work: wall-clock rates swing
 * with its load, CPU time barely does.
 */
function cpuRate(op: () => void, ms: number, batch: number): number {
  const warmUntil = performance.now() + Math.min(200, ms / 4);
  while (performance.now() < warmUntil) for (let i = 0; i < batch; i++) op();
  const start = process.cpuUsage();
  const end = performance.now() + ms;
  let ops = 0;
  while (performance.now() < end && ops < 50_000_000) {
    for (let i = 0; i < batch; i++) op();
    ops += batch;
  }
  const used = process.cpuUsage(start);
  return (ops * 1e6) / Math.max(1, used.user + used.system);
}

/** Best CPU rate of each side over alternating rounds, each round on a collected heap. */
function compareRates(ours: () => void, theirs: () => void, ms: number, batch: number): [number, number] {
  const rounds = 5;
  let a = 0;
  let b = 0;
  for (let r = 0; r < rounds; r++) {
    collectGarbage();
    a = Math.max(a, cpuRate(ours, ms / rounds, batch));
    collectGarbage();
    b = Math.max(b, cpuRate(theirs, ms / rounds, batch));
  }
  return [a, b];
}

let sink: unknown = null;
const keep = (p: unknown): void => {
  sink = p;
};

async function run(options: { quick: boolean }): Promise<BenchRow[]> {
  const ms = options.quick ? 250 : 2500;
  const allocCount = options.quick ? 20_000 : 200_000;
  const rows: BenchRow[] = [];
  const writer = new PacketWriter();
  for (const c of cases()) {
    const wire = writer.encode(c.ours, c.version).slice();
    const theirWire = mqttPacket.generate(c.theirs, { protocolVersion: c.version });
    if (Buffer.compare(Buffer.from(wire), theirWire) !== 0 && c.version === 4)
      throw new Error(`${c.name}: our bytes differ from mqtt-packet's`);
    const theirBuf = Buffer.from(wire);

    // decode, one packet per chunk
    const ours = new PacketParser({ protocolVersion: c.version });
    const theirs = mqttPacket.parser({ protocolVersion: c.version });
    let theirCount = 0;
    theirs.on('packet', (p) => {
      theirCount++;
      sink = p;
    });
    theirs.on('error', (e) => {
      throw e;
    });
    const decodeOurs = () => ours.push(wire, keep);
    const decodeTheirs = () => theirs.parse(theirBuf);
    decodeTheirs();
    if (theirCount !== 1) throw new Error(`${c.name}: mqtt-packet did not parse the packet`);
    const batch = c.name.includes('1k') ? 200 : 1000;
    const [oursRate, theirRate] = compareRates(decodeOurs, decodeTheirs, ms, batch);
    rows.push(rateRow(`codec:decode ${c.name}`, 'packets/s', oursRate, theirRate, PEER, 5));

    // decode, fragmented
    const copies = 64;
    const pieces = fragment(wire, copies);
    const theirPieces = pieces.map((p) => Buffer.from(p));
    const fragOurs = () => {
      for (let i = 0; i < pieces.length; i++) ours.push(pieces[i], keep);
    };
    const fragTheirs = () => {
      for (let i = 0; i < theirPieces.length; i++) theirs.parse(theirPieces[i]);
    };
    const fragBatch = Math.max(1, Math.floor(batch / copies));
    const [fragOursRuns, fragTheirRuns] = compareRates(fragOurs, fragTheirs, ms, fragBatch);
    const fragOursRate = fragOursRuns * copies;
    const fragTheirRate = fragTheirRuns * copies;
    rows.push(
      rateRow(`codec:decode-fragmented ${c.name}`, 'packets/s', fragOursRate, fragTheirRate, PEER, 10),
    );

    // encode
    const theirOpts = { protocolVersion: c.version };
    const [encOursRate, encTheirRate] = compareRates(
      () => (sink = writer.encode(c.ours, c.version)),
      () => (sink = mqttPacket.generate(c.theirs, theirOpts)),
      ms,
      batch,
    );
    rows.push(rateRow(`codec:encode ${c.name}`, 'packets/s', encOursRate, encTheirRate, PEER, 5));

    // heap per decoded packet, and collections
    const allocOurs = measureAllocation(decodeOurs, allocCount);
    const allocTheirs = measureAllocation(decodeTheirs, allocCount);
    rows.push(
      costRow(
        `codec:heap decode ${c.name}`,
        'bytes/packet',
        allocOurs.bytesPerOp,
        allocTheirs.bytesPerOp,
        PEER,
        8,
      ),
    );
    const perMillion = 1_000_000 / allocCount;
    rows.push(
      costRow(
        `codec:gc decode ${c.name}`,
        'GCs/1M packets',
        allocOurs.gcCount * perMillion,
        allocTheirs.gcCount * perMillion,
        PEER,
      ),
    );
  }
  if (sink === undefined) console.error('unreachable');
  return rows;
}

const area: BenchArea = { area: 'codec', run };
export default area;
