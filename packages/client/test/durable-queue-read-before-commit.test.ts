/**
 * Issue 18.5: `readBeforeCommit` lets read() hand out entries appended and not yet committed, so
 * a sender publishes a reading at once instead of after a long commit window. put() still
 * resolves only after the fsync; an ack may now come first; a commit that fails after the entry
 * left must neither leave it readable again nor let its seq be taken by a later put (the sender
 * still holds it in flight and would match the broker's ack to the wrong message). fdatasync is
 * replaced by one that fails on demand (as in durable-queue-fsync-failure.test.ts); everything
 * else is the real file system.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue } from '../src/node/durable-queue/index.ts';
import { recordsIn, tmpDirs } from './helpers/dq-files.ts';

const faults = vi.hoisted(() => ({ code: null as string | null }));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    const code = faults.code;
    if (code === null) return real.fdatasync(fd, cb);
    const err = Object.assign(new Error(`${code}: injected fdatasync failure`), { code });
    setImmediate(() => cb(err));
  };
  return { ...real, default: { ...real, fdatasync }, fdatasync };
});

const tmp = tmpDirs('mqtt-edge-dq-early-');
afterEach(() => {
  faults.code = null;
});

const msg = (k: number, topic = 'sensors/a'): OutboxMessage => ({
  topic,
  payload: new Uint8Array(Buffer.from(`reading-${k}`)),
  qos: 1,
  retain: false,
  properties: { contentType: 'text/plain', userProperties: [['k', String(k)]] },
});
const key = (m: OutboxMessage) => Buffer.from(m.payload).toString();

function recordsOnDisk(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.log')))
    n += recordsIn(join(dir, name)).count;
  return n;
}

/** Whether `p` has settled by the time the event loop turned once. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('issue 18.5: read before commit', () => {
  it('issue 18.5: under a commit window read() returns appended, uncommitted entries (shared records too) while put() waits for the fsync', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { commitWindowMs: 60_000, readBeforeCommit: true });
    const puts = [1, 2, 3].map((k) => q.put(msg(k)));
    puts.push(q.put(msg(4, 'sensors/b')));
    expect(await settled(puts[0])).toBe(false);
    const got = q.read(0, 10);
    expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(got.map((e) => key(e.message))).toEqual(['reading-1', 'reading-2', 'reading-3', 'reading-4']);
    expect(got.map((e) => e.message.topic)).toEqual(['sensors/a', 'sensors/a', 'sensors/a', 'sensors/b']);
    // records 2 and 3 share record 1's topic and properties, read back from the pending buffer
    expect(got[2].message.properties).toEqual({ contentType: 'text/plain', userProperties: [['k', '3']] });
    expect(q.read(2, 10).map((e) => e.seq)).toEqual([3, 4]);
    // nothing reached the file yet: kept back for the commit (issue 18.4)
    expect(recordsOnDisk(dir)).toBe(0);
    for (const p of puts) expect(await settled(p)).toBe(false);
    await q.flush();
    expect(await Promise.all(puts)).toEqual([1, 2, 3, 4]);
    expect(recordsOnDisk(dir)).toBe(4);
    expect(q.read(0, 10).map((e) => key(e.message))).toEqual(got.map((e) => key(e.message)));
    await q.close();
  });

  it('issue 18.5: without readBeforeCommit read() still returns only entries whose put() resolved', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { commitWindowMs: 60_000 });
    const p = q.put(msg(1));
    expect(q.read(0, 10)).toEqual([]);
    await q.flush();
    await p;
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([1]);
    await q.close();
  });

  it('issue 18.5: an ack before the commit: put() still resolves only after the fsync, the record is still written at the commit, and it is not read again', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { commitWindowMs: 60_000, readBeforeCommit: true });
    const p1 = q.put(msg(1));
    const p2 = q.put(msg(2));
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([1, 2]);
    q.ack(1);
    expect(q.stats()).toMatchObject({ count: 1, cursor: 1 });
    expect(await settled(p1)).toBe(false);
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([2]);
    await q.flush();
    expect(await Promise.all([p1, p2])).toEqual([1, 2]);
    // the acknowledged record is on disk all the same: the device's ACK means "in the queue on disk"
    expect(recordsOnDisk(dir)).toBe(2);
    q.ack(2);
    expect(q.stats()).toMatchObject({ count: 0, cursor: 2 });
    await q.close();
    const r = await DurableQueue.open(dir, { readBeforeCommit: true });
    expect(r.read(0, 10)).toEqual([]);
    expect((await r.put(msg(3))) > 2).toBe(true);
    await r.close();
  });

  it('issue 18.5: a commit that fails after its entries were read: puts rejected, entries gone from the queue and its counts, their seqs never taken again, a late ack ignored', async () => {
    const dir = tmp();
    let clock = 1_000_000;
    const q = await DurableQueue.open(dir, {
      commitWindowMs: 60_000,
      readBeforeCommit: true,
      retryIntervalMs: 1000,
      now: () => clock,
    });
    const p1 = q.put(msg(1));
    await q.flush();
    await p1;
    const failing = [2, 3, 4].map((k) => q.put(msg(k)));
    // the sender takes 2 and 3 (say its window is 2), the broker acknowledges 2
    const sent = q.read(1, 2);
    expect(sent.map((e) => e.seq)).toEqual([2, 3]);
    q.ack(2);
    faults.code = 'EIO';
    await expect(q.flush()).rejects.toMatchObject({ code: 'FAILED' });
    for (const r of await Promise.allSettled(failing)) expect(r.status).toBe('rejected');
    expect(recordsOnDisk(dir)).toBe(1);
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([1]);
    expect(q.stats()).toMatchObject({ count: 1, failed: true });
    // the broker's late ack of 3 (published, then its commit failed) changes nothing
    q.ack(3);
    expect(q.stats()).toMatchObject({ count: 1 });
    faults.code = null;
    clock += 1000;
    const p5 = q.put(msg(5));
    const next = q.read(1, 10);
    // seqs 2 and 3 were handed out: a new put never takes them (4 was not, yet is skipped too)
    expect(next.map((e) => key(e.message))).toEqual(['reading-5']);
    expect(next[0].seq).toBeGreaterThan(3);
    await q.flush();
    expect(await p5).toBe(next[0].seq);
    q.ack(3);
    expect(q.stats()).toMatchObject({ count: 2, failed: false });
    expect(q.read(0, 10).map((e) => key(e.message))).toEqual(['reading-1', 'reading-5']);
    await q.close();
    const r = await DurableQueue.open(dir);
    expect(r.read(0, 10).map((e) => key(e.message))).toEqual(['reading-1', 'reading-5']);
    await r.close();
  });

  it('issue 18.5: close() commits what was read before its commit; put() resolves', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { commitWindowMs: 60_000, readBeforeCommit: true });
    const p = q.put(msg(1));
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([1]);
    await q.close();
    expect(await p).toBe(1);
    const r = await DurableQueue.open(dir);
    expect(r.read(0, 10).map((e) => key(e.message))).toEqual(['reading-1']);
    await r.close();
  });
});
