/**
 * Issue 18.4: what broker-lite's persistence writes per message (flash wear). A message every
 * persistent subscriber acknowledged before the group commit is never written; a removal (and a
 * QoS 1 "sent" mark) rides in the next commit or goes to the file without an fdatasync of its
 * own: losing one in a power cut only delivers a QoS 1 message again, which QoS 1 allows.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { BrokerProcess } from './helpers/broker-process.ts';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'issue18-flash-'));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function broker(dir: string, windowMs?: number): Promise<TestBroker> {
  const tb = await startBroker({
    persistenceDir: dir,
    ...(windowMs === undefined ? {} : { persistenceCommitWindowMs: windowMs }),
  });
  cleanup.unshift(() => tb.close());
  return tb;
}

/** A PINGREQ round trip: the broker handled everything the client sent before it. */
async function ping(c: RawClient): Promise<void> {
  c.send({ type: 'pingreq' });
  await c.expect('pingresp');
}

const logSize = (dir: string) => fs.statSync(path.join(dir, 'broker-lite.db')).size;

/** Waits (bounded) until the log grew past `size`: the write of a record without its own fdatasync. */
async function grewPast(dir: string, size: number): Promise<number> {
  const until = Date.now() + 3000;
  while (logSize(dir) <= size && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  return logSize(dir);
}

describe('issue 18.4: broker-lite persistence writes per message', () => {
  it('issue 18.4: a message every persistent subscriber acknowledged within the commit window is never written, and its PUBACK does not wait out the window', async () => {
    const dir = tempDir();
    const tb = await broker(dir, 2000);
    const persist = tb.broker.persist;
    if (persist === null) throw new Error('persistence off');
    const sub = (await RawClient.connect(tb.port, { clientId: 'f-sub', clean: false })).client;
    await sub.subscribe('f/#', 1);
    const pub = (await RawClient.connect(tb.port, { clientId: 'f-pub', clean: false })).client;
    // the sessions' own records are committed: count from here
    const until = Date.now() + 3000;
    while (persist.unsynced && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    expect(persist.unsynced).toBe(false);
    const size0 = logSize(dir);
    const syncs0 = persist.syncs;
    const t0 = performance.now();
    const n = 20;
    for (let i = 1; i <= n; i++)
      pub.publish('f/dev1/temperature', `{"t":${20 + i / 10},"seq":${i}}`, 1, false, i);
    // the subscriber acknowledges each at once (well inside the window)
    for (let i = 1; i <= n; i++) {
      const m = await sub.expect('publish');
      expect(text(m)).toContain(`"seq":${i}}`);
      sub.send({ type: 'puback', packetId: m.packetId as number });
    }
    for (let i = 1; i <= n; i++) expect((await pub.expect('puback', 5000)).packetId).toBe(i);
    // nothing was left to write: the window ended as soon as the last entry was settled
    expect(performance.now() - t0).toBeLessThan(1500);
    // the commit that released those PUBACKs found nothing left to write
    await ping(sub);
    expect(persist.unsynced).toBe(false);
    expect(logSize(dir) - size0).toBe(0);
    expect(persist.syncs - syncs0).toBe(0);
    pub.close();
    sub.close();
  });

  it('issue 18.4: a removal record takes no fdatasync of its own', async () => {
    const dir = tempDir();
    const tb = await broker(dir, 0);
    const persist = tb.broker.persist;
    if (persist === null) throw new Error('persistence off');
    const sub = (await RawClient.connect(tb.port, { clientId: 'r-sub', clean: false })).client;
    await sub.subscribe('r/#', 1);
    const pub = (await RawClient.connect(tb.port, { clientId: 'r-pub' })).client;
    for (let i = 1; i <= 5; i++) {
      pub.publish('r/t', `m${i}`, 1, false, i);
      // the message is on disk before the publisher hears of it (one fdatasync)
      expect((await pub.expect('puback')).packetId).toBe(i);
      const m = await sub.expect('publish');
      const size = logSize(dir);
      const syncs = persist.syncs;
      // the subscriber's PUBACK: a removal record, written to the file but not synced
      sub.send({ type: 'puback', packetId: m.packetId as number });
      expect(await grewPast(dir, size)).toBeGreaterThan(size);
      await ping(sub);
      expect(persist.syncs).toBe(syncs);
    }
    pub.close();
    sub.close();
  });

  it('issue 18.4: a message an offline subscriber waits for is on disk before its PUBACK, whatever the window', async () => {
    const dir = tempDir();
    const tb = await broker(dir, 400);
    const off = (await RawClient.connect(tb.port, { clientId: 'o-sub', clean: false })).client;
    await off.subscribe('o/#', 1);
    await off.disconnect();
    const pub = (await RawClient.connect(tb.port, { clientId: 'o-pub' })).client;
    const size0 = logSize(dir);
    const t0 = performance.now();
    pub.publish('o/t', 'kept', 1, false, 1);
    await pub.expect('puback');
    // it waited for the window's commit
    expect(performance.now() - t0).toBeGreaterThanOrEqual(390);
    // written and synced before the PUBACK left
    expect(logSize(dir)).toBeGreaterThan(size0);
    expect(fs.readFileSync(path.join(dir, 'broker-lite.db')).includes('kept')).toBe(true);
    pub.close();
  });

  it('issue 18.4: the default persistence_commit_window is 50 ms', () => {
    const parse = (t: string) => parseConfig(t, path.join(os.tmpdir(), 'f.conf'));
    expect(parse('listener 1883\n').persistenceCommitWindowMs).toBe(50);
    expect(parse('persistence_commit_window 0\n').persistenceCommitWindowMs).toBe(0);
  });
});

/** The CLI with persistence and its defaults (the 50 ms window included), as a user runs it. */
async function brokerProcess(dir: string): Promise<BrokerProcess> {
  const p = await BrokerProcess.startText(`persistence true\npersistence_location ${dir}/`);
  cleanup.unshift(async () => {
    if (p.running) await p.stop('SIGKILL');
  });
  return p;
}

describe('issue 18.4: kill -9 with the default commit window', () => {
  it('issue 18.4: kill -9 loses no message the broker acknowledged, to an online or an offline subscriber', async () => {
    const dir = tempDir();
    const first = await brokerProcess(dir);
    const off = (await RawClient.connect(first.port, { clientId: 'k-off', clean: false })).client;
    await off.subscribe('k/#', 1);
    await off.disconnect();
    const on = (await RawClient.connect(first.port, { clientId: 'k-on', clean: false })).client;
    await on.subscribe('k/#', 1);
    const pub = (await RawClient.connect(first.port, { clientId: 'k-pub' })).client;
    const n = 30;
    const unacked = new Set<string>();
    for (let i = 1; i <= n; i++) pub.publish('k/t', `m${i}`, 1, false, i);
    for (let i = 1; i <= n; i++) {
      const m = await on.expect('publish');
      // the online subscriber acknowledges the odd ones only
      if (i % 2 === 1) on.send({ type: 'puback', packetId: m.packetId as number });
      else unacked.add(text(m));
    }
    for (let i = 1; i <= n; i++) expect((await pub.expect('puback', 5000)).packetId).toBe(i);
    await first.stop('SIGKILL');
    await Promise.all([on.closed, pub.closed]);

    const second = await brokerProcess(dir);
    const backOff = await RawClient.connect(second.port, { clientId: 'k-off', clean: false });
    expect(backOff.connack.sessionPresent).toBe(true);
    const got: string[] = [];
    for (let i = 1; i <= n; i++) {
      const m = await backOff.client.expect('publish', 5000);
      got.push(text(m));
      backOff.client.send({ type: 'puback', packetId: m.packetId as number });
    }
    expect(got).toEqual(Array.from({ length: n }, (_, i) => `m${i + 1}`));
    const backOn = await RawClient.connect(second.port, { clientId: 'k-on', clean: false });
    const again = new Set<string>();
    for (;;) {
      const p = await backOn.client.next(1000).catch(() => null);
      if (p === null || p.type !== 'publish') break;
      again.add(text(p));
      backOn.client.send({ type: 'puback', packetId: p.packetId as number });
    }
    // every message it had not acknowledged comes again (acknowledged ones may: QoS 1)
    for (const m of unacked) expect(again.has(m)).toBe(true);
    backOff.client.close();
    backOn.client.close();
  }, 30_000);
});

describe('issue 18.4: QoS 2 exactly once with the commit window', () => {
  it('issue 18.4: a PUBCOMP leaves only once the released id is on disk: kill -9 right after it does not swallow the next message under that id', async () => {
    const dir = tempDir();
    const first = await brokerProcess(dir);
    const sub = (await RawClient.connect(first.port, { clientId: 'q2-sub', clean: false })).client;
    await sub.subscribe('q/#', 1);
    await sub.disconnect();
    const pub = (await RawClient.connect(first.port, { clientId: 'q2-pub', clean: false })).client;
    const publish2 = async (c: RawClient, payload: string): Promise<void> => {
      c.publish('q/t', payload, 2, false, 7);
      expect((await c.expect('pubrec', 5000)).packetId).toBe(7);
      c.send({ type: 'pubrel', packetId: 7 });
      expect((await c.expect('pubcomp', 5000)).packetId).toBe(7);
    };
    await publish2(pub, 'first');
    // the id is free for the client now: a crash must not bring it back as "awaiting PUBREL"
    await first.stop('SIGKILL');
    await pub.closed;

    const second = await brokerProcess(dir);
    const back = await RawClient.connect(second.port, { clientId: 'q2-pub', clean: false });
    expect(back.connack.sessionPresent).toBe(true);
    await publish2(back.client, 'second');
    back.client.close();
    const s = (await RawClient.connect(second.port, { clientId: 'q2-sub', clean: false })).client;
    const got: string[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await s.expect('publish', 5000);
      got.push(text(m));
      s.send({ type: 'puback', packetId: m.packetId as number });
    }
    expect(got).toEqual(['first', 'second']);
    s.close();
  }, 30_000);
});
