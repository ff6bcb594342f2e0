/**
 * Issue 15.2: the `$SYS` figures Mosquitto 2.0 publishes and broker-lite did not: load averages
 * (per-minute rates, exponentially averaged over 1, 5 and 15 minutes), clients/maximum and
 * clients/expired, shared subscriptions, the message store, publish payload bytes, the process's
 * memory. The names are checked against a real Mosquitto in test/sys-mosquitto.test.ts; these
 * check the values.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SysTree } from '../src/sys.ts';
import { LoadAverage } from '../src/sys-load.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

describe('issue 15.2: $SYS load averages', () => {
  it('issue 15.2: a steady rate approaches its per-minute figure as 1 - e^(-t/window)', () => {
    // 100 events every 10 s: 600 a minute, for one minute, then nothing for one minute.
    const load = new LoadAverage(0);
    for (let i = 1; i <= 6; i++) load.update(i * 100, 10);
    expect(load.values[0]).toBeCloseTo(600 * (1 - Math.exp(-1)), 6);
    expect(load.values[1]).toBeCloseTo(600 * (1 - Math.exp(-60 / 300)), 6);
    expect(load.values[2]).toBeCloseTo(600 * (1 - Math.exp(-60 / 900)), 6);
    const after = [...load.values];
    for (let i = 0; i < 6; i++) load.update(600, 10);
    expect(load.values[0]).toBeCloseTo(after[0] * Math.exp(-1), 6);
    // No time passed: nothing changes (a second update in the same millisecond).
    const before = [...load.values];
    load.update(10_000, 0);
    expect(load.values).toEqual(before);
  });
});

/** Polls broker state a client cannot see as an event (bounded: 5 s). */
async function until(pred: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let tb: TestBroker | undefined;
afterEach(async () => {
  await tb?.close();
  tb = undefined;
});

describe('issue 15.2: $SYS values', () => {
  it('issue 15.2: clients/maximum, shared subscriptions, store, publish bytes, heap and loads', async () => {
    tb = await startBroker();
    const b = tb.broker;
    const start = Date.now();
    const tree = new SysTree(b);
    const value = (name: string): string | undefined => {
      const m = b.retain.get(`$SYS/broker/${name}`);
      return m === undefined ? undefined : Buffer.from(m.payload).toString();
    };
    const { client: a } = await RawClient.connect(tb.port, { clientId: 'a' });
    const { client: c } = await RawClient.connect(tb.port, { clientId: 'c', clean: false });
    expect(await a.subscribe('$share/g/t', 1)).toEqual([1]);
    expect(await c.subscribe('$share/g/t', 1, 2)).toEqual([1]);
    expect(await c.subscribe('plain', 1, 3)).toEqual([1]);
    a.publish('kept', 'x'.repeat(10), 0, true);
    a.publish('plain', 'y'.repeat(100), 0, false);
    const got = await c.expect('publish');
    expect(got.payload.length).toBe(100);
    tree.publish(start + 60_000);
    expect(value('shared_subscriptions/count')).toBe('2');
    expect(value('subscriptions/count')).toBe('3');
    expect(value('clients/maximum')).toBe('2');
    expect(value('publish/bytes/received')).toBe('110');
    expect(value('publish/bytes/sent')).toBe('100');
    expect(value('retained messages/count')).toBe('1');
    // The retained message: 10 payload bytes and a 4-byte topic.
    expect(value('store/messages/bytes')).toBe('14');
    expect(value('messages/stored')).toBe('1');
    expect(value('store/messages/count')).toBe('1');
    // Two sockets and two CONNECTs in the minute: 2 a minute, weighted by 1 - e^-1 over 1 min.
    expect(value('load/sockets/1min')).toBe((2 * (1 - Math.exp(-1))).toFixed(2));
    expect(value('load/connections/1min')).toBe((2 * (1 - Math.exp(-1))).toFixed(2));
    expect(value('load/publish/received/1min')).toBe((2 * (1 - Math.exp(-1))).toFixed(2));
    expect(value('load/publish/dropped/15min')).toBe('0.00');
    const heap = Number(value('heap/current'));
    const heapMax = Number(value('heap/maximum'));
    expect(heap).toBeGreaterThan(10 * 1024 * 1024);
    expect(heapMax).toBeGreaterThanOrEqual(heap);

    // clients/maximum keeps the most; the offline session stays in clients/total, and 10 QoS 1
    // messages queued for it are in the store, beside the retained ones ($SYS's too, as in Mosquitto).
    await c.disconnect();
    for (let i = 0; i < 10; i++) a.publish('plain', 'z'.repeat(5), 1, false, 10 + i);
    for (let i = 0; i < 10; i++) await a.expect('puback');
    await a.disconnect();
    await until(
      () => !b.sessions.has('a') && b.sessions.get('c')?.conn === null,
      'the broker saw both leave',
    );
    // Retained now: `kept` and the $SYS values of the first update.
    const retained = b.retain.size;
    const retainedBytes = b.retain.bytes;
    expect(retained).toBeGreaterThan(50);
    tree.publish(start + 70_000);
    expect(value('clients/total')).toBe('1');
    expect(value('clients/disconnected')).toBe('1');
    expect(value('clients/inactive')).toBe('1');
    expect(value('clients/maximum')).toBe('2');
    expect(value('store/messages/count')).toBe(String(retained + 10));
    expect(value('store/messages/bytes')).toBe(String(retainedBytes + 10 * (5 + 'plain'.length)));
  });

  it('issue 15.2: clients/expired counts sessions ended by their expiry', async () => {
    tb = await startBroker({ persistentClientExpiration: 1 });
    const tree = new SysTree(tb.broker);
    const { client } = await RawClient.connect(tb.port, { clientId: 'gone', clean: false });
    client.close();
    await client.closed;
    const b = tb.broker;
    await until(() => !b.sessions.has('gone'), 'the session to expire');
    tree.publish();
    expect(Buffer.from(tb.broker.retain.get('$SYS/broker/clients/expired')?.payload ?? []).toString()).toBe(
      '1',
    );
  });
});
