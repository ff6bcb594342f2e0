/**
 * issue 17.3: persist.ts was split into persist-format / -log / -snapshot / -read (structure,
 * not behaviour). The same sequence of operations is run against a broker built with the
 * persist.ts of the commit before the split and one built from this checkout; the log, the
 * snapshot written at close, and the snapshot written after recovering each log must be the
 * same bytes, and each code must recover the other's files to the same state. (Since issue 18.4
 * the log itself may differ: see the comment at the comparison.)
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Broker as BrokerClass, BrokerOptions } from '../src/index.ts';
import { RawClient } from './helpers/raw-client.ts';

/** The last commit with persist.ts in one file. */
const BASE = '54d0e3b';
const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SRC = path.join(PKG, 'src');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'persist-split-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function baseSource(): string | undefined {
  try {
    return execFileSync('git', ['show', `${BASE}:packages/broker-lite/src/persist.ts`], {
      cwd: PKG,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return undefined;
  }
}
const OLD = baseSource();

type BrokerCtor = new (o: Partial<BrokerOptions>) => BrokerClass;

/** broker-lite bundled from this checkout, or with the persist.ts of BASE in place of ours. */
async function bundle(name: string, oldPersist: string | undefined): Promise<BrokerCtor> {
  const out = path.join(tmp, `${name}.mjs`);
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
    plugins:
      oldPersist === undefined
        ? []
        : [
            {
              name: 'old-persist',
              setup(b) {
                b.onResolve({ filter: /^\.\/persist\.ts$/ }, () => ({
                  path: 'old-persist',
                  namespace: 'old',
                }));
                b.onLoad({ filter: /.*/, namespace: 'old' }, () => ({
                  // What the broker asks of its persistence since BASE, as BASE behaved: its
                  // SUBACK went without waiting for the commit.
                  contents: `${oldPersist}\n(Persistence.prototype as unknown as { holdUntilCommit(): void }).holdUntilCommit = () => {};\n`,
                  loader: 'ts',
                  resolveDir: SRC,
                }));
              },
            },
          ],
  });
  return ((await import(pathToFileURL(out).href)) as { Broker: BrokerCtor }).Broker;
}

async function start(B: BrokerCtor, dir: string): Promise<{ broker: BrokerClass; port: number }> {
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
async function scenario(broker: BrokerClass, port: number): Promise<void> {
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
  await p.disconnect();
  await conns(0);

  // s1 takes its queue: acknowledges the QoS 1 message, receives the first QoS 2 one (PUBREC),
  // and leaves the second one sent but unacknowledged.
  const back = (await RawClient.connect(port, { clientId: 's1', clean: false })).client;
  const got = [await back.expect('publish'), await back.expect('publish'), await back.expect('publish')];
  expect(got.map((g) => g.topic)).toEqual(['d/a', 'd/b', 'd/c']);
  back.send({ type: 'puback', packetId: got[0].packetId as number });
  back.send({ type: 'pubrec', packetId: got[1].packetId as number });
  await back.expect('pubrel');
  await until('s1 acknowledged', () => (broker.sessions.get('s1')?.inflightCount ?? 0) === 2);
  back.close();
  await conns(0);
  await until('all on disk', () => broker.persist?.unsynced === false);
}

const run = OLD === undefined ? describe.skip : describe;
if (OLD === undefined)
  console.warn(`issue 17.3 split test skipped: git cannot show ${BASE} (a shallow clone?)`);

run('issue 17.3: persist.ts split, byte-identical files', () => {
  it('writes the same log and snapshots as the one-file persist.ts, and each recovers the other', async () => {
    // Stored times (session ends, message expiry, will due times) must not depend on when each runs.
    vi.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000);
    try {
      const Old = await bundle('old', OLD);
      const New = await bundle('new', undefined);
      const files: Record<string, Record<string, Buffer>> = {};
      for (const [name, B] of [
        ['old', Old],
        ['new', New],
      ] as const) {
        const dir = path.join(tmp, name);
        const { broker, port } = await start(B, dir);
        await scenario(broker, port);
        const log = fs.readFileSync(path.join(dir, 'broker-lite.db'));
        await broker.close();
        const snap = fs.readFileSync(path.join(dir, 'broker-lite.db'));
        files[name] = { log, snap };
        // Recovery of each log by the same code and by the other one: the snapshot written at
        // start (of the recovered state) and again at close.
        for (const [reader, R] of [
          ['old', Old],
          ['new', New],
        ] as const) {
          const rdir = path.join(tmp, `${name}-read-by-${reader}`);
          fs.mkdirSync(rdir);
          fs.writeFileSync(path.join(rdir, 'broker-lite.db'), log);
          const r = await start(R, rdir);
          files[name][`recovered-by-${reader}`] = fs.readFileSync(path.join(rdir, 'broker-lite.db'));
          expect(r.broker.sessions.get('s1')?.inflightCount).toBe(2);
          await r.broker.close();
          files[name][`closed-by-${reader}`] = fs.readFileSync(path.join(rdir, 'broker-lite.db'));
        }
      }
      // What the scenario must have written: every kind of record, some of them several times.
      expect(files.old.log.length).toBeGreaterThan(600);
      // Issue 18.4 changed what the log holds between snapshots (queue entries encoded at the
      // commit, so one settled before it is never written), not the records: the log may differ,
      // everything written from the state (snapshots) is the same bytes, and each code recovers
      // the other's log to the same state.
      for (const k of Object.keys(files.old))
        if (k !== 'log') expect(files.new[k].equals(files.old[k]), k).toBe(true);
      // The recovered state is the state that was stored.
      expect(files.old['recovered-by-new'].equals(files.old.snap)).toBe(true);
      expect(files.new['recovered-by-old'].equals(files.new.snap)).toBe(true);
    } finally {
      vi.restoreAllMocks();
    }
  }, 60_000);
});
