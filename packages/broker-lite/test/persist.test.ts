import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { RawClient, startBroker, text } from './helpers/raw-client.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'broker-lite-persist-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('persistence across a clean restart', () => {
  it('keeps retained messages, persistent sessions, their subscriptions and queued QoS 1/2 messages', async () => {
    const dir = tmpDir();
    const a = await startBroker({ persistenceDir: dir });
    const s = (await RawClient.connect(a.port, { clientId: 'durable', clean: false })).client;
    await s.subscribe('d/#', 2);
    await s.disconnect();
    const s5 = (
      await RawClient.connect(a.port, {
        clientId: 'durable5',
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 3600 },
      })
    ).client;
    s5.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: 'd/#', qos: 1 }],
      properties: { subscriptionIdentifier: 42 },
    });
    await s5.expect('suback');
    await s5.disconnect();
    const pub = (await RawClient.connect(a.port, { clientId: 'p' })).client;
    pub.publish('d/retained', 'kept', 1, true, 1);
    await pub.expect('puback');
    pub.publish('d/q1', 'one', 1, false, 2);
    await pub.expect('puback');
    pub.publish('d/q2', 'two', 2, false, 3);
    await pub.expect('pubrec');
    pub.send({ type: 'pubrel', packetId: 3 });
    await pub.expect('pubcomp');
    pub.publish('d/q0', 'zero', 0); // not queued for offline sessions
    pub.close();
    await a.close();

    const b = await startBroker({ persistenceDir: dir });
    try {
      const back = await RawClient.connect(b.port, { clientId: 'durable', clean: false });
      expect(back.connack.sessionPresent).toBe(true);
      const got: string[] = [];
      for (let i = 0; i < 3; i++) {
        const p = await back.client.expect('publish');
        got.push(`${p.topic}=${text(p)}`);
        if (p.qos === 1) back.client.send({ type: 'puback', packetId: p.packetId as number });
        if (p.qos === 2) {
          back.client.send({ type: 'pubrec', packetId: p.packetId as number });
          await back.client.expect('pubrel');
          back.client.send({ type: 'pubcomp', packetId: p.packetId as number });
        }
      }
      expect(got).toEqual(['d/retained=kept', 'd/q1=one', 'd/q2=two']);
      expect(await back.client.silent()).toBe(true);
      const back5 = await RawClient.connect(b.port, {
        clientId: 'durable5',
        protocolVersion: 5,
        clean: false,
        properties: { sessionExpiryInterval: 3600 },
      });
      expect(back5.connack.sessionPresent).toBe(true);
      const m = await back5.client.expect('publish');
      expect(m.properties?.subscriptionIdentifiers).toEqual([42]);
      // the subscription itself survived: a new message is routed
      const p2 = (await RawClient.connect(b.port, { clientId: 'p2' })).client;
      const fresh = await RawClient.connect(b.port, { clientId: 'fresh' });
      await fresh.client.subscribe('d/retained', 0);
      expect(text(await fresh.client.expect('publish'))).toBe('kept');
      p2.publish('d/new', 'new', 0);
      let sawNew = false;
      for (let i = 0; i < 4 && !sawNew; i++) {
        const x = await back.client.expect('publish');
        sawNew = x.topic === 'd/new';
      }
      expect(sawNew).toBe(true);
      for (const c of [back.client, back5.client, p2, fresh.client]) c.close();
    } finally {
      await b.close();
    }
  });

  it('acknowledged messages are on disk first, with one fsync for many messages (group commit)', async () => {
    const dir = tmpDir();
    const a = await startBroker({ persistenceDir: dir });
    try {
      const s = (await RawClient.connect(a.port, { clientId: 'gc-sub', clean: false })).client;
      await s.subscribe('gc/#', 1);
      await s.disconnect();
      const persist = a.broker.persist;
      if (persist === null) throw new Error('persistence off');
      const before = persist.syncs;
      const pub = (await RawClient.connect(a.port, { clientId: 'gc-pub' })).client;
      const N = 500;
      for (let i = 1; i <= N; i++) pub.publish('gc/t', String(i), 1, false, i);
      for (let i = 1; i <= N; i++) expect((await pub.expect('puback')).packetId).toBe(i);
      const syncs = persist.syncs - before;
      expect(syncs).toBeGreaterThan(0);
      expect(syncs).toBeLessThan(N / 5);
      // every acked message is in the file now
      const file = fs.readFileSync(path.join(dir, 'broker-lite.db'));
      expect(file.includes(Buffer.from('gc/t'))).toBe(true);
      pub.close();
    } finally {
      await a.close();
    }
  });

  it('compacts the log into a snapshot every autosave interval', async () => {
    const dir = tmpDir();
    const a = await startBroker({ persistenceDir: dir, autosaveIntervalSeconds: 1 });
    try {
      const file = path.join(dir, 'broker-lite.db');
      const pub = (await RawClient.connect(a.port, { clientId: 'cmp' })).client;
      const payload = new Uint8Array(1000);
      for (let i = 1; i <= 200; i++) pub.publish(`cmp/${i}`, payload, 1, true, i);
      for (let i = 1; i <= 200; i++) await pub.expect('puback');
      const grown = fs.statSync(file).size;
      expect(grown).toBeGreaterThan(200_000);
      for (let i = 1; i <= 200; i++) pub.publish(`cmp/${i}`, '', 1, true, i);
      for (let i = 1; i <= 200; i++) await pub.expect('puback');
      // the next autosave rewrites the file with the live state only: no retained messages left
      const until = Date.now() + 4000;
      while (fs.statSync(file).size > 10_000 && Date.now() < until)
        await new Promise((r) => setTimeout(r, 100));
      expect(fs.statSync(file).size).toBeLessThan(10_000);
      pub.close();
    } finally {
      await a.close();
    }
  });

  it('recovers from a torn last record: the tail is cut, the rest is kept', async () => {
    const dir = tmpDir();
    const a = await startBroker({ persistenceDir: dir });
    const pub = (await RawClient.connect(a.port, { clientId: 'tp' })).client;
    pub.publish('torn/a', 'A', 1, true, 1);
    await pub.expect('puback');
    pub.close();
    await a.close();
    const file = path.join(dir, 'broker-lite.db');
    const size = fs.statSync(file).size;
    // half a record: a length saying 100 bytes, a CRC, 3 bytes of body
    fs.appendFileSync(file, Buffer.from([100, 0, 0, 0, 1, 2, 3, 4, 11, 0, 0]));
    const b = await startBroker({ persistenceDir: dir });
    try {
      expect(b.logs.some((l) => l.message.includes('torn or corrupt tail'))).toBe(true);
      const s = (await RawClient.connect(b.port, { clientId: 'ts' })).client;
      await s.subscribe('torn/#', 0);
      expect(text(await s.expect('publish'))).toBe('A');
      s.close();
      expect(fs.statSync(file).size).toBeGreaterThan(0);
      expect(fs.statSync(file).size).toBeLessThanOrEqual(size + 11);
    } finally {
      await b.close();
    }
  });

  it('a corrupt record (bad CRC) stops the replay there', async () => {
    const dir = tmpDir();
    const a = await startBroker({ persistenceDir: dir });
    const pub = (await RawClient.connect(a.port, { clientId: 'cp' })).client;
    pub.publish('crc/a', 'A', 0, true);
    pub.publish('crc/b', 'B', 1, true, 2);
    await pub.expect('puback');
    pub.close();
    await a.close();
    const file = path.join(dir, 'broker-lite.db');
    const buf = fs.readFileSync(file);
    const at = buf.lastIndexOf(Buffer.from('crc/b'));
    buf[at + 1] ^= 0xff; // flip a byte inside the last record
    fs.writeFileSync(file, buf);
    const b = await startBroker({ persistenceDir: dir });
    try {
      expect(b.broker.retain.get('crc/a')).toBeDefined();
      expect(b.broker.retain.get('crc/b')).toBeUndefined();
    } finally {
      await b.close();
    }
  });
});

