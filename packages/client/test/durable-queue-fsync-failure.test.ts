/**
 * Issue 12.12: a failed fsync. No file system a test can mount makes fdatasync fail on demand
 * (tmpfs never fails it), so this unit test replaces node:fs's fdatasync with one that fails
 * when told to; everything else is the real file system.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue, type DurableQueueEvent } from '../src/node/durable-queue/index.ts';
import { recordsIn, tmpDirs } from './helpers/dq-files.ts';

const faults = vi.hoisted(() => ({
  /** errno code the next fdatasync calls fail with, after `delayMs`. */
  code: null as string | null,
  delayMs: 0,
  calls: 0,
}));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    faults.calls++;
    const code = faults.code;
    if (code === null) return real.fdatasync(fd, cb);
    const err = Object.assign(new Error(`${code}: injected fdatasync failure`), { code });
    setTimeout(() => cb(err), faults.delayMs);
  };
  return { ...real, default: { ...real, fdatasync }, fdatasync };
});

const tmp = tmpDirs('mqtt-edge-dq-fsync-');
afterEach(() => {
  faults.code = null;
  faults.delayMs = 0;
});

const msg = (k: number): OutboxMessage => ({
  topic: `t/${k}`,
  payload: new Uint8Array(Buffer.from(`reading-${k}`)),
  qos: 1,
  retain: false,
});
const key = (m: OutboxMessage) => Buffer.from(m.payload).toString();

/** Number of whole records in the queue's only segment file. */
function recordsOnDisk(dir: string): number {
  const [name] = readdirSync(dir).filter((n) => n.endsWith('.log'));
  return recordsIn(join(dir, name)).count;
}

describe('issue 12.12: a failed fsync', () => {
  for (const [code, typed] of [
    ['EIO', 'FAILED'],
    ['ENOSPC', 'NO_SPACE'],
  ] as const) {
    it(`issue 12.12: ${code} from fdatasync: the puts it covered are rejected (${typed}), cut off the file, and the queue writes again without reopening`, async () => {
      const dir = tmp();
      const events: DurableQueueEvent[] = [];
      let clock = 1_000_000;
      const q = await DurableQueue.open(dir, {
        retryIntervalMs: 1000,
        onEvent: (e) => events.push(e),
        now: () => clock,
      });
      for (let k = 1; k <= 5; k++) await q.put(msg(k));
      faults.code = code;
      const covered = await Promise.allSettled([6, 7, 8, 9].map((k) => q.put(msg(k))));
      for (const r of covered) {
        expect(r.status).toBe('rejected');
        if (r.status === 'rejected')
          expect(r.reason).toMatchObject({ name: 'DurableQueueError', code: typed });
      }
      // The write() of 6..9 succeeded, their fsync did not: on disk only 1..5 remain.
      expect(recordsOnDisk(dir)).toBe(5);
      expect(q.read(0, 100).map((e) => key(e.message))).toEqual([1, 2, 3, 4, 5].map((k) => `reading-${k}`));
      expect(q.stats()).toMatchObject({ failed: true, count: 5, failedPuts: 4, writeFailures: 1 });
      expect(events.map((e) => e.type)).toEqual(['write-failed']);
      // Still failing: tried again (and refused, typed, not reported stored) once the interval passed.
      await expect(q.put(msg(10))).rejects.toMatchObject({ code: typed });
      expect(q.stats().writeFailures).toBe(1);
      clock += 1000;
      await expect(q.put(msg(10))).rejects.toMatchObject({ code: typed });
      expect(q.stats().writeFailures).toBe(2);
      faults.code = null;
      clock += 1000;
      const seq = await q.put(msg(11));
      expect(seq).toBeGreaterThan(5);
      expect(q.stats()).toMatchObject({ failed: false, count: 6, writeError: null });
      expect(events.map((e) => e.type)).toEqual(['write-failed', 'write-recovered']);
      expect(events[1]).toMatchObject({ rejectedPuts: 6, failures: 2 });
      await q.close();
      const r = await DurableQueue.open(dir);
      expect(r.read(0, 100).map((e) => key(e.message))).toEqual(
        [1, 2, 3, 4, 5, 11].map((k) => `reading-${k}`),
      );
      expect(r.stats().recovery.truncatedTails).toBe(0);
      await r.close();
    });
  }

  it('issue 12.12: with parallel fsync rounds, a later round that succeeds does not report its puts stored when an earlier one failed', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { parallelFsyncs: 4 });
    await q.put(msg(1));
    // round 1 fails late; the rounds started after it (real fdatasync) finish first
    faults.code = 'EIO';
    faults.delayMs = 50;
    const first = q.put(msg(2));
    await new Promise((r) => setImmediate(r));
    faults.code = null;
    const later = await Promise.allSettled([3, 4, 5].map((k) => q.put(msg(k))));
    await expect(first).rejects.toMatchObject({ code: 'FAILED' });
    for (const r of later) expect(r.status).toBe('rejected');
    expect(q.read(0, 100).map((e) => key(e.message))).toEqual(['reading-1']);
    await q.close();
    const r = await DurableQueue.open(dir);
    expect(r.read(0, 100).map((e) => key(e.message))).toEqual(['reading-1']);
    await r.close();
  });
});

describe('issue 12.12: a failure after drop-oldest dropped a put still in flight', () => {
  it('issue 12.12: the seqs the cursor passed never come back: appends go on in a new segment above it', async () => {
    const dir = tmp();
    let clock = 1_000_000;
    const q = await DurableQueue.open(dir, { maxCount: 2, dropPolicy: 'drop-oldest', now: () => clock });
    await q.put(msg(1));
    await q.put(msg(2));
    q.ack(1);
    q.ack(2);
    faults.code = 'EIO';
    // the third put makes room by dropping the first of the three, still in flight
    const inFlight = await Promise.allSettled([3, 4, 5].map((k) => q.put(msg(k))));
    expect(inFlight.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(q.stats()).toMatchObject({ cursor: 3, count: 0, droppedOldest: 1, failed: true });
    faults.code = null;
    clock += 1000;
    const seq = await q.put(msg(6));
    expect(seq).toBe(4);
    expect(q.read(0, 10).map((e) => [e.seq, key(e.message)])).toEqual([[4, 'reading-6']]);
    expect(readdirSync(dir).filter((n) => n.endsWith('.log'))).toContain(
      `${String(4).padStart(20, '0')}.log`,
    );
    q.ack(seq);
    expect(await q.put(msg(7))).toBe(5);
    await q.close();
    const r = await DurableQueue.open(dir);
    expect(r.read(0, 10).map((e) => [e.seq, key(e.message)])).toEqual([[5, 'reading-7']]);
    await r.close();
  });
});
