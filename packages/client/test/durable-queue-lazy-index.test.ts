/**
 * Sealed segments are summaries until the cursor or a read reaches them; their arrays come back
 * from the index file, or from a scan when the index went bad after the open. These tests check
 * that this never changes what is delivered, counted or kept.
 */
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue, type DurableQueueOptions } from '../src/node/durable-queue/index.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-lazy-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const SMALL: DurableQueueOptions = { segmentBytes: 64 << 10 };

function msg(i: number): OutboxMessage {
  return {
    topic: `sensor/${i}`,
    payload: new Uint8Array(Buffer.from(`value=${i};${'x'.repeat(i % 50)}`)),
    qos: 1,
    retain: false,
  };
}
const msgBytes = (i: number) => msg(i).topic.length + msg(i).payload.length;
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function expectIntact(entries: { seq: number; message: OutboxMessage }[]): void {
  for (const e of entries) {
    const want = msg(e.seq);
    expect(e.message.topic).toBe(want.topic);
    expect(e.message.payload).toEqual(want.payload);
  }
}

async function filled(
  n: number,
  options: DurableQueueOptions = {},
): Promise<{ dir: string; segs: string[] }> {
  const dir = tmp();
  const q = await DurableQueue.open(dir, { fsync: 'never', ...SMALL, ...options });
  for (let i = 1; i <= n; i++) q.put(msg(i));
  await q.close();
  return { dir, segs: logs(dir) };
}
function logs(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .map((f) => join(dir, f));
}
const idxOf = (seg: string) => seg.replace(/\.log$/, '.idx');
const baseOf = (seg: string) => Number(seg.slice(-24, -4));

/** Reads and acks everything, `batch` at a time, as the client does; returns the seqs seen. */
function drain(q: DurableQueue, batch = 97): number[] {
  const seen: number[] = [];
  let after = 0;
  for (;;) {
    const got = q.read(after, batch);
    if (got.length === 0) return seen;
    expectIntact(got);
    for (const e of got) {
      seen.push(e.seq);
      q.ack(e.seq);
    }
    after = got[got.length - 1].seq;
  }
}

