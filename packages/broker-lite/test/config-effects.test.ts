/**
 * What two mosquitto.conf keys do once parsed: `retain_available false` and `max_queued_bytes`
 * (their parsing and mapping are in config.test.ts).
 */
import { ReasonCode } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const brokers: TestBroker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
});

async function broker(options: Parameters<typeof startBroker>[0]): Promise<TestBroker> {
  const b = await startBroker(options);
  brokers.push(b);
  return b;
}

describe('retain_available false', () => {
  it('5.0: CONNACK says so; a retained PUBLISH gets DISCONNECT 0x9A; plain ones go through', async () => {
    const tb = await broker({ retainAvailable: false });
    const { client, connack } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'r5' });
    expect(connack.properties?.retainAvailable).toBe(false);
    expect(await client.subscribe('ra/#', 1)).toEqual([1]);
    client.publish('ra/plain', 'ok', 1, false, 2);
    const got = [await client.next(), await client.next()];
    expect(got.map((p) => p?.type).sort()).toEqual(['puback', 'publish']);
    client.publish('ra/kept', 'no', 1, true, 3);
    const disconnect = await client.expect('disconnect');
    expect(disconnect.reasonCode).toBe(ReasonCode.RetainNotSupported);
    expect(await client.next()).toBeNull();
  });

  it('3.1.1: a retained PUBLISH closes the connection and stores nothing', async () => {
    const tb = await broker({ retainAvailable: false });
    const { client } = await RawClient.connect(tb.port, { protocolVersion: 4, clientId: 'r4' });
    client.publish('ra/kept', 'no', 1, true, 3);
    expect(await client.next()).toBeNull();
    const { client: late } = await RawClient.connect(tb.port, { protocolVersion: 4, clientId: 'late' });
    expect(await late.subscribe('ra/#', 1)).toEqual([1]);
    // No retained message came with the SUBACK: the first PUBLISH is a live fence.
    late.publish('ra/fence', 'f', 0);
    expect((await late.expect('publish')).topic).toBe('ra/fence');
    await late.disconnect();
  });
});

describe('max_queued_bytes', () => {
  it('bounds an offline session by bytes: the rest is dropped, counted and logged', async () => {
    const tb = await broker({ maxQueuedBytes: 450, maxQueuedMessages: 0 });
    const { client: sub } = await RawClient.connect(tb.port, { clientId: 'bytes', clean: false });
    expect(await sub.subscribe('qb/#', 1)).toEqual([1]);
    await sub.disconnect();
    const { client: pub } = await RawClient.connect(tb.port, { clientId: 'pub' });
    const payload = new Uint8Array(100).fill(0x61);
    for (let i = 1; i <= 10; i++) {
      pub.publish(`qb/${i}`, payload, 1, false, i);
      await pub.expect('puback');
    }
    const { client: back, connack } = await RawClient.connect(tb.port, { clientId: 'bytes', clean: false });
    expect(connack.sessionPresent).toBe(true);
    // A fence after the queue: everything queued arrives before it.
    pub.publish('qb/fence', 'f', 1, false, 11);
    await pub.expect('puback');
    const topics: string[] = [];
    for (;;) {
      const p = await back.expect('publish');
      back.send({ type: 'puback', packetId: p.packetId! });
      if (p.topic === 'qb/fence') break;
      expect(p.payload.length).toBe(100);
      topics.push(p.topic);
    }
    // About 105 bytes each (payload and topic): 450 bytes hold 4 or 5 of them.
    expect(topics.length).toBeGreaterThanOrEqual(4);
    expect(topics.length).toBeLessThanOrEqual(5);
    expect(topics).toEqual(topics.map((_t, i) => `qb/${i + 1}`));
    expect(tb.broker.counters.dropped).toBe(10 - topics.length);
    expect(tb.logs.some((l) => /offline session queue full|dropped/.test(l.message))).toBe(true);
    await back.disconnect();
    await pub.disconnect();
  });

  it('online: a full queue by bytes pauses the publisher instead of dropping', async () => {
    const tb = await broker({ maxQueuedBytes: 450, maxQueuedMessages: 0, maxInflightMessages: 1 });
    const { client: sub } = await RawClient.connect(tb.port, { clientId: 'slow' });
    expect(await sub.subscribe('qo/#', 1)).toEqual([1]);
    const { client: pub } = await RawClient.connect(tb.port, { clientId: 'fast' });
    const N = 30;
    const payload = new Uint8Array(100).fill(0x62);
    for (let i = 1; i <= N; i++) pub.publish(`qo/${i}`, payload, 1, false, i);
    const seen: string[] = [];
    while (seen.length < N) {
      const p = await sub.expect('publish');
      seen.push(text(p).length === 100 ? p.topic : 'bad');
      sub.send({ type: 'puback', packetId: p.packetId! });
    }
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => `qo/${i + 1}`));
    expect(tb.broker.counters.dropped).toBe(0);
    expect(tb.broker.counters.publisherPauses).toBeGreaterThan(0);
    await sub.disconnect();
    await pub.disconnect();
  });
});
