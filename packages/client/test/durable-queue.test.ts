import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OutboxFullError, type OutboxMessage } from '../src/core/outbox.ts';
import {
  crc32c,
  DurableQueue,
  DurableQueueError,
  type DurableQueueEvent,
} from '../src/node/durable-queue/index.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const enc = (s: string) => new Uint8Array(Buffer.from(s));
function msg(i: number, extra: Partial<OutboxMessage> = {}): OutboxMessage {
  return { topic: `t/${i}`, payload: enc(`payload-${i}`), qos: 1, retain: false, ...extra };
}
const text = (u: Uint8Array) => Buffer.from(u).toString();
const segmentFiles = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.log'));

describe('crc32c', () => {
  it('matches the Castagnoli check value and chains across ranges', () => {
    const b = enc('123456789');
    expect(crc32c(b, 0, 9)).toBe(0xe3069283);
    expect(crc32c(b, 5, 9, crc32c(b, 0, 5))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0), 0, 0)).toBe(0);
  });
});

describe('DurableQueue basics', () => {
  it('puts, reads in seq order, acks and keeps the rest across reopen', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir);
    const seqs: number[] = [];
    for (let i = 0; i < 10; i++) seqs.push(await q.put(msg(i)));
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const all = q.read(0, 100);
    expect(all.map((e) => e.seq)).toEqual(seqs);
    expect(text(all[3].message.payload)).toBe('payload-3');
    expect(all[3].message.topic).toBe('t/3');
    expect(all[3].storedAt).toBeGreaterThan(0);
    expect(q.read(5, 2).map((e) => e.seq)).toEqual([6, 7]);
    q.ack(1);
    q.ack(2);
    expect(q.stats().count).toBe(8);
    expect(q.stats().bytes).toBe(8 * (3 + 9)); // topic t/N, payload payload-N
    await q.close();

    const q2 = await DurableQueue.open(dir);
    expect(q2.read(0, 100).map((e) => e.seq)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    expect(await q2.put(msg(10))).toBe(11);
    await q2.close();
  });

  it('read() shows an entry only once its put() resolved', async () => {
    for (const fsync of ['batch', 'never'] as const) {
      const q = await DurableQueue.open(tmp(), { fsync });
      const p = q.put(msg(1));
      expect(q.read(0, 10)).toEqual([]);
      expect(q.stats().count).toBe(1);
      expect(await p).toBe(1);
      expect(q.read(0, 10).map((e) => e.seq)).toEqual([1]);
      await q.close();
    }
  });

  it('round-trips qos, retain, empty payload, unicode topics and MQTT 5 properties', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir);
    const properties = {
      payloadFormatIndicator: true,
      messageExpiryInterval: 3600,
      contentType: 'application/json',
      responseTopic: 'reply/ü',
      correlationData: new Uint8Array([1, 2, 3]),
      userProperties: [
        ['id', 'dev1:boot7:42'],
        ['id', ''],
      ] as Array<[string, string]>,
      topicAlias: 5, // connection-scoped: not stored
    };
    await q.put({ topic: 'häuser/𝄞', payload: new Uint8Array(0), qos: 2, retain: true, properties });
    await q.put({ topic: 'x', payload: enc('y'), qos: 0, retain: false, properties: {} });
    await q.close();
    const q2 = await DurableQueue.open(dir);
    const [a, b] = q2.read(0, 10);
    expect(a.message.topic).toBe('häuser/𝄞');
    expect(a.message.qos).toBe(2);
    expect(a.message.retain).toBe(true);
    expect(a.message.payload).toEqual(new Uint8Array(0));
    const { topicAlias: _, ...stored } = properties;
    expect(a.message.properties).toEqual(stored);
    expect(b.message.qos).toBe(0);
    expect(b.message.properties).toBeUndefined();
    await q2.close();
  });

  it('rejects malformed messages without storing or consuming a seq', async () => {
    const q = await DurableQueue.open(tmp());
    const bad: unknown[] = [
      null,
      { topic: 1, payload: new Uint8Array(1), qos: 0, retain: false },
      { topic: 'a', payload: 'text', qos: 0, retain: false },
      { topic: 'a', payload: new Uint8Array(1), qos: 3, retain: false },
      { topic: 'a', payload: new Uint8Array(1), qos: 0, retain: 'no' },
      { topic: '\ud800', payload: new Uint8Array(1), qos: 0, retain: false },
      { topic: 'a'.repeat(65536), payload: new Uint8Array(1), qos: 0, retain: false },
      {
        topic: 'a',
        payload: new Uint8Array(1),
        qos: 0,
        retain: false,
        properties: { sessionExpiryInterval: 5 },
      },
      {
        topic: 'a',
        payload: new Uint8Array(1),
        qos: 0,
        retain: false,
        properties: { messageExpiryInterval: -1 },
      },
      {
        topic: 'a',
        payload: new Uint8Array(1),
        qos: 0,
        retain: false,
        properties: { userProperties: [['k']] },
      },
    ];
    for (const m of bad) await expect(q.put(m as OutboxMessage)).rejects.toThrow();
    expect(await q.put(msg(0))).toBe(1);
    expect(q.stats().count).toBe(1);
    await q.close();
  });

  it('refuses a message larger than maxRecordBytes with TOO_LARGE', async () => {
    const q = await DurableQueue.open(tmp(), { maxRecordBytes: 1000 });
    await expect(q.put(msg(0, { payload: new Uint8Array(2000) }))).rejects.toMatchObject({
      code: 'TOO_LARGE',
    });
    expect(await q.put(msg(0, { payload: new Uint8Array(900) }))).toBe(1);
    await q.close();
  });

  it('stores a payload larger than the segment size in a segment of its own', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    const big = new Uint8Array(300_000).map((_, i) => i & 0xff);
    await q.put(msg(0));
    await q.put(msg(1, { payload: big }));
    await q.put(msg(2));
    await q.close();
    const q2 = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    const es = q2.read(0, 10);
    expect(es.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(es[1].message.payload).toEqual(big);
    await q2.close();
  });

  it('a failed write rejects the waiting puts, refuses new ones, and reopening recovers', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir);
    expect(await q.put(msg(1))).toBe(1);
    // white-box fault injection: swap the segment's fd for a read-only one, so write() fails (EBADF)
    const internals = q as unknown as { activeFd: number };
    const original = internals.activeFd;
    internals.activeFd = openSync(join(dir, '00000000000000000001.log'), 'r');
    const waiting = q.put(msg(2));
    await expect(waiting).rejects.toMatchObject({ name: 'DurableQueueError', code: 'FAILED' });
    await expect(q.put(msg(3))).rejects.toMatchObject({ code: 'FAILED' });
    expect(q.stats().failed).toBe(true);
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([1]);
    await q.close();
    closeSync(original);
    const q2 = await DurableQueue.open(dir);
    expect(q2.read(0, 10).map((e) => e.seq)).toEqual([1]);
    expect(await q2.put(msg(2))).toBe(2);
    await q2.close();
  });

  it('issue 12.12: a write failing on a broken descriptor (EBADF) is retried on a fresh one: the queue goes on without being reopened', async () => {
    const dir = tmp();
    let clock = 1_000_000;
    const q = await DurableQueue.open(dir, { retryIntervalMs: 100, now: () => clock });
    expect(await q.put(msg(1))).toBe(1);
    const internals = q as unknown as { activeFd: number };
    const original = internals.activeFd;
    internals.activeFd = openSync(join(dir, '00000000000000000001.log'), 'r');
    await expect(q.put(msg(2))).rejects.toMatchObject({ name: 'DurableQueueError', code: 'FAILED' });
    expect(q.stats().writeError).toMatchObject({ code: 'FAILED' });
    closeSync(original);
    clock += 99; // within retryIntervalMs of the failure: refused without a try
    await expect(q.put(msg(0))).rejects.toMatchObject({ code: 'FAILED' });
    clock += 1;
    expect(await q.put(msg(3))).toBe(2);
    expect(q.stats()).toMatchObject({ failed: false, writeError: null, writeFailures: 1, failedPuts: 2 });
    expect(q.read(0, 10).map((e) => text(e.message.payload))).toEqual(['payload-1', 'payload-3']);
    await q.close();
    const q2 = await DurableQueue.open(dir);
    expect(q2.read(0, 10).map((e) => text(e.message.payload))).toEqual(['payload-1', 'payload-3']);
    await q2.close();
  });

  it('put after close rejects with CLOSED; close is idempotent', async () => {
    const q = await DurableQueue.open(tmp());
    await q.close();
    await q.close();
    await expect(q.put(msg(0))).rejects.toMatchObject({ name: 'DurableQueueError', code: 'CLOSED' });
  });

  it('resolves puts with every fsync policy and keeps them across reopen', async () => {
    for (const fsync of ['batch', 'never', { intervalMs: 5 }] as const) {
      const dir = tmp();
      const q = await DurableQueue.open(dir, { fsync });
      const seqs = await Promise.all(Array.from({ length: 500 }, (_, i) => q.put(msg(i))));
      expect(seqs).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
      await q.close();
      const q2 = await DurableQueue.open(dir);
      expect(q2.stats().count).toBe(500);
      await q2.close();
    }
  });

  it('interval policy: put resolves before any fsync, the timer fsyncs soon after', async () => {
    const q = await DurableQueue.open(tmp(), { fsync: { intervalMs: 10 } });
    await q.put(msg(1));
    const before = q.stats().fsyncs;
    await expect.poll(() => q.stats().fsyncs, { timeout: 2000 }).toBeGreaterThan(before);
    await q.close();
    const n = await DurableQueue.open(tmp(), { fsync: 'never' });
    await Promise.all(Array.from({ length: 100 }, (_, i) => n.put(msg(i))));
    expect(n.stats().fsyncs).toBe(0);
    await n.flush();
    expect(n.stats().fsyncs).toBe(1);
    await n.close();
  });

  it('groups concurrent puts into few fsyncs under the batch policy', async () => {
    const q = await DurableQueue.open(tmp());
    await Promise.all(Array.from({ length: 2000 }, (_, i) => q.put(msg(i))));
    const s = q.stats();
    expect(s.fsyncs).toBeGreaterThan(0);
    expect(s.fsyncs).toBeLessThan(200);
    await q.close();
  });
});

