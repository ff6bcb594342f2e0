import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DurableQueue } from '../src/node/durable-queue/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-large-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('durable queue with 200,000 records', () => {
  it('reopens quickly, reads everything in order, and drains to one segment', async () => {
    const n = 200_000;
    const payload = new Uint8Array(100).fill(0x41);
    const q = await DurableQueue.open(dir, { fsync: 'never' });
    let last: Promise<number> = Promise.resolve(0);
    for (let i = 0; i < n; i++) {
      payload[0] = i & 0xff;
      last = q.put({ topic: `site/dev${i % 64}/temp`, payload, qos: 1, retain: false });
    }
    expect(await last).toBe(n);
    await q.close();

    const t0 = performance.now();
    const q2 = await DurableQueue.open(dir);
    const openMs = performance.now() - t0;
    console.info(`durable-queue: reopen with ${n} records took ${openMs.toFixed(0)} ms`);
    // loose bound: shared CI machines vary; the scale script reports the real number
    expect(openMs).toBeLessThan(10_000);
    expect(q2.stats().count).toBe(n);
    expect(q2.stats().bytes).toBe(n * 100 + sumTopicBytes(n));

    const t1 = performance.now();
    let after = 0;
    let seen = 0;
    for (;;) {
      const es = q2.read(after, 1000);
      if (es.length === 0) break;
      for (const e of es) {
        expect(e.seq).toBe(seen + 1);
        seen++;
        q2.ack(e.seq);
      }
      expect(es[es.length - 1].message.payload[0]).toBe((seen - 1) & 0xff);
      after = es[es.length - 1].seq;
    }
    console.info(`durable-queue: read+ack of ${n} records took ${(performance.now() - t1).toFixed(0)} ms`);
    expect(seen).toBe(n);
    expect(q2.stats()).toMatchObject({ count: 0, bytes: 0, segments: 1, cursor: n });
    await q2.close();
  }, 120_000);
});

function sumTopicBytes(n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += `site/dev${i % 64}/temp`.length;
  return s;
}
