/**
 * broker-lite bundled with the persistence files of an older commit in place of this checkout's
 * (issue 17.3: the split; issue 18.4: format 2 reads format 1), a scenario that writes every
 * kind of record, and the recovered state as plain data to compare across versions.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { expect } from 'vitest';
import type { Broker as BrokerClass, BrokerOptions } from '../../src/index.ts';
import type { Delivery, Message } from '../../src/message.ts';
import { RawClient } from './raw-client.ts';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = path.join(PKG, 'src');

/** The file at `commit`, or undefined when git cannot show it (a shallow clone). */
export function gitShow(commit: string, file: string): string | undefined {
  try {
    return execFileSync('git', ['show', `${commit}:packages/broker-lite/src/${file}`], {
      cwd: PKG,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return undefined;
  }
}

/** The last commit with persist.ts in one file (issue 17.3). */
export const BASE_ONE_FILE = '54d0e3b';
/** The last commit that wrote format 1 (issue 18.4), persist.ts split in files. */
export const FORMAT1 = '516e4d00c839365dc984af45ca48b3a400dc2848';
const FORMAT1_FILES = [
  'persist.ts',
  'persist-format.ts',
  'persist-log.ts',
  'persist-read.ts',
  'persist-snapshot.ts',
];

/** FORMAT1's persistence files (name -> source); undefined when git cannot show them. */
export function format1Files(): Record<string, string> | undefined {
  const files: Record<string, string> = {};
  for (const f of FORMAT1_FILES) {
    const src = gitShow(FORMAT1, f);
    if (src === undefined) return undefined;
    files[f] = src;
  }
  return files;
}

export type BrokerCtor = new (o: Partial<BrokerOptions>) => BrokerClass;

/** What the broker asks of its persistence since issue 17.3 that an older one may not have. */
const SHIMS = `
const __p = Persistence.prototype as unknown as { holdUntilCommit?(): void };
if (__p.holdUntilCommit === undefined) __p.holdUntilCommit = () => {};
`;

/**
 * broker-lite from this checkout, with `./persist*.ts` files replaced by `overrides` (file name
 * -> source). An override of persist.ts gets the shims the broker needs of it.
 */
export async function bundle(
  outDir: string,
  name: string,
  overrides: Record<string, string>,
): Promise<BrokerCtor> {
  const out = path.join(outDir, `${name}.mjs`);
  await build({
    entryPoints: [path.join(SRC, 'index.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['bufferutil', 'utf-8-validate', 'argon2'],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'silent',
    conditions: ['mqtt-edge-source'],
    plugins: [
      {
        name: 'old-persist',
        setup(b) {
          b.onResolve({ filter: /^\.\/persist(-[a-z]+)?\.ts$/ }, (args) =>
            overrides[args.path.slice(2)] === undefined
              ? undefined
              : { path: args.path.slice(2), namespace: 'old' },
          );
          b.onLoad({ filter: /.*/, namespace: 'old' }, (args) => ({
            contents: args.path === 'persist.ts' ? `${overrides[args.path]}\n${SHIMS}` : overrides[args.path],
            loader: 'ts',
            resolveDir: SRC,
          }));
        },
      },
    ],
  });
  return ((await import(pathToFileURL(out).href)) as { Broker: BrokerCtor }).Broker;
}

export async function start(B: BrokerCtor, dir: string): Promise<{ broker: BrokerClass; port: number }> {
  const broker = new B({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    authFailureDelayMs: 0,
    autosaveIntervalSeconds: 0,
    persistenceDir: dir,
    logger: { log: () => {} },
  });
  await broker.listen();
  return { broker, port: broker.addresses[0].port };
}

/** Bounded wait for a state the broker reaches on a socket event (no event to await here). */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

/** Every record type the log writes, in an order fixed by acknowledgements and barriers. */
export async function scenario(broker: BrokerClass, port: number): Promise<void> {
  const conns = (n: number) => until(`${n} connections`, () => broker.connections.size === n);
  const s1 = (await RawClient.connect(port, { clientId: 's1', clean: false })).client;
  await s1.subscribe('d/#', 2, 1);
  await s1.subscribe('x/#', 1, 2);
  s1.send({ type: 'unsubscribe', packetId: 3, topicFilters: ['x/#'] });
  await s1.expect('unsuback');
  await s1.disconnect();
  await conns(0);
  const s5 = (
    await RawClient.connect(port, {
      clientId: 's5',
      protocolVersion: 5,
      username: 'u5',
      properties: { sessionExpiryInterval: 3600 },
      will: {
        topic: 'w/s5',
        payload: Buffer.from('gone'),
        qos: 1,
        retain: false,
        properties: { willDelayInterval: 600, userProperties: [['k', 'v']] },
      },
    })
  ).client;
  s5.send({
    type: 'subscribe',
    packetId: 1,
    subscriptions: [{ topicFilter: 'd/#', qos: 1 }],
    properties: { subscriptionIdentifier: 42 },
  });
  await s5.expect('suback');
  s5.close(); // the will waits out its delay
  await conns(0);
  const gone = (await RawClient.connect(port, { clientId: 'gone', clean: false })).client;
  await gone.disconnect();
  await conns(0);
  (await RawClient.connect(port, { clientId: 'gone', clean: true })).client.close();
  await conns(0);

  const p = (
    await RawClient.connect(port, {
      clientId: 'p',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    })
  ).client;
  p.send({
    type: 'publish',
    topic: 'r/kept',
    payload: Buffer.from('retained'),
    qos: 1,
    retain: true,
    dup: false,
    packetId: 1,
    properties: { messageExpiryInterval: 100, userProperties: [['a', 'b']], contentType: 'text/plain' },
  });
  await p.expect('puback');
  p.publish('r/dropped', 'x', 1, true, 2);
  await p.expect('puback');
  p.publish('r/dropped', '', 1, true, 3);
  await p.expect('puback');
  p.publish('d/a', 'one', 1, false, 4);
  await p.expect('puback');
  p.publish('d/b', 'two', 2, false, 5);
  await p.expect('pubrec');
  p.send({ type: 'pubrel', packetId: 5, reasonCode: 0 });
  await p.expect('pubcomp');
  p.publish('d/c', 'three', 2, false, 6);
  await p.expect('pubrec'); // not released: the id stays received
  // properties on a stored (not retained) message: expiry, content type, user properties
  p.send({
    type: 'publish',
    topic: 'd/props',
    payload: Buffer.from('with properties'),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 7,
    properties: {
      messageExpiryInterval: 3000,
      contentType: 'application/json',
      correlationData: Buffer.from([1, 2, 3]),
      userProperties: [
        ['k', 'v1'],
        ['k', ''],
      ],
    },
  });
  await p.expect('puback');
  await p.disconnect();
  await conns(0);

  // s1 takes its queue: acknowledges the QoS 1 message, receives the first QoS 2 one (PUBREC),
  // and leaves the second one sent but unacknowledged, and the last one queued.
  const back = (await RawClient.connect(port, { clientId: 's1', clean: false })).client;
  const got = [
    await back.expect('publish'),
    await back.expect('publish'),
    await back.expect('publish'),
    await back.expect('publish'),
  ];
  expect(got.map((g) => g.topic)).toEqual(['d/a', 'd/b', 'd/c', 'd/props']);
  back.send({ type: 'puback', packetId: got[0].packetId as number });
  back.send({ type: 'pubrec', packetId: got[1].packetId as number });
  await back.expect('pubrel');
  await until('s1 acknowledged', () => (broker.sessions.get('s1')?.inflightCount ?? 0) === 3);
  back.close();
  await conns(0);
  await until('all on disk', () => broker.persist?.unsynced === false);
}

const hex = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('hex'));

function message(m: Message): unknown {
  const p = m.properties;
  return {
    topic: m.topic,
    payload: hex(m.payload),
    qos: m.qos,
    retain: m.retain,
    expiresAt: m.expiresAt,
    properties:
      p === undefined
        ? undefined
        : JSON.parse(JSON.stringify({ ...p, correlationData: hex(p.correlationData) })),
  };
}

function delivery(d: Delivery): unknown {
  return { msg: message(d.msg), qos: d.qos, retain: d.retain, subIds: d.subIds, pid: d.pid, state: d.state };
}

/** The stored state of `broker` as plain data (sessions, queues, retained messages, wills). */
export function storedState(broker: BrokerClass): unknown {
  const sessions: Record<string, unknown> = {};
  for (const s of [...broker.sessions.values()].sort((a, b) => (a.clientId < b.clientId ? -1 : 1))) {
    if (!s.persistent) continue;
    sessions[s.clientId] = {
      expiryInterval: s.expiryInterval,
      expiresAt: s.expiresAt,
      username: s.username,
      subs: [...s.subs.values()].map((u) => [
        u.filter,
        u.qos,
        u.noLocal,
        u.retainAsPublished,
        u.retainHandling,
        u.id,
      ]),
      inflight: [...s.inflight.values()].map(delivery),
      queue: s.queue
        .slice(s.qHead)
        .filter((d) => d !== undefined)
        .map(delivery),
      incoming: s.incomingQos2 === null ? [] : [...s.incomingQos2].sort(),
    };
  }
  const retained: unknown[] = [];
  broker.retain.forEach((m) => {
    if (!m.topic.startsWith('$SYS/')) retained.push(message(m));
  });
  const wills: unknown[] = [];
  broker.wills.forEach((clientId, username, will, dueAt) => {
    wills.push({ clientId, username, topic: will.topic, payload: hex(will.payload), dueAt });
  });
  return { sessions, retained, wills };
}