describe('sealed segments as summaries', () => {
  it('an indexed open holds the arrays of the first segment and the active one only', async () => {
    const { dir, segs } = await filled(6000);
    expect(segs.length).toBeGreaterThan(5);
    const q = await DurableQueue.open(dir, SMALL);
    const s = q.stats();
    expect(s.recovery.indexedSegments).toBe(segs.length - 1);
    expect(s.loadedSegments).toBe(2);
    expect(s.count).toBe(6000);
    expect(s.bytes).toBe(range(1, 6000).reduce((n, i) => n + msgBytes(i), 0));
    expect(drain(q)).toEqual(range(1, 6000));
    expect(q.stats()).toMatchObject({ count: 0, bytes: 0, cursor: 6000, segments: 1 });
    await q.close();
  });

  it('the cursor in a middle segment: earlier segments removed, stats match a full scan', async () => {
    const { dir, segs } = await filled(6000);
    const mid = baseOf(segs[4]) + 10;
    const a = await DurableQueue.open(dir, SMALL);
    for (let s = 1; s <= mid; s++) a.ack(s);
    await a.close();
    const b = await DurableQueue.open(dir, SMALL);
    const viaIndex = b.stats();
    expect(viaIndex.loadedSegments).toBe(2);
    expect(viaIndex.cursor).toBe(mid);
    await b.close();
    for (const f of readdirSync(dir)) if (f.endsWith('.idx')) rmSync(join(dir, f));
    const c = await DurableQueue.open(dir, SMALL);
    const viaScan = c.stats();
    expect(viaScan.recovery.indexedSegments).toBe(0);
    expect(viaScan.loadedSegments).toBe(2); // scanned, indexed, then let go
    expect({ count: viaScan.count, bytes: viaScan.bytes, cursor: viaScan.cursor }).toEqual({
      count: viaIndex.count,
      bytes: viaIndex.bytes,
      cursor: viaIndex.cursor,
    });
    expect(drain(c)).toEqual(range(mid + 1, 6000));
    await c.close();
  });

  it('acks out of order across segment boundaries, reopened in between, lose and repeat nothing', async () => {
    const { dir, segs } = await filled(5000);
    const b1 = baseOf(segs[1]);
    const b3 = baseOf(segs[3]);
    const q = await DurableQueue.open(dir, SMALL);
    // an ack into a segment no read has reached yet loads it and marks just that seq
    q.ack(b3 + 5);
    q.ack(b1);
    q.ack(2);
    q.ack(1);
    expect(q.stats()).toMatchObject({ count: 4996, cursor: 2 });
    const got = q.read(0, 5000);
    expect(got.map((e) => e.seq)).toEqual(range(3, 5000).filter((s) => s !== b1 && s !== b3 + 5));
    for (const e of got) if (e.seq % 3 === 0) q.ack(e.seq);
    const left = range(3, 5000).filter((s) => s !== b1 && s !== b3 + 5 && s % 3 !== 0);
    expect(q.stats().count).toBe(left.length);
    expect(q.read(0, 10_000).map((e) => e.seq)).toEqual(left);
    await q.close();
    // acks above the cursor are not persisted: what lies above it comes again, all of it
    const r = await DurableQueue.open(dir, SMALL);
    expect(r.stats()).toMatchObject({ cursor: 3, count: 4997 });
    expect(r.read(0, 10_000).map((e) => e.seq)).toEqual(range(4, 5000));
    await r.close();
  });

  it('a long outage: sealed segments nobody read are let go once indexed, and come back on reading', async () => {
    for (const fsync of ['batch', 'never'] as const) {
      const dir = tmp();
      const q = await DurableQueue.open(dir, { ...SMALL, fsync });
      await Promise.all(range(1, 6000).map((i) => q.put(msg(i))));
      await q.flush();
      const s = q.stats();
      expect(s.segments).toBeGreaterThan(5);
      // the first one (the cursor's) may have been reached by stats(); the active one is written to
      expect(s.loadedSegments).toBeLessThanOrEqual(3);
      expect(s.count).toBe(6000);
      expect(drain(q, 1000)).toEqual(range(1, 6000));
      expect(q.stats().count).toBe(0);
      await q.close();
    }
  });

  it('drop-oldest bounds walk into summarised segments', async () => {
    const { dir } = await filled(6000);
    const q = await DurableQueue.open(dir, { ...SMALL, dropPolicy: 'drop-oldest', maxCount: 1000 });
    await q.put(msg(6001));
    const s = q.stats();
    expect(s.count).toBe(1000);
    expect(s.droppedOldest).toBe(5001);
    expect(s.cursor).toBe(5001);
    const got = q.read(0, 2000);
    expect(got.map((e) => e.seq)).toEqual(range(5002, 6001));
    expectIntact(got);
    await q.close();
  });
});

