import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startBroker();
});
afterAll(() => tb.close());

const conn = (clientId: string, protocolVersion: 4 | 5 = 4, extra = {}) =>
  RawClient.connect(tb.port, { clientId, protocolVersion, ...extra }).then((r) => r.client);

describe('QoS flows', () => {
  it('QoS 0, 1 and 2 from publisher to subscriber with the full handshakes', async () => {
    const sub = await conn('q-sub');
    expect(await sub.subscribe('q/#', 2)).toEqual([2]);
    const pub = await conn('q-pub');
    pub.publish('q/0', 'zero', 0);
    pub.publish('q/1', 'one', 1, false, 11);
    expect(await pub.expect('puback')).toMatchObject({ packetId: 11 });
    pub.publish('q/2', 'two', 2, false, 12);
    expect(await pub.expect('pubrec')).toMatchObject({ packetId: 12 });
    pub.send({ type: 'pubrel', packetId: 12 });
    expect(await pub.expect('pubcomp')).toMatchObject({ packetId: 12 });

    const m0 = await sub.expect('publish');
    expect([m0.topic, text(m0), m0.qos]).toEqual(['q/0', 'zero', 0]);
    const m1 = await sub.expect('publish');
    expect([m1.topic, text(m1), m1.qos]).toEqual(['q/1', 'one', 1]);
    sub.send({ type: 'puback', packetId: m1.packetId as number });
    const m2 = await sub.expect('publish');
    expect([m2.topic, text(m2), m2.qos]).toEqual(['q/2', 'two', 2]);
    sub.send({ type: 'pubrec', packetId: m2.packetId as number });
    expect(await sub.expect('pubrel')).toMatchObject({ packetId: m2.packetId });
    sub.send({ type: 'pubcomp', packetId: m2.packetId as number });
    expect(await sub.silent()).toBe(true);
    pub.close();
    sub.close();
  });

  it('delivers a QoS 2 message once even when the publisher retransmits it before PUBREL', async () => {
    const sub = await conn('dup-sub');
    await sub.subscribe('dup/t', 2);
    const pub = await conn('dup-pub');
    pub.publish('dup/t', 'once', 2, false, 5);
    await pub.expect('pubrec');
    pub.send({
      type: 'publish',
      topic: 'dup/t',
      payload: Buffer.from('once'),
      qos: 2,
      retain: false,
      dup: true,
      packetId: 5,
    });
    await pub.expect('pubrec');
    pub.send({ type: 'pubrel', packetId: 5 });
    await pub.expect('pubcomp');
    const m = await sub.expect('publish');
    sub.send({ type: 'pubrec', packetId: m.packetId as number });
    await sub.expect('pubrel');
    sub.send({ type: 'pubcomp', packetId: m.packetId as number });
    expect(await sub.silent(300)).toBe(true);
    pub.close();
    sub.close();
  });

  it('downgrades to the subscription QoS', async () => {
    const sub = await conn('down-sub');
    await sub.subscribe('down/t', 1);
    const pub = await conn('down-pub');
    pub.publish('down/t', 'x', 2, false, 3);
    await pub.expect('pubrec');
    const m = await sub.expect('publish');
    expect(m.qos).toBe(1);
    pub.close();
    sub.close();
  });

  it('re-sends unacknowledged messages with DUP after a reconnect of a persistent session', async () => {
    const s1 = await conn('redeliver', 4, { clean: false });
    await s1.subscribe('rd/t', 1);
    const pub = await conn('rd-pub');
    pub.publish('rd/t', 'keep', 1, false, 9);
    await pub.expect('puback');
    const m = await s1.expect('publish');
    expect(m.dup).toBe(false);
    s1.close(); // no PUBACK
    await s1.closed;
    const again = await RawClient.connect(tb.port, { clientId: 'redeliver', clean: false });
    expect(again.connack.sessionPresent).toBe(true);
    const d = await again.client.expect('publish');
    expect([d.dup, d.packetId, text(d)]).toEqual([true, m.packetId, 'keep']);
    again.client.send({ type: 'puback', packetId: d.packetId as number });
    await again.client.disconnect();
    const clean = await RawClient.connect(tb.port, { clientId: 'redeliver', clean: true });
    clean.client.close();
    pub.close();
  });
});