const CHILD = `
const { Broker } = await import('@mqtt-edge/broker-lite');
const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }], persistenceDir: process.env.DIR, sysInterval: 0 });
await b.listen();
console.log('PORT ' + b.addresses[0].port);
`;

function spawnBroker(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
    cwd: ROOT,
    env: { ...process.env, DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('exit', (code) => reject(new Error(`broker exited ${code}: ${err}`)));
  });
}

describe('kill -9 under QoS 1 load', () => {
  it('every message the broker acknowledged is delivered after the restart', async () => {
    const dir = tmpDir();
    const first = await spawnBroker(dir);
    let child = first.child;
    try {
      // a persistent subscriber, online but not acking: 20 in flight, the rest queued (and the
      // publisher held back at max_queued_messages), so the kill lands with a full queue
      const sub = (await RawClient.connect(first.port, { clientId: 'k9-sub', clean: false })).client;
      await sub.subscribe('k9/#', 1);
      const received = new Set<string>();
      const drain = async (c: RawClient, quietMs: number, ack: boolean): Promise<void> => {
        for (;;) {
          let p: Awaited<ReturnType<RawClient['next']>>;
          try {
            p = await c.next(quietMs);
          } catch {
            return;
          }
          if (p === null) return;
          if (p.type === 'publish') {
            received.add(text(p));
            if (ack) c.send({ type: 'puback', packetId: p.packetId as number });
          }
        }
      };
      const subDone = drain(sub, 60_000, false);
      const pub = (await RawClient.connect(first.port, { clientId: 'k9-pub' })).client;
      const acked = new Set<string>();
      let next = 1;
      const send = (): void => {
        const n = next++;
        pub.publish('k9/t', `m${n}`, 1, false, (n % 60_000) + 1);
      };
      const pubDone = (async () => {
        for (let i = 0; i < 50; i++) send();
        for (;;) {
          const p = await pub.next(60_000).catch(() => null);
          if (p === null) return;
          if (p.type === 'puback') {
            acked.add(`m${p.packetId - 1 + Math.floor((next - 1) / 60_000) * 60_000}`);
            if (next < 50_000) send();
          }
        }
      })();
      // let the load run, then kill -9 in the middle of it
      const until = Date.now() + 10_000;
      while (acked.size < 800 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGKILL');
      await Promise.all([pubDone, subDone]);
      expect(acked.size).toBeGreaterThanOrEqual(800);
      const beforeKill = received.size;
      expect(beforeKill).toBeLessThan(acked.size);

      const second = await spawnBroker(dir);
      child = second.child;
      const back = await RawClient.connect(second.port, { clientId: 'k9-sub', clean: false });
      expect(back.connack.sessionPresent).toBe(true);
      await drain(back.client, 1500, true);
      const missing = [...acked].filter((m) => !received.has(m));
      expect(missing).toEqual([]);
      expect(received.size).toBeGreaterThan(beforeKill);
      back.client.close();
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});
