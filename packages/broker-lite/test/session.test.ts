import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startBroker();
});
afterAll(() => tb.close());

describe('sessions', () => {
  it('3.1.1 clean session false keeps subscriptions and queues QoS 1/2 (not QoS 0) while offline', async () => {
    const s = await RawClient.connect(tb.port, { clientId: 'keep', clean: false });
    expect(s.connack.sessionPresent).toBe(false);
    await s.client.subscribe('keep/#', 2);
    await s.client.disconnect();
    const pub = (await RawClient.connect(tb.port, { clientId: 'keep-pub' })).client;
    pub.publish('keep/0', 'q0', 0);
    pub.publish('keep/1', 'q1', 1, false, 1);
    pub.publish('keep/2', 'q2', 2, false, 2);
    await pub.expect('puback');
    await pub.expect('pubrec');
    const back = await RawClient.connect(tb.port, { clientId: 'keep', clean: false });
    expect(back.connack.sessionPresent).toBe(true);
    const a = await back.client.expect('publish');
    const b = await back.client.expect('publish');
    expect([text(a), text(b)]).toEqual(['q1', 'q2']);
    expect(await back.client.silent()).toBe(true);
    back.client.close();
    // a clean session discards it
    const clean = await RawClient.connect(tb.port, { clientId: 'keep', clean: true });
    expect(clean.connack.sessionPresent).toBe(false);
    clean.client.close();
    pub.close();
  });

  it('5.0 session expiry: kept for the interval, then gone', async () => {
    const s = await RawClient.connect(tb.port, {
      clientId: 'expiring',
      protocolVersion: 5,
      clean: true,
      properties: { sessionExpiryInterval: 1 },
    });
    await s.client.subscribe('expiring/t', 1);
    await s.client.disconnect();
    const soon = await RawClient.connect(tb.port, {
      clientId: 'expiring',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 1 },
    });
    expect(soon.connack.sessionPresent).toBe(true);
    await soon.client.disconnect();
    // the broker's once-a-second sweep ends it after the interval
    const t0 = Date.now();
    while (tb.broker.sessions.has('expiring') && Date.now() - t0 < 5000)
      await new Promise((r) => setTimeout(r, 50));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(tb.broker.sessions.has('expiring')).toBe(false);
    const late = await RawClient.connect(tb.port, { clientId: 'expiring', protocolVersion: 5, clean: false });
    expect(late.connack.sessionPresent).toBe(false);
    late.client.close();
  });

  it('5.0 session expiry 0 at CONNECT ends the session at disconnect; DISCONNECT may not raise it from 0', async () => {
    const s = await RawClient.connect(tb.port, { clientId: 'zero', protocolVersion: 5, clean: false });
    s.client.send({ type: 'disconnect', properties: { sessionExpiryInterval: 30 } });
    expect((await s.client.expect('disconnect')).reasonCode).toBe(0x82);
    await s.client.closed;
    const again = await RawClient.connect(tb.port, { clientId: 'zero', protocolVersion: 5, clean: false });
    expect(again.connack.sessionPresent).toBe(false);
    again.client.close();
  });
});

describe('QoS 2 edge cases', () => {
  it('5.0: a PUBREC with an error code ends the flow; PUBREL for an unknown id gets PUBCOMP 0x92', async () => {
    const sub = (await RawClient.connect(tb.port, { clientId: 'q2e-sub', protocolVersion: 5 })).client;
    await sub.subscribe('q2e/t', 2);
    const pub = (await RawClient.connect(tb.port, { clientId: 'q2e-pub', protocolVersion: 5 })).client;
    pub.publish('q2e/t', 'refused', 2, false, 1);
    await pub.expect('pubrec');
    pub.send({ type: 'pubrel', packetId: 1 });
    await pub.expect('pubcomp');
    const m = await sub.expect('publish');
    sub.send({ type: 'pubrec', packetId: m.packetId as number, reasonCode: 0x80 });
    // no PUBREL follows a refused PUBREC; the next message flows normally
    pub.publish('q2e/t', 'next', 2, false, 2);
    const n = await sub.expect('publish');
    expect(text(n)).toBe('next');
    sub.send({ type: 'pubrel', packetId: 999 });
    expect(await sub.expect('pubcomp')).toMatchObject({ packetId: 999, reasonCode: 0x92 });
    pub.close();
    sub.close();
  });
});

