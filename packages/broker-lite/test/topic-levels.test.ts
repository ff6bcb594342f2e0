/**
 * Issue 12.3: topic names and filters deeper than max_topic_levels (default 200, as Mosquitto)
 * are refused: PUBLISH (5.0 DISCONNECT 0x90), will (5.0 CONNACK 0x90), SUBSCRIBE and
 * UNSUBSCRIBE per filter (SUBACK 0x8F / 3.1.1 0x80, UNSUBACK 0x8F), and at load from
 * persistence (dropped with a log line, not rebuilt).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encode } from '@mqtt-edge/codec';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { buildBrokerOptions } from '../src/config-build.ts';
import { BrokerProcess } from './helpers/broker-process.ts';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const deep = (levels: number, level = 'a'): string => Array.from({ length: levels }, () => level).join('/');
/** The SUBSCRIBE: 16 filters of 32,702 levels, about 1 MB. */
const HOSTILE_FILTERS = Array.from(
  { length: 16 },
  (_, i) => `${String.fromCharCode(0x61 + i)}/${deep(32_701, '+')}`,
);

let tb: TestBroker;
let bystander: RawClient;
beforeAll(async () => {
  tb = await startBroker();
  bystander = (await RawClient.connect(tb.port, { clientId: 'bystander' })).client;
  expect(await bystander.subscribe('#', 0)).toEqual([0]);
});
afterAll(async () => {
  bystander.close();
  await tb.close();
});

async function stillServed(tag: string): Promise<void> {
  const p = (await RawClient.connect(tb.port, { clientId: `check-${tag}` })).client;
  p.publish('alive', tag, 0);
  let m = await bystander.expect('publish');
  while (m.topic !== 'alive') m = await bystander.expect('publish');
  expect(text(m)).toBe(tag);
  p.close();
}

describe('issue 12.3: SUBSCRIBE and UNSUBSCRIBE, per filter', () => {
  it('default 200 levels: 200 pass, 201 get SUBACK 0x80 (3.1.1) and are not subscribed', async () => {
    expect(tb.broker.options.maxTopicLevels).toBe(200);
    const c = (await RawClient.connect(tb.port, { clientId: 's311' })).client;
    const before = tb.broker.router.index.size;
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: deep(200), qos: 1 },
        { topicFilter: deep(201), qos: 1 },
        { topicFilter: 'ok/#', qos: 0 },
      ],
    });
    expect((await c.expect('suback')).reasonCodes).toEqual([1, 0x80, 0]);
    expect(tb.broker.router.index.size).toBe(before + 2);
    c.close();
  });

  it('the 1 MB SUBSCRIBE of 16 filters x 32,702 levels: 0x8F each (5.0), nothing indexed, the connection kept', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 's5', protocolVersion: 5 })).client;
    const before = tb.broker.router.index.size;
    const sub = encode(
      {
        type: 'subscribe',
        packetId: 7,
        subscriptions: HOSTILE_FILTERS.map((topicFilter) => ({ topicFilter, qos: 0 as const })),
      },
      5,
    );
    expect(sub.length).toBeGreaterThan(1_000_000);
    c.sendBytes(sub);
    const ack = await c.expect('suback');
    expect(ack.reasonCodes).toEqual(HOSTILE_FILTERS.map(() => 0x8f));
    expect(tb.broker.router.index.size).toBe(before);
    expect(tb.logs.some((l) => /max_topic_levels/.test(l.message) && l.fields?.clientId === 's5')).toBe(true);
    // UNSUBSCRIBE: the same filters are 0x8F too (nothing could have been subscribed)
    c.send({ type: 'unsubscribe', packetId: 8, topicFilters: [HOSTILE_FILTERS[0], 'never/subscribed'] });
    expect((await c.expect('unsuback')).reasonCodes).toEqual([0x8f, 0x11]);
    c.close();
    await stillServed('sub5');
  });

  it('3.1.1 UNSUBSCRIBE of a deep filter is acknowledged (3.1.1 UNSUBACK has no codes)', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 'u311' })).client;
    c.send({ type: 'unsubscribe', packetId: 3, topicFilters: [deep(32_768)] });
    expect((await c.expect('unsuback')).packetId).toBe(3);
    c.close();
  });
});

describe('issue 12.3: PUBLISH and will topic names', () => {
  it('a 32,768-level PUBLISH: 5.0 DISCONNECT 0x90, 3.1.1 closed; not routed, not retained', async () => {
    const c5 = (await RawClient.connect(tb.port, { clientId: 'p5', protocolVersion: 5 })).client;
    c5.publish(deep(32_768), 'x', 1, true, 1);
    expect((await c5.expect('disconnect')).reasonCode).toBe(0x90);
    await c5.closed;
    const c4 = (await RawClient.connect(tb.port, { clientId: 'p4' })).client;
    c4.publish(deep(201), 'x', 0, true);
    await c4.closed;
    expect(tb.broker.stats().retained).toBe(0);
    await stillServed('pub');
    // 200 levels are a topic like any other
    const ok = (await RawClient.connect(tb.port, { clientId: 'p200' })).client;
    ok.publish(deep(200), 'fine', 1, false, 2);
    expect((await ok.expect('puback')).packetId).toBe(2);
    ok.close();
  });

  it('a will topic deeper than the limit: 5.0 CONNACK 0x90, 3.1.1 closed without CONNACK', async () => {
    const will = { topic: deep(201), payload: new Uint8Array(0), qos: 0 as const, retain: false };
    const c5 = await RawClient.open(tb.port);
    expect((await c5.handshake({ clientId: 'w5', protocolVersion: 5, will })).reasonCode).toBe(0x90);
    await c5.closed;
    const c4 = await RawClient.open(tb.port);
    await expect(c4.handshake({ clientId: 'w4', will })).rejects.toThrow(/close/);
    const fine = await RawClient.connect(tb.port, { clientId: 'w200', will: { ...will, topic: deep(200) } });
    expect(fine.connack.reasonCode).toBe(0);
    fine.client.close();
  });
});

