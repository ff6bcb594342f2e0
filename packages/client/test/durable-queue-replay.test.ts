/**
 * Issue 17.4: the Node client feeds the session from a DurableQueue (the core never reads it).
 * A backlog on disk is replayed against Mosquitto through a proxy that resets the connection in
 * the middle of the replay, and across a restart of the publishing side: every message arrives,
 * their first arrivals are in the queue's order, duplicates stay within what was in flight at a
 * reset, and the queue ends empty with its cursor at the last seq.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy } from '../../../test/helpers/fault-proxy.ts';
import { hasMosquitto, type Mosquitto, startMosquitto } from '../../../test/helpers/mosquitto.ts';
import { type ClientOptions, connect, DurableQueue, type MqttClient } from '../src/node/index.ts';

const HAS = hasMosquitto();
if (!HAS) console.warn('durable-queue-replay.test.ts: /usr/sbin/mosquitto not found, skipping');

const WINDOW = 64;

describe.skipIf(!HAS)('issue 17.4: replay from the durable queue across reconnects', () => {
  let broker: Mosquitto;
  let proxy: FaultProxy;
  const dirs: string[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    broker = await startMosquitto({ config: 'max_queued_messages 100000\nmax_inflight_messages 0' });
    proxy = await FaultProxy.start(broker.port);
  });
  afterAll(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    await proxy?.close();
    await broker?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-replay-'));
    dirs.push(d);
    return d;
  };

  /** Records first arrivals in order and counts repeats; `onFirst(n)` runs after the n-th new one. */
  async function subscriber(topic: string, onFirst: (n: number) => void) {
    const sub = connect(`mqtt://127.0.0.1:${broker.port}`, { clientId: `rs-${topic}`, protocolVersion: 5 });
    closers.push(() => sub.end());
    await new Promise<void>((r) => sub.once('connect', () => r()));
    const seen = new Set<number>();
    const order: number[] = [];
    let repeats = 0;
    let want = Number.POSITIVE_INFINITY;
    let done: () => void = () => {};
    sub.on('message', (_t, payload) => {
      const i = Number(new TextDecoder().decode(payload));
      if (seen.has(i)) {
        repeats++;
        return;
      }
      seen.add(i);
      order.push(i);
      onFirst(order.length);
      if (order.length >= want) done();
    });
    await sub.subscribe({ filter: `${topic}/#`, qos: 1 });
    return {
      order,
      get repeats() {
        return repeats;
      },
      all(n: number): Promise<void> {
        want = n;
        return order.length >= n ? Promise.resolve() : new Promise((r) => (done = r));
      },
    };
  }

  async function backlog(dir: string, topic: string, n: number): Promise<DurableQueue> {
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    const puts: Array<Promise<number>> = [];
    for (let i = 0; i < n; i++)
      puts.push(
        q.put({ topic: `${topic}/x`, payload: new TextEncoder().encode(String(i)), qos: 1, retain: false }),
      );
    expect(await Promise.all(puts)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    return q;
  }

  /** Resolves once `n` distinct seqs left the client's outbox (acknowledged by the broker). */
  function settledAll(c: MqttClient, n: number): Promise<{ seqs: Set<number>; refused: number }> {
    const seqs = new Set<number>();
    let refused = 0;
    return new Promise((resolve) =>
      c.on('settled', (seq, rc, err) => {
        if (rc !== 0 || err !== undefined) refused++;
        seqs.add(seq);
        if (seqs.size === n) resolve({ seqs, refused });
      }),
    );
  }

  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

  it.each([
    [4, false],
    [5, false],
    [5, true],
  ] as const)(
    'protocol %i, clean %s: three resets mid-replay, live enqueues mixed in: in order, nothing lost',
    async (v, clean) => {
      const topic = `rp${v}${clean ? 'c' : 's'}`;
      const N = 3000;
      const EXTRA = 300;
      const queue = await backlog(tmp(), topic, N);
      closers.push(() => queue.close());
      let client: MqttClient | undefined;
      const resets = [400, 1300, 2500];
      const sub = await subscriber(topic, (n) => {
        if (!resets.includes(n)) return;
        proxy.resetAll();
        // Live traffic behind the backlog, put while the connection is down.
        for (let i = 0; i < EXTRA / 3; i++)
          client!.enqueue(`${topic}/x`, String(N + (resets.indexOf(n) * EXTRA) / 3 + i), { qos: 1 });
      });
      const options: ClientOptions = {
        protocolVersion: v,
        clientId: `rp-${topic}`,
        clean,
        maxInflight: WINDOW,
        outbox: queue,
        reconnectPeriod: 10,
        reconnectMaxDelay: 50,
      };
      if (v === 5 && !clean) options.sessionExpiryInterval = 600;
      const connections = proxy.stats.connections;
      client = connect(proxy.url, options);
      closers.push(() => client!.end({ force: true }));
      const settled = settledAll(client, N + EXTRA);
      await sub.all(N + EXTRA);
      expect(sub.order).toEqual(range(0, N + EXTRA));
      expect(proxy.stats.connections - connections).toBeGreaterThanOrEqual(1 + resets.length);
      // A reset repeats at most what was in flight then.
      expect(sub.repeats).toBeLessThanOrEqual(resets.length * WINDOW);
      const { seqs, refused } = await settled;
      expect([seqs.size, refused]).toEqual([N + EXTRA, 0]);
      expect(queue.stats()).toMatchObject({ count: 0, cursor: N + EXTRA });
      // The session never held the queue: the client fed it.
      expect(client.session.outbox).toBeNull();
      expect(client.outbox).toBe(queue);
      await client.end();
    },
    60_000,
  );

  it('a restart of the publishing side mid-replay (queue closed and reopened) loses nothing', async () => {
    const topic = 'rprestart';
    const N = 2000;
    const dir = tmp();
    const q1 = await backlog(dir, topic, N);
    let stopAt: () => void = () => {};
    const stopped = new Promise<void>((r) => (stopAt = r));
    const sub = await subscriber(topic, (n) => {
      if (n === 700) stopAt();
    });
    const options: ClientOptions = {
      protocolVersion: 4,
      clientId: 'rp-restart',
      clean: true,
      maxInflight: WINDOW,
      reconnectPeriod: 10,
    };
    const c1 = connect(proxy.url, { ...options, outbox: q1 });
    await stopped;
    await c1.end({ force: true });
    await q1.close();
    const left =
      N -
      (await DurableQueue.open(dir).then(async (q) => {
        const c = q.stats().cursor;
        await q.close();
        return c;
      }));
    expect(left).toBeGreaterThan(0);
    const q2 = await DurableQueue.open(dir);
    closers.push(() => q2.close());
    const c2 = connect(proxy.url, { ...options, outbox: q2 });
    closers.push(() => c2.end({ force: true }));
    await sub.all(N);
    expect(sub.order).toEqual(range(0, N));
    await new Promise<void>((resolve) => {
      const check = () => (q2.stats().count === 0 ? resolve() : undefined);
      c2.on('settled', check);
      check();
    });
    expect(q2.stats()).toMatchObject({ count: 0, cursor: N });
    await c2.end();
  }, 60_000);
});