describe('index files that go bad after the open', () => {
  it("deleted, torn, garbage or another segment's: the segment is scanned when reached, nothing is lost", async () => {
    const { dir, segs } = await filled(6000);
    expect(segs.length).toBeGreaterThan(6);
    const q = await DurableQueue.open(dir, SMALL);
    expect(q.stats().recovery.indexedSegments).toBe(segs.length - 1);
    rmSync(idxOf(segs[1]));
    truncateSync(idxOf(segs[2]), 40);
    const g = readFileSync(idxOf(segs[3]));
    g[30] ^= 0x10; // one bit in a record offset: the CRC no longer matches
    writeFileSync(idxOf(segs[3]), g);
    writeFileSync(idxOf(segs[4]), readFileSync(idxOf(segs[5])));
    const bytes = q.stats().bytes;
    expect(drain(q)).toEqual(range(1, 6000));
    const s = q.stats();
    expect(s).toMatchObject({ count: 0, bytes: 0, corruptOnRead: 0 });
    expect(bytes).toBe(range(1, 6000).reduce((n, i) => n + msgBytes(i), 0));
    await q.close();
  });

  it('a rescan rewrites the index, and the next open uses it', async () => {
    const { dir, segs } = await filled(3000);
    const q = await DurableQueue.open(dir, SMALL);
    rmSync(idxOf(segs[1]));
    q.ack(baseOf(segs[1]) + 1); // reaches segment 1 through an ack
    expect(readdirSync(dir)).toContain(idxOf(segs[1]).slice(dir.length + 1));
    await q.close();
    const r = await DurableQueue.open(dir, SMALL);
    expect(r.stats().recovery.indexedSegments).toBe(segs.length - 1);
    expect(r.read(0, 10_000).map((e) => e.seq)).toEqual(range(1, 3000));
    await r.close();
  });

  it('the segment file itself gone after the open: its records are counted lost, the rest delivered', async () => {
    const { dir, segs } = await filled(4000);
    const q = await DurableQueue.open(dir, SMALL);
    const lost = range(baseOf(segs[2]), baseOf(segs[3]) - 1);
    rmSync(segs[2]);
    rmSync(idxOf(segs[2]));
    const seen = drain(q);
    expect(seen).toEqual(range(1, 4000).filter((s) => !lost.includes(s)));
    const s = q.stats();
    expect(s.count).toBe(0);
    expect(s.bytes).toBe(0);
    expect(s.corruptOnRead).toBe(lost.length);
    await q.close();
  });

  it('a segment that cannot be read for now (not gone): read() throws, nothing is lost', async () => {
    const { dir, segs } = await filled(3000);
    const q = await DurableQueue.open(dir, SMALL);
    const aside = `${segs[1]}.aside`;
    renameSync(segs[1], aside);
    mkdirSync(segs[1]); // opens, but every read fails with EISDIR
    const first = baseOf(segs[1]);
    const before = q.read(0, first - 1);
    expect(before.map((e) => e.seq)).toEqual(range(1, first - 1));
    for (const e of before) q.ack(e.seq);
    // read() reports the error, as a failed read always did; acks and the cursor wait
    expect(() => q.read(first - 1, 10)).toThrow(/EISDIR/);
    q.ack(first + 1);
    expect(q.stats()).toMatchObject({ count: 3000 - (first - 1), cursor: first - 1, corruptOnRead: 0 });
    expect(q.stats().loadedSegments).toBeLessThan(q.stats().segments);
    rmdirSync(segs[1]);
    renameSync(aside, segs[1]);
    expect(drain(q)).toEqual(range(first, 3000));
    await q.close();
  });

  it('drop-oldest stopped by a segment that cannot be read for now rejects the new message', async () => {
    const { dir, segs } = await filled(3000);
    const q = await DurableQueue.open(dir, { ...SMALL, dropPolicy: 'drop-oldest', maxCount: 100 });
    const aside = `${segs[1]}.aside`;
    renameSync(segs[1], aside);
    mkdirSync(segs[1]);
    const first = baseOf(segs[1]);
    await expect(q.put(msg(3001))).rejects.toThrow(/full/);
    expect(q.stats()).toMatchObject({ cursor: first - 1, droppedOldest: first - 1, rejectedNew: 1 });
    rmdirSync(segs[1]);
    renameSync(aside, segs[1]);
    expect(await q.put(msg(3001))).toBe(3001);
    expect(q.stats()).toMatchObject({ count: 100, cursor: 2901 });
    expect(q.read(0, 200).map((e) => e.seq)).toEqual(range(2902, 3001));
    await q.close();
  });

  it('drop-oldest walking through a segment whose files vanished after the open', async () => {
    const { dir, segs } = await filled(4000);
    const q = await DurableQueue.open(dir, { ...SMALL, dropPolicy: 'drop-oldest', maxCount: 1000 });
    const lost = range(baseOf(segs[1]), baseOf(segs[2]) - 1);
    rmSync(segs[1]);
    rmSync(idxOf(segs[1]));
    await q.put(msg(4001));
    const s = q.stats();
    expect(s).toMatchObject({ count: 1000, cursor: 3001, corruptOnRead: lost.length });
    expect(s.droppedOldest).toBe(3001 - lost.length);
    const got = q.read(0, 2000);
    expect(got.map((e) => e.seq)).toEqual(range(3002, 4001));
    await q.close();
  });

  it('a segment file cut short after the open (rot under a valid index): the rescan keeps what is whole', async () => {
    const { dir, segs } = await filled(4000);
    const q = await DurableQueue.open(dir, SMALL);
    // the index names the old size: it is void, the scan finds the records before the cut
    const b = readFileSync(segs[2]);
    let last = 8;
    for (let p = 8; p + 4 <= b.length; p += b.readUInt32LE(p)) last = p;
    truncateSync(segs[2], last + 5);
    const fd = openSync(segs[2], 'a');
    writeSync(fd, new Uint8Array(10).fill(0xee));
    closeSync(fd);
    const seen = drain(q);
    const lastOfSeg2 = baseOf(segs[3]) - 1;
    expect(seen).toEqual(range(1, 4000).filter((s) => s !== lastOfSeg2));
    expect(q.stats()).toMatchObject({ count: 0, bytes: 0, corruptOnRead: 1 });
    await q.close();
  });
});