describe('issue 12.3: max_topic_levels', () => {
  it('is a config key (0 = no limit) and applies to names and filters alike', async () => {
    const cfg = parseConfig(
      'listener 0 127.0.0.1\nallow_anonymous true\nmax_topic_levels 3\n',
      '/tmp/x.conf',
    );
    expect(cfg.maxTopicLevels).toBe(3);
    const { options } = await buildBrokerOptions(cfg, { log() {} });
    expect(options.maxTopicLevels).toBe(3);
    expect(parseConfig('max_topic_levels 0\n', '/tmp/x.conf').maxTopicLevels).toBe(0);
    expect(() => parseConfig('max_topic_levels -1\n', '/tmp/x.conf')).toThrow(/out of range/);
    const small = await startBroker(options);
    try {
      const c = (await RawClient.connect(small.port, { clientId: 'c' })).client;
      expect(await c.subscribe('a/b/c', 0)).toEqual([0]);
      expect(await c.subscribe('a/b/c/d', 0, 2)).toEqual([0x80]);
      c.publish('a/b/c/d', 'x');
      await c.closed;
    } finally {
      await small.close();
    }
  });
});

describe('issue 12.3: deep topics in persistence from an older version', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('are dropped at load with a log line, not rebuilt (retained, subscriptions, wills)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-levels-'));
    dirs.push(dir);
    // an "older version": no limit on levels
    const old = await startBroker({ persistenceDir: dir, maxTopicLevels: 0 });
    const s = (await RawClient.connect(old.port, { clientId: 'durable', clean: false })).client;
    expect(await s.subscribe(deep(5000), 1)).toEqual([1]);
    expect(await s.subscribe('shallow/#', 1, 2)).toEqual([1]);
    s.close();
    const w = (
      await RawClient.connect(old.port, {
        clientId: 'willer',
        protocolVersion: 5,
        properties: { sessionExpiryInterval: 600 },
        will: {
          topic: deep(300),
          payload: Buffer.from('w'),
          qos: 0,
          retain: false,
          properties: { willDelayInterval: 600 },
        },
      })
    ).client;
    const p = (await RawClient.connect(old.port, { clientId: 'p' })).client;
    p.publish(deep(10_000), 'deep', 1, true, 1);
    await p.expect('puback');
    p.publish('shallow/t', 'kept', 1, true, 2);
    await p.expect('puback');
    p.close();
    w.close(); // the will waits out its delay: stored
    await vi.waitFor(() => expect(old.broker.wills.size).toBe(1));
    await old.close();

    const b = await startBroker({ persistenceDir: dir });
    try {
      const dropped = b.logs.filter((l) => /max_topic_levels/.test(l.message));
      expect(dropped.map((l) => l.fields?.what).sort()).toEqual(['retained message', 'subscription', 'will']);
      expect(b.broker.stats().retained).toBe(1);
      expect(b.broker.router.index.size).toBe(1);
      expect(b.broker.wills.size).toBe(0);
      const back = await RawClient.connect(b.port, { clientId: 'durable', clean: false });
      expect(back.connack.sessionPresent).toBe(true);
      const m = await back.client.expect('publish');
      expect(m.topic).toBe('shallow/t');
      back.client.close();
    } finally {
      await b.close();
    }
    // and the next start finds nothing deep left to drop: the snapshot after load left it out
    const c = await startBroker({ persistenceDir: dir });
    try {
      expect(c.logs.filter((l) => /max_topic_levels/.test(l.message))).toEqual([]);
    } finally {
      await c.close();
    }
  });
});

describe('issue 12.3: what the 1 MB SUBSCRIBE costs a broker process', () => {
  it('RSS grows by under 16 MB (measured 6.4 MB; before: +74 MB, the filters built into the index)', async () => {
    const bp = await BrokerProcess.startText('');
    try {
      const c = (await RawClient.connect(bp.port, { clientId: 'c', protocolVersion: 5 })).client;
      const base = bp.memory().rss;
      bp.resetPeak();
      c.send({
        type: 'subscribe',
        packetId: 1,
        subscriptions: HOSTILE_FILTERS.map((topicFilter) => ({ topicFilter, qos: 0 as const })),
      });
      expect((await c.expect('suback', 10_000)).reasonCodes).toEqual(HOSTILE_FILTERS.map(() => 0x8f));
      expect(bp.memory().peak - base).toBeLessThan(16 * 1024 * 1024);
      c.close();
    } finally {
      expect((await bp.stop()).code).toBe(0);
    }
  });
});