describe('acks and the cursor', () => {
  it('handles out-of-order acks: the cursor moves only over a contiguous prefix', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir);
    for (let i = 0; i < 6; i++) await q.put(msg(i));
    q.ack(3);
    q.ack(5);
    expect(q.stats().cursor).toBe(0);
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([1, 2, 4, 6]);
    q.ack(1);
    expect(q.stats().cursor).toBe(1);
    q.ack(2);
    expect(q.stats().cursor).toBe(3);
    q.ack(4);
    expect(q.stats().cursor).toBe(5);
    expect(q.stats().count).toBe(1);
    // unknown, repeated, non-integer and future acks are no-ops
    q.ack(4);
    q.ack(0);
    q.ack(99);
    q.ack(1.5);
    q.ack(Number.NaN);
    expect(q.stats().count).toBe(1);
    await q.close();
    const q2 = await DurableQueue.open(dir);
    expect(q2.stats().cursor).toBe(5);
    expect(q2.read(0, 10).map((e) => e.seq)).toEqual([6]);
    await q2.close();
  });

  it('persists the cursor lazily after cursorEveryAcks and redelivers acked-above-cursor after a crash', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { cursorEveryAcks: 4, cursorIntervalMs: 3_600_000 });
    for (let i = 0; i < 10; i++) await q.put(msg(i));
    q.ack(1);
    q.ack(2);
    q.ack(3);
    expect(existsSync(join(dir, 'cursor'))).toBe(false);
    q.ack(4);
    await expect.poll(() => existsSync(join(dir, 'cursor'))).toBe(true);
    const cur = readFileSync(join(dir, 'cursor'));
    expect(cur.readUInt32LE(4)).toBe(4);
    q.ack(6); // above the cursor, in memory only
    // simulate a crash: copy the directory as it is now, without close()
    const crashed = tmp();
    for (const n of readdirSync(dir))
      if (n !== 'LOCK') writeFileSync(join(crashed, n), readFileSync(join(dir, n)));
    await q.close();
    const q2 = await DurableQueue.open(crashed);
    // 6 was acked but not persisted: redelivered (a duplicate), never lost
    expect(q2.read(0, 10).map((e) => e.seq)).toEqual([5, 6, 7, 8, 9, 10]);
    await q2.close();
  });

  it('persists the cursor after cursorIntervalMs', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { cursorEveryAcks: 1000, cursorIntervalMs: 20 });
    await q.put(msg(0));
    q.ack(1);
    await expect.poll(() => existsSync(join(dir, 'cursor')), { timeout: 2000 }).toBe(true);
    await q.close();
  });

  it('rolls segments and deletes a segment once the cursor passed it', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    const payload = new Uint8Array(1000);
    const n = 300; // ~1040 bytes a record: 62 records a segment
    await Promise.all(Array.from({ length: n }, (_, i) => q.put(msg(i, { payload }))));
    const before = segmentFiles(dir).length;
    expect(before).toBeGreaterThanOrEqual(4);
    expect(q.stats().segments).toBe(before);
    for (let s = 1; s <= 200; s++) q.ack(s);
    const after = segmentFiles(dir).length;
    expect(after).toBeLessThan(before);
    expect(after).toBe(q.stats().segments);
    expect(q.read(0, 1000).map((e) => e.seq)).toEqual(Array.from({ length: 100 }, (_, i) => 201 + i));
    for (let s = 201; s <= n; s++) q.ack(s);
    expect(segmentFiles(dir).length).toBe(1); // the active segment stays
    expect(q.stats().count).toBe(0);
    await q.close();
    const q2 = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    expect(q2.stats().count).toBe(0);
    expect(await q2.put(msg(0))).toBe(n + 1); // seqs are never reused
    await q2.close();
  });

  it('reads across segment boundaries from any afterSeq', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    const payload = new Uint8Array(3000);
    await Promise.all(Array.from({ length: 100 }, (_, i) => q.put(msg(i, { payload }))));
    let after = 0;
    const got: number[] = [];
    for (;;) {
      const es = q.read(after, 7);
      if (es.length === 0) break;
      got.push(...es.map((e) => e.seq));
      after = es[es.length - 1].seq;
    }
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(q.read(-5, 1)[0].seq).toBe(1);
    expect(q.read(0, 0)).toEqual([]);
    await q.close();
  });
});

