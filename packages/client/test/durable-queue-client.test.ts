/**
 * The durable queue as the client's outbox, against Mosquitto: every publish reaches the
 * subscriber and leaves the queue once acknowledged; messages queued while no broker was
 * reachable survive a restart of the publishing side (queue closed, reopened by a new client)
 * and are delivered then.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, hasMosquitto, type Mosquitto, startMosquitto } from '../../../test/helpers/mosquitto.ts';
import { connect, DurableQueue, type MqttClient } from '../src/node/index.ts';

const HAS = hasMosquitto();
if (!HAS) console.warn('durable-queue-client.test.ts: /usr/sbin/mosquitto not found, skipping');

describe.skipIf(!HAS)('durable queue as the MQTT client outbox', () => {
  let broker: Mosquitto;
  const dirs: string[] = [];
  beforeAll(async () => {
    broker = await startMosquitto({ config: 'max_queued_messages 100000' });
  });
  afterAll(async () => {
    await broker?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-client-'));
    dirs.push(d);
    return d;
  };

  async function subscriber(
    topic: string,
    n: number,
  ): Promise<{ sub: MqttClient; all: Promise<Set<string>> }> {
    const sub = connect(`mqtt://127.0.0.1:${broker.port}`, { clientId: `dqs-${topic}`, protocolVersion: 5 });
    await once(sub, 'connect');
    const got = new Set<string>();
    const all = new Promise<Set<string>>((resolve) => {
      sub.on('message', (_t, payload) => {
        got.add(Buffer.from(payload).toString());
        if (got.size === n) resolve(got);
      });
    });
    await sub.subscribe({ filter: `${topic}/#`, qos: 1 });
    return { sub, all };
  }

  it('publishes through the queue and empties it as PUBACKs arrive', async () => {
    const n = 2000;
    const { sub, all } = await subscriber('dq1', n);
    const queue = await DurableQueue.open(tmp());
    const pub = connect(`mqtt://127.0.0.1:${broker.port}`, {
      clientId: 'dqp1',
      protocolVersion: 5,
      outbox: queue,
    });
    await once(pub, 'connect');
    await Promise.all(Array.from({ length: n }, (_, i) => pub.publish(`dq1/${i % 8}`, `m${i}`, { qos: 1 })));
    expect((await all).size).toBe(n);
    expect(queue.stats()).toMatchObject({ count: 0, bytes: 0, cursor: n });
    await pub.end();
    await queue.close();
    await sub.end();
  });

  it('messages queued with no broker survive a restart of the publisher and are delivered after', async () => {
    const n = 500;
    const dir = tmp();
    const deadPort = await freePort(); // nothing listens there
    const q1 = await DurableQueue.open(dir);
    const offline = connect(`mqtt://127.0.0.1:${deadPort}`, {
      clientId: 'dqp2',
      outbox: q1,
      reconnectPeriod: 50,
    });
    for (let i = 0; i < n; i++) {
      // these never complete here: the client is ended with the messages still queued
      offline.publish(`dq2/x`, `q${i}`, { qos: 1 }).catch(() => {});
    }
    await expect.poll(() => q1.stats().count, { timeout: 5000 }).toBe(n);
    await offline.end({ force: true });
    await q1.close();

    const { sub, all } = await subscriber('dq2', n);
    const q2 = await DurableQueue.open(dir);
    expect(q2.stats().count).toBe(n);
    const online = connect(`mqtt://127.0.0.1:${broker.port}`, { clientId: 'dqp2', outbox: q2 });
    await once(online, 'connect');
    const got = await all;
    expect([...got].sort()).toEqual(Array.from({ length: n }, (_, i) => `q${i}`).sort());
    await expect.poll(() => q2.stats().count, { timeout: 5000 }).toBe(0);
    await online.end();
    await q2.close();
    await sub.end();
  });
  it('issue 18.5: readBeforeCommit under a long window: publish() and enqueue() reach the subscriber and publish() resolves on the PUBACK before put() resolved; the queue empties at the commit', async () => {
    const { sub, all } = await subscriber('dq-early', 6);
    const queue = await DurableQueue.open(tmp(), { commitWindowMs: 300_000, readBeforeCommit: true });
    const pub = connect(`mqtt://127.0.0.1:${broker.port}`, {
      clientId: 'dqp-early',
      protocolVersion: 5,
      outbox: queue,
    });
    await once(pub, 'connect');
    let stored = 0;
    const enqueued = [1, 2, 3].map((k) =>
      pub.enqueue(`dq-early/e`, `e${k}`, { qos: 1 }).then((seq) => {
        stored++;
        return seq;
      }),
    );
    const results = await Promise.all([1, 2, 3].map((k) => pub.publish(`dq-early/p`, `p${k}`, { qos: 1 })));
    for (const r of results) expect(r.reasonCode).toBe(0);
    const got = await all;
    expect([...got].sort()).toEqual(['e1', 'e2', 'e3', 'p1', 'p2', 'p3']);
    // the window (5 minutes) has not ended: nothing is committed, nothing resolved put()
    expect(stored).toBe(0);
    expect(queue.stats()).toMatchObject({ count: 0, fsyncs: 0 });
    await queue.flush();
    expect(await Promise.all(enqueued)).toEqual([1, 2, 3]);
    await pub.end();
    await queue.close();
    await sub.end();
  });
});