describe('recovery scans without index files', () => {
  it('segments scanned one after another into the same arrays keep their own records and counts', async () => {
    const { dir, segs } = await filled(6000);
    for (const f of readdirSync(dir)) if (f.endsWith('.idx')) rmSync(join(dir, f));
    // a bad record in the middle of segment 2 (an ABSENT slot between good ones), after bigger
    // segments were scanned into the arrays: stale values must not leak into its slots
    const b = readFileSync(segs[2]);
    const offs: number[] = [];
    for (let p = 8; p + 4 <= b.length; p += b.readUInt32LE(p)) offs.push(p);
    const k = Math.floor(offs.length / 2);
    b[offs[k] + 30] ^= 0x10;
    writeFileSync(segs[2], b);
    const lost = baseOf(segs[2]) + k;
    const q = await DurableQueue.open(dir, SMALL);
    const s = q.stats();
    expect(s.recovery).toMatchObject({ indexedSegments: 0, corruptRegions: 1 });
    expect(s.loadedSegments).toBe(2);
    const want = range(1, 6000).filter((x) => x !== lost);
    expect(s.count).toBe(want.length);
    expect(s.bytes).toBe(want.reduce((n, i) => n + msgBytes(i), 0));
    expect(drain(q)).toEqual(want);
    await q.close();
  });
});

describe('an index lagging its segment (it describes fewer records than the file holds)', () => {
  /** The original queue, and segs[1]'s index as written for the file without its last 3 records. */
  async function lagging() {
    const { dir, segs } = await filled(4000);
    const copy = tmp();
    for (const f of readdirSync(dir)) writeFileSync(join(copy, f), readFileSync(join(dir, f)));
    const b = readFileSync(segs[1]);
    const offs: number[] = [];
    for (let p = 8; p + 4 <= b.length; p += b.readUInt32LE(p)) offs.push(p);
    const seg1 = join(copy, segs[1].slice(dir.length + 1));
    truncateSync(seg1, offs[offs.length - 3]); // at a record boundary: a clean, shorter segment
    rmSync(idxOf(seg1));
    const c = await DurableQueue.open(copy, SMALL); // scans it and indexes the shorter file
    await c.close();
    const old = readFileSync(idxOf(seg1));
    expect(old.readUInt32LE(16)).toBe(readFileSync(idxOf(segs[1])).readUInt32LE(16) - 3); // slots
    return { dir, segs, old };
  }

  it('at open: its size does not match, the segment is scanned, every record delivered', async () => {
    const { dir, segs, old } = await lagging();
    writeFileSync(idxOf(segs[1]), old);
    const q = await DurableQueue.open(dir, SMALL);
    expect(q.stats().recovery.indexedSegments).toBe(segs.length - 2);
    expect(q.stats().count).toBe(4000);
    expect(drain(q)).toEqual(range(1, 4000));
    await q.close();
  });

  it('after the open: loading it is refused the same way, every record delivered', async () => {
    const { dir, segs, old } = await lagging();
    const q = await DurableQueue.open(dir, SMALL);
    writeFileSync(idxOf(segs[1]), old);
    expect(drain(q)).toEqual(range(1, 4000));
    expect(q.stats()).toMatchObject({ count: 0, bytes: 0, corruptOnRead: 0 });
    await q.close();
  });
});

describe('index format', () => {
  it('a version 1 index (offsets and sizes apart) is not trusted: scanned and rewritten', async () => {
    const { dir, segs } = await filled(3000);
    const b = readFileSync(idxOf(segs[0]));
    b[4] = 1;
    writeFileSync(idxOf(segs[0]), b);
    const a = await DurableQueue.open(dir, SMALL);
    expect(a.stats().recovery.indexedSegments).toBe(segs.length - 2);
    expect(a.read(0, 10_000).map((e) => e.seq)).toEqual(range(1, 3000));
    await a.close();
    expect(readFileSync(idxOf(segs[0]))[4]).toBe(2);
  });
});