describe('bounds', () => {
  it('reject-new by count and bytes: OutboxFullError, counted, nothing stored', async () => {
    const q = await DurableQueue.open(tmp(), { maxCount: 3, dropPolicy: 'reject-new' });
    for (let i = 0; i < 3; i++) await q.put(msg(i));
    const err = await q.put(msg(3)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboxFullError);
    expect(q.stats()).toMatchObject({ count: 3, rejectedNew: 1, droppedOldest: 0 });
    q.ack(2);
    expect(await q.put(msg(4))).toBe(4);
    await q.close();

    const q2 = await DurableQueue.open(tmp(), { maxBytes: 30, dropPolicy: 'reject-new' });
    await q2.put(msg(0)); // 12 bytes
    await q2.put(msg(1)); // 24
    await expect(q2.put(msg(2))).rejects.toBeInstanceOf(OutboxFullError);
    expect(q2.stats()).toMatchObject({ count: 2, bytes: 24, rejectedNew: 1 });
    await q2.close();
  });

  it('drop-oldest by count and bytes: oldest entries leave read(), counted', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { maxCount: 3, dropPolicy: 'drop-oldest' });
    for (let i = 0; i < 5; i++) await q.put(msg(i));
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(q.stats()).toMatchObject({ count: 3, droppedOldest: 2, rejectedNew: 0 });
    q.ack(1); // dropped already: no-op
    expect(q.stats().count).toBe(3);
    await q.close();
    const q2 = await DurableQueue.open(dir);
    expect(q2.read(0, 10).map((e) => e.seq)).toEqual([3, 4, 5]);
    await q2.close();

    const q3 = await DurableQueue.open(tmp(), { maxBytes: 30, dropPolicy: 'drop-oldest' });
    for (let i = 0; i < 4; i++) await q3.put(msg(i));
    expect(q3.stats()).toMatchObject({ count: 2, bytes: 24, droppedOldest: 2 });
    // a message that can never fit is rejected, not allowed to flush the queue
    await expect(q3.put(msg(9, { payload: new Uint8Array(100) }))).rejects.toBeInstanceOf(OutboxFullError);
    expect(q3.stats()).toMatchObject({ count: 2, rejectedNew: 1 });
    await q3.close();
  });

  it('issue 12.12: drops are reported once when they start and in summaries, never one event per message', async () => {
    const events: DurableQueueEvent[] = [];
    const q = await DurableQueue.open(tmp(), {
      maxCount: 10,
      dropPolicy: 'drop-oldest',
      fsync: 'never', // puts well under the report interval apart: one spell
      reportIntervalMs: 50,
      onEvent: (e) => events.push(e),
    });
    const t0 = Date.now();
    for (let i = 0; i < 100; i++) await q.put(msg(i));
    const loopMs = Date.now() - t0;
    expect(q.stats().droppedOldest).toBe(90);
    expect(events[0]).toEqual({ type: 'drop-start', reason: 'maxCount', seq: 1 });
    // a whole interval without a drop ends the spell with its summary
    await expect.poll(() => events.some((e) => e.type === 'drop-summary' && !e.ongoing)).toBe(true);
    const end = events.at(-1);
    expect(end).toMatchObject({
      type: 'drop-summary',
      ongoing: false,
      dropped: 90,
      firstSeq: 1,
      lastSeq: 90,
    });
    // in between, summaries at most one per interval: events follow time, not messages
    const ongoing = events.slice(1, -1);
    for (const e of ongoing) expect(e).toMatchObject({ type: 'drop-summary', ongoing: true });
    expect(ongoing.length).toBeLessThanOrEqual(Math.ceil(loopMs / 50) + 1);
    // the next spell is a new one; close() ends it with its summary
    const before = events.length;
    for (let i = 0; i < 5; i++) await q.put(msg(i, { payload: new Uint8Array(10) }));
    await q.close();
    const second = events.slice(before);
    expect(second[0]).toEqual({ type: 'drop-start', reason: 'maxCount', seq: 91 });
    expect(second.at(-1)).toMatchObject({ type: 'drop-summary', lastSeq: 95, ongoing: false });
    // (a loaded machine can make one put outlast an interval: then it is two spells, still
    // every drop counted once in the spells' final summaries)
    const ends = second.filter((e) => e.type === 'drop-summary' && !e.ongoing);
    expect(ends.reduce((n, e) => n + (e.type === 'drop-summary' ? e.dropped : 0), 0)).toBe(5);
    expect(second.filter((e) => e.type === 'drop-start')).toHaveLength(ends.length);

    const bytes: DurableQueueEvent[] = [];
    const b = await DurableQueue.open(tmp(), {
      maxBytes: 100,
      dropPolicy: 'drop-oldest',
      onEvent: (e) => bytes.push(e),
    });
    for (let i = 0; i < 20; i++) await b.put(msg(i));
    await b.close();
    expect(bytes.map((e) => e.type)).toEqual(['drop-start', 'drop-summary']);
    expect(bytes[0]).toMatchObject({ reason: 'maxBytes', seq: 1 });
    expect(bytes[1]).toMatchObject({ dropped: b.stats().droppedOldest });
  });

  it('drop-oldest skips acked entries above the cursor and drops only live ones', async () => {
    const q = await DurableQueue.open(tmp(), { maxCount: 3, dropPolicy: 'drop-oldest' });
    for (let i = 0; i < 3; i++) await q.put(msg(i));
    q.ack(2);
    await q.put(msg(3)); // count 3 again: 1, 3, 4
    await q.put(msg(4)); // drops 1, then 2 is acked so cursor passes it
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(q.stats()).toMatchObject({ droppedOldest: 1, cursor: 2 });
    await q.close();
  });

  it('age bound: drop-oldest drops expired on put and read; reject-new refuses while the oldest is too old', async () => {
    let now = 1_000_000;
    const clock = () => now;
    const q = await DurableQueue.open(tmp(), { maxAgeMs: 1000, dropPolicy: 'drop-oldest', now: clock });
    await q.put(msg(0));
    now += 500;
    await q.put(msg(1));
    expect(q.stats().oldestAgeMs).toBe(500);
    now += 600; // first is 1100 old, second 600
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([2]);
    expect(q.stats()).toMatchObject({ droppedOldest: 1, oldestAgeMs: 600 });
    now += 2000;
    await q.put(msg(2));
    expect(q.read(0, 10).map((e) => e.seq)).toEqual([3]);
    expect(q.stats().droppedOldest).toBe(2);
    await q.close();

    now = 1_000_000;
    const r = await DurableQueue.open(tmp(), { maxAgeMs: 1000, dropPolicy: 'reject-new', now: clock });
    await r.put(msg(0));
    now += 1001;
    await expect(r.put(msg(1))).rejects.toBeInstanceOf(OutboxFullError);
    expect(r.read(0, 10).map((e) => e.seq)).toEqual([1]); // never dropped under reject-new
    r.ack(1);
    expect(await r.put(msg(2))).toBe(2);
    expect(r.stats()).toMatchObject({ rejectedNew: 1, droppedOldest: 0, oldestAgeMs: 0 });
    await r.close();
  });

  it('validates options', async () => {
    const d = tmp();
    await expect(DurableQueue.open(d, { segmentBytes: 10 })).rejects.toThrow(RangeError);
    await expect(DurableQueue.open(d, { fsync: 'sometimes' as 'never' })).rejects.toThrow(RangeError);
    await expect(DurableQueue.open(d, { maxBytes: -1 })).rejects.toThrow(RangeError);
    await expect(DurableQueue.open(d, { dropPolicy: 'drop-newest' as 'drop-oldest' })).rejects.toThrow(
      RangeError,
    );
  });
});