describe('routing', () => {
  it('overlapping subscriptions deliver once, at the highest QoS (and every subscription id in 5.0)', async () => {
    const sub = await conn('ov-sub', 5);
    sub.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: 'ov/+', qos: 0 }],
      properties: { subscriptionIdentifier: 3 },
    });
    await sub.expect('suback');
    sub.send({
      type: 'subscribe',
      packetId: 2,
      subscriptions: [{ topicFilter: 'ov/#', qos: 1 }],
      properties: { subscriptionIdentifier: 4 },
    });
    await sub.expect('suback');
    const pub = await conn('ov-pub');
    pub.publish('ov/x', 'hi', 1, false, 1);
    const m = await sub.expect('publish');
    expect(m.qos).toBe(1);
    expect([...(m.properties?.subscriptionIdentifiers ?? [])].sort()).toEqual([3, 4]);
    sub.send({ type: 'puback', packetId: m.packetId as number });
    expect(await sub.silent()).toBe(true);
    pub.close();
    sub.close();
  });

  it('wildcards at the first level do not match $ topics; $SYS from clients is not routed', async () => {
    const all = await conn('dollar-all');
    await all.subscribe('#', 0);
    const dollar = await conn('dollar-d');
    await dollar.subscribe('$app/#', 0);
    const pub = await conn('dollar-pub');
    pub.publish('$app/x', 'd', 0);
    const m = await dollar.expect('publish');
    expect(m.topic).toBe('$app/x');
    expect(await all.silent()).toBe(true);
    const sys = await conn('dollar-sys');
    await sys.subscribe('$SYS/test/#', 0);
    pub.publish('$SYS/test/x', 'no', 0);
    expect(await sys.silent()).toBe(true);
    for (const c of [all, dollar, pub, sys]) c.close();
  });

  it('no local (5.0) keeps a client’s own messages from it', async () => {
    const c = await conn('nl', 5);
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: 'nl/t', qos: 0, noLocal: true }],
    });
    await c.expect('suback');
    const other = await conn('nl-other');
    c.publish('nl/t', 'mine', 0);
    expect(await c.silent()).toBe(true);
    other.publish('nl/t', 'theirs', 0);
    expect(text(await c.expect('publish'))).toBe('theirs');
    c.close();
    other.close();
  });

  it('shared subscriptions deliver each message to one member of the group', async () => {
    const members = await Promise.all([conn('sh-1', 5), conn('sh-2', 5), conn('sh-3', 4)]);
    for (const m of members) expect(await m.subscribe('$share/g/sh/#', 0)).toEqual([0]);
    const plain = await conn('sh-plain');
    await plain.subscribe('sh/#', 0);
    const pub = await conn('sh-pub');
    for (let i = 0; i < 30; i++) pub.publish('sh/t', String(i), 0);
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) seen.push(text(await plain.expect('publish')));
    const counts = await Promise.all(
      members.map(async (m) => {
        let n = 0;
        for (;;) {
          try {
            const p = await m.next(300);
            if (p?.type === 'publish') n++;
          } catch {
            return n;
          }
        }
      }),
    );
    expect(counts.reduce((a, b) => a + b, 0)).toBe(30);
    for (const n of counts) expect(n).toBeGreaterThan(0);
    expect(seen).toHaveLength(30);
    for (const c of [...members, plain, pub]) c.close();
  });

  it('passes user properties, response topic, correlation data and content type through', async () => {
    const sub = await conn('props-sub', 5);
    await sub.subscribe('props/t', 1);
    const pub = await conn('props-pub', 5);
    pub.send({
      type: 'publish',
      topic: 'props/t',
      payload: Buffer.from('req'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 2,
      properties: {
        userProperties: [
          ['a', '1'],
          ['a', ''],
          ['b', '2'],
        ],
        responseTopic: 'props/reply',
        correlationData: new Uint8Array([1, 2, 3]),
        contentType: 'text/plain',
        payloadFormatIndicator: true,
      },
    });
    await pub.expect('puback');
    const m = await sub.expect('publish');
    expect(m.properties?.userProperties).toEqual([
      ['a', '1'],
      ['a', ''],
      ['b', '2'],
    ]);
    expect(m.properties?.responseTopic).toBe('props/reply');
    expect([...(m.properties?.correlationData ?? [])]).toEqual([1, 2, 3]);
    expect(m.properties?.contentType).toBe('text/plain');
    expect(m.properties?.payloadFormatIndicator).toBe(true);
    pub.close();
    sub.close();
  });

  it('topic aliases from the client: set then use; an unknown alias is a protocol error', async () => {
    const sub = await conn('alias-sub');
    await sub.subscribe('alias/#', 0);
    const pub = await conn('alias-pub', 5);
    pub.send({
      type: 'publish',
      topic: 'alias/long/topic',
      payload: Buffer.from('1'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 2 },
    });
    pub.send({
      type: 'publish',
      topic: '',
      payload: Buffer.from('2'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 2 },
    });
    expect((await sub.expect('publish')).topic).toBe('alias/long/topic');
    const second = await sub.expect('publish');
    expect([second.topic, text(second)]).toEqual(['alias/long/topic', '2']);
    pub.send({
      type: 'publish',
      topic: '',
      payload: Buffer.from('3'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 3 },
    });
    expect((await pub.expect('disconnect')).reasonCode).toBe(0x82);
    const pub2 = await conn('alias-pub2', 5);
    pub2.send({
      type: 'publish',
      topic: 'alias/x',
      payload: Buffer.from('4'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 999 },
    });
    expect((await pub2.expect('disconnect')).reasonCode).toBe(0x94);
    sub.close();
  });

  it('message expiry: an expired queued message is not delivered, a live one carries the time left', async () => {
    const s1 = await conn('exp-sub', 5, { clean: true, properties: { sessionExpiryInterval: 60 } });
    await s1.subscribe('exp/t', 1);
    await s1.disconnect();
    const pub = await conn('exp-pub', 5);
    pub.send({
      type: 'publish',
      topic: 'exp/t',
      payload: Buffer.from('short'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 1,
      properties: { messageExpiryInterval: 1 },
    });
    pub.send({
      type: 'publish',
      topic: 'exp/t',
      payload: Buffer.from('long'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 2,
      properties: { messageExpiryInterval: 100 },
    });
    await pub.expect('puback');
    await pub.expect('puback');
    await new Promise((r) => setTimeout(r, 1100));
    const back = await RawClient.connect(tb.port, {
      clientId: 'exp-sub',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
    });
    expect(back.connack.sessionPresent).toBe(true);
    const m = await back.client.expect('publish');
    expect(text(m)).toBe('long');
    expect(m.properties?.messageExpiryInterval).toBeGreaterThan(90);
    expect(m.properties?.messageExpiryInterval).toBeLessThanOrEqual(100);
    back.client.close();
    pub.close();
  });

  it('respects the client’s receive maximum: no more QoS 1 messages in flight than it allows', async () => {
    const sub = await conn('rm-sub', 5, { properties: { receiveMaximum: 2 } });
    await sub.subscribe('rm/t', 1);
    const pub = await conn('rm-pub');
    for (let i = 1; i <= 5; i++) pub.publish('rm/t', String(i), 1, false, i);
    const first = [await sub.expect('publish'), await sub.expect('publish')];
    expect(await sub.silent(300)).toBe(true);
    sub.send({ type: 'puback', packetId: first[0].packetId as number });
    const third = await sub.expect('publish');
    expect(text(third)).toBe('3');
    expect(await sub.silent(200)).toBe(true);
    pub.close();
    sub.close();
  });

  it('does not send a packet larger than the client’s maximum packet size (dropped and counted)', async () => {
    const sub = await conn('mps-sub', 5, { properties: { maximumPacketSize: 100 } });
    await sub.subscribe('mps/t', 0);
    const pub = await conn('mps-pub');
    const before = tb.broker.stats().messagesDropped;
    pub.publish('mps/t', 'x'.repeat(200), 0);
    pub.publish('mps/t', 'small', 0);
    expect(text(await sub.expect('publish'))).toBe('small');
    expect(tb.broker.stats().messagesDropped).toBe(before + 1);
    pub.close();
    sub.close();
  });

  it('unsubscribe stops delivery; 5.0 UNSUBACK says which filters existed', async () => {
    const sub = await conn('un-sub', 5);
    await sub.subscribe('un/t', 0);
    sub.send({ type: 'unsubscribe', packetId: 4, topicFilters: ['un/t', 'un/none'] });
    expect((await sub.expect('unsuback')).reasonCodes).toEqual([0, 0x11]);
    const pub = await conn('un-pub');
    pub.publish('un/t', 'gone', 0);
    expect(await sub.silent()).toBe(true);
    pub.close();
    sub.close();
  });
});

describe('retained messages', () => {
  it('are stored, sent on subscribe with the retain flag, and deleted by an empty payload', async () => {
    const pub = await conn('ret-pub');
    pub.publish('ret/a', 'A', 1, true, 1);
    await pub.expect('puback');
    const s1 = await conn('ret-s1');
    await s1.subscribe('ret/#', 1);
    const m = await s1.expect('publish');
    expect([m.topic, text(m), m.retain]).toEqual(['ret/a', 'A', true]);
    s1.send({ type: 'puback', packetId: m.packetId as number });
    // a live message on an established subscription goes out with retain 0 (3.1.1)
    pub.publish('ret/a', 'A2', 0, true);
    const live = await s1.expect('publish');
    expect([text(live), live.retain]).toEqual(['A2', false]);
    pub.publish('ret/a', '', 0, true);
    await s1.expect('publish');
    const s2 = await conn('ret-s2');
    await s2.subscribe('ret/#', 0);
    expect(await s2.silent()).toBe(true);
    for (const c of [pub, s1, s2]) c.close();
  });

  it('retain handling 0/1/2 and retain as published (5.0)', async () => {
    const pub = await conn('rh-pub');
    pub.publish('rh/t', 'R', 0, true);
    const c = await conn('rh-sub', 5);
    const sub = async (rh: 0 | 1 | 2, rap = false) => {
      c.send({
        type: 'subscribe',
        packetId: 1,
        subscriptions: [{ topicFilter: 'rh/t', qos: 0, retainHandling: rh, retainAsPublished: rap }],
      });
      await c.expect('suback');
    };
    await sub(2);
    expect(await c.silent()).toBe(true);
    c.send({ type: 'unsubscribe', packetId: 2, topicFilters: ['rh/t'] });
    await c.expect('unsuback');
    await sub(1);
    expect((await c.expect('publish')).retain).toBe(true);
    await sub(1); // exists already: nothing
    expect(await c.silent()).toBe(true);
    await sub(0, true); // sent again, and now retain as published
    expect((await c.expect('publish')).retain).toBe(true);
    pub.publish('rh/t', 'R2', 0, true);
    const live = await c.expect('publish');
    expect([text(live), live.retain]).toEqual(['R2', true]);
    pub.close();
    c.close();
  });
});
