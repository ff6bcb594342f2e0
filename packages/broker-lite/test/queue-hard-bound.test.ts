/**
 * A slow subscriber's queue when its publisher cannot be slowed down (it is owed acks itself,
 * so its socket must stay read): it may pass max_queued_messages, but not twice it; what goes
 * beyond is dropped, counted and logged, never held without bound.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startBroker({ maxQueuedMessages: 10, maxInflightMessages: 1 });
});
afterAll(() => tb.close());

describe('queue bound with a publisher that cannot be paused', () => {
  it('holds at most twice max_queued_messages; the rest is dropped and counted', async () => {
    const { client: slow } = await RawClient.connect(tb.port, { clientId: 'slow' });
    expect(await slow.subscribe('hb/#', 1)).toEqual([1]);
    // The publisher subscribes to itself and leaves one message unacknowledged: it is owed a
    // PUBACK, so the broker must keep reading its socket and cannot pause it.
    const { client: pub } = await RawClient.connect(tb.port, { clientId: 'owed' });
    expect(await pub.subscribe('self/#', 1)).toEqual([1]);
    pub.publish('self/x', 'unacked', 1, false, 1);
    const own: string[] = [];
    for (let i = 0; i < 2; i++) own.push((await pub.next())?.type ?? 'closed');
    expect(own.sort()).toEqual(['puback', 'publish']);

    const N = 100;
    for (let i = 1; i <= N; i++) {
      pub.publish(`hb/${i}`, `m${i}`, 1, false, 1 + i);
      await pub.expect('puback');
    }
    const session = tb.broker.sessions.get('slow');
    expect(session?.queueLength).toBeLessThanOrEqual(20);
    // One in flight (window 1) and twenty queued: the other 79 were dropped and counted.
    expect(tb.broker.counters.dropped).toBe(N - 21);
    expect(tb.logs.some((l) => /dropped/.test(l.message))).toBe(true);

    const got: string[] = [];
    while (got.length < 21) {
      const p = await slow.expect('publish');
      got.push(p.topic);
      slow.send({ type: 'puback', packetId: p.packetId! });
    }
    expect(got).toEqual(Array.from({ length: 21 }, (_, i) => `hb/${i + 1}`));
    await slow.disconnect();
    await pub.disconnect();
  });
});