describe('ownership', () => {
  it('a second open of the same directory fails with LOCKED until the first closes', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir);
    const err = await DurableQueue.open(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DurableQueueError);
    expect((err as DurableQueueError).code).toBe('LOCKED');
    await q.close();
    const q2 = await DurableQueue.open(dir);
    await q2.close();
  });

  it('a live process with another start time (pid reuse) does not hold the lock; a live owner does', async () => {
    const dir = tmp();
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    // pid 1 is alive, but it did not start at tick 1
    writeFileSync(join(dir, 'LOCK'), `1 ${boot} 1\n`);
    const q = await DurableQueue.open(dir);
    await q.close();
    const stat = readFileSync('/proc/1/stat', 'utf8');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    writeFileSync(join(dir, 'LOCK'), `1 ${boot} ${start}\n`);
    await expect(DurableQueue.open(dir)).rejects.toMatchObject({ code: 'LOCKED' });
  });

  it('takes over a stale lock of a dead pid or of another boot', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'LOCK'), '2147483646 whatever\n');
    const q = await DurableQueue.open(dir);
    await q.close();
    writeFileSync(join(dir, 'LOCK'), `${process.pid} another-boot-id\n`);
    const q2 = await DurableQueue.open(dir);
    await q2.close();
    writeFileSync(join(dir, 'LOCK'), 'garbage');
    const q3 = await DurableQueue.open(dir);
    await q3.close();
    expect(existsSync(join(dir, 'LOCK'))).toBe(false);
  });

  it('refuses a directory whose format marker names another format', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'meta.json'), JSON.stringify({ format: 'mqtt-edge-durable-queue', version: 99 }));
    await expect(DurableQueue.open(dir)).rejects.toMatchObject({ code: 'FORMAT' });
    expect(existsSync(join(dir, 'LOCK'))).toBe(false);
    writeFileSync(join(dir, 'meta.json'), '\0\0\0garbage');
    const q = await DurableQueue.open(dir);
    expect(q.stats().recovery.metaRewritten).toBe(true);
    await q.close();
  });
});