describe('wills', () => {
  async function watcher(topic: string) {
    const w = (await RawClient.connect(tb.port, { clientId: `watch-${topic}` })).client;
    await w.subscribe(topic, 1);
    return w;
  }
  const will = (topic: string, extra = {}) => ({
    topic,
    payload: Buffer.from('gone'),
    qos: 1 as const,
    retain: false,
    ...extra,
  });

  it('is published when the connection drops', async () => {
    const w = await watcher('will/drop');
    const c = await RawClient.connect(tb.port, { clientId: 'w-drop', will: will('will/drop') });
    c.client.close();
    const m = await w.expect('publish');
    expect([m.topic, text(m)]).toEqual(['will/drop', 'gone']);
    w.close();
  });

  it('is not published after a normal DISCONNECT', async () => {
    const w = await watcher('will/normal');
    const c = await RawClient.connect(tb.port, { clientId: 'w-normal', will: will('will/normal') });
    await c.client.disconnect();
    expect(await w.silent(300)).toBe(true);
    w.close();
  });

  it('is published after DISCONNECT with reason 0x04 (5.0)', async () => {
    const w = await watcher('will/04');
    const c = await RawClient.connect(tb.port, {
      clientId: 'w-04',
      protocolVersion: 5,
      will: will('will/04'),
    });
    c.client.send({ type: 'disconnect', reasonCode: 0x04 });
    expect(text(await w.expect('publish'))).toBe('gone');
    w.close();
  });

  it('waits for the will delay, and is not sent if the client returns in time (5.0)', async () => {
    const w = await watcher('will/delay');
    const opts = {
      clientId: 'w-delay',
      protocolVersion: 5 as const,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: will('will/delay', { properties: { willDelayInterval: 1 } }),
    };
    const c = await RawClient.connect(tb.port, opts);
    c.client.close();
    await c.client.closed;
    const back = await RawClient.connect(tb.port, { ...opts, will: undefined });
    expect(back.connack.sessionPresent).toBe(true);
    expect(await w.silent(1500)).toBe(true);
    // dropped again, with a will this time, and not back: sent after about a second
    await back.client.disconnect();
    const c2 = await RawClient.connect(tb.port, opts);
    const t0 = Date.now();
    c2.client.close();
    await w.expect('publish', 4000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    w.close();
    const clean = await RawClient.connect(tb.port, { clientId: 'w-delay', clean: true });
    clean.client.close();
  });

  it('retained will is stored', async () => {
    const c = await RawClient.connect(tb.port, {
      clientId: 'w-ret',
      will: will('will/ret', { retain: true }),
    });
    c.client.close();
    await c.client.closed;
    await new Promise((r) => setTimeout(r, 50));
    const s = (await RawClient.connect(tb.port, { clientId: 'w-ret-sub' })).client;
    await s.subscribe('will/ret', 0);
    const m = await s.expect('publish');
    expect([text(m), m.retain]).toEqual(['gone', true]);
    s.close();
  });
});

describe('$SYS', () => {
  it('publishes broker statistics under $SYS/broker every sysInterval', async () => {
    const sysb = await startBroker({ sysInterval: 1 });
    try {
      const c = (await RawClient.connect(sysb.port, { clientId: 'sys' })).client;
      await c.subscribe('$SYS/broker/#', 0);
      const want = [
        'version',
        'uptime',
        'clients/connected',
        'clients/total',
        'messages/received',
        'bytes/sent',
        'subscriptions/count',
        'retained messages/count',
        'publish/messages/dropped',
      ];
      const topics = new Map<string, string>();
      const until = Date.now() + 5000;
      // the retained set arrives at once; the subscription count is refreshed within an interval
      while (
        Date.now() < until &&
        !(
          want.every((t) => topics.has(`$SYS/broker/${t}`)) &&
          topics.get('$SYS/broker/subscriptions/count') === '1'
        )
      ) {
        const p = await c.expect('publish', 2500);
        topics.set(p.topic, text(p));
      }
      for (const t of want) expect(topics.has(`$SYS/broker/${t}`), t).toBe(true);
      expect(topics.get('$SYS/broker/version')).toMatch(/broker-lite/);
      const subs = topics.get('$SYS/broker/subscriptions/count');
      expect(subs).toBe('1');
      c.close();
    } finally {
      await sysb.close();
    }
  });
});
