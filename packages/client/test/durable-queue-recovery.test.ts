import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue, type DurableQueueOptions } from '../src/node/durable-queue/index.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-rec-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function msg(i: number): OutboxMessage {
  return {
    topic: `sensor/${i}`,
    payload: new Uint8Array(Buffer.from(`value=${i};${'x'.repeat(i % 50)}`)),
    qos: 1,
    retain: false,
  };
}
function expectIntact(entries: { seq: number; message: OutboxMessage }[]): void {
  for (const e of entries) {
    const want = msg(e.seq);
    expect(e.message.topic).toBe(want.topic);
    expect(e.message.payload).toEqual(want.payload);
  }
}

/** A queue of `n` records (seq i holds msg(i)), closed; returns its dir and segment paths. */
async function filled(
  n: number,
  options: DurableQueueOptions = {},
): Promise<{ dir: string; segs: string[] }> {
  const dir = tmp();
  const q = await DurableQueue.open(dir, { fsync: 'never', ...options });
  for (let i = 1; i <= n; i++) q.put(msg(i));
  await q.close();
  const segs = readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .map((f) => join(dir, f));
  return { dir, segs };
}

/** File offsets of the records of a segment file, by walking the length fields. */
function offsets(path: string): number[] {
  const b = readFileSync(path);
  const out: number[] = [];
  for (let p = 8; p + 4 <= b.length; p += b.readUInt32LE(p)) out.push(p);
  return out;
}

function patch(path: string, at: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, at);
  closeSync(fd);
}
function flip(path: string, at: number): void {
  const b = readFileSync(path);
  patch(path, at, new Uint8Array([b[at] ^ 0x10]));
}

async function reopen(dir: string, options: DurableQueueOptions = {}) {
  const q = await DurableQueue.open(dir, options);
  const all = q.read(0, 1_000_000);
  return { q, all, seqs: all.map((e) => e.seq), stats: q.stats() };
}

describe('torn tail', () => {
  it('a record cut at any point is removed, counted, and appends continue after it', async () => {
    const { dir, segs } = await filled(20);
    const offs = offsets(segs[0]);
    const lastStart = offs[offs.length - 1];
    const size = readFileSync(segs[0]).length;
    for (const cut of [lastStart + 1, lastStart + 4, lastStart + 27, lastStart + 28, size - 1]) {
      const copy = tmp();
      for (const f of readdirSync(dir)) writeFileSync(join(copy, f), readFileSync(join(dir, f)));
      truncateSync(join(copy, '00000000000000000001.log'), cut);
      const { q, seqs, all, stats } = await reopen(copy);
      expect(seqs).toEqual(Array.from({ length: 19 }, (_, i) => i + 1));
      expectIntact(all);
      expect(stats.recovery.truncatedTails).toBe(1);
      expect(stats.recovery.truncatedBytes).toBe(cut - lastStart);
      expect(await q.put(msg(20))).toBe(20);
      await q.close();
      const again = await reopen(copy);
      expect(again.seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expectIntact(again.all);
      expect(again.stats.recovery.truncatedTails).toBe(0);
      await again.q.close();
    }
  });

  it('garbage appended after the last record is cut; every record stays', async () => {
    const { dir, segs } = await filled(10);
    const garbage = new Uint8Array(1000).map((_, i) => (i * 7919 + 13) & 0xff);
    const fd = openSync(segs[0], 'a');
    writeSync(fd, garbage);
    closeSync(fd);
    const { q, seqs, all, stats } = await reopen(dir);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expectIntact(all);
    expect(stats.recovery).toMatchObject({ truncatedTails: 1, truncatedBytes: 1000 });
    expect(await q.put(msg(11))).toBe(11);
    await q.close();
  });

  it('a flipped bit anywhere in the last record cuts only that record', async () => {
    const { dir, segs } = await filled(10);
    const offs = offsets(segs[0]);
    const last = offs[offs.length - 1];
    const size = readFileSync(segs[0]).length;
    for (const at of [last, last + 5, last + 9, last + 17, last + 24, last + 30, size - 1]) {
      const copy = tmp();
      for (const f of readdirSync(dir)) writeFileSync(join(copy, f), readFileSync(join(dir, f)));
      flip(join(copy, '00000000000000000001.log'), at);
      const { q, seqs, all, stats } = await reopen(copy);
      expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expectIntact(all);
      expect(stats.recovery.truncatedTails).toBe(1);
      await q.close();
    }
  });
});

describe('corruption in the middle', () => {
  it('a bad record between good ones loses only itself: the scan resynchronises', async () => {
    const { dir, segs } = await filled(50);
    const offs = offsets(segs[0]);
    flip(segs[0], offs[20] + 30); // inside the topic of seq 21
    const { q, seqs, all, stats } = await reopen(dir);
    expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1).filter((s) => s !== 21));
    expectIntact(all);
    expect(stats.recovery).toMatchObject({ corruptRegions: 1, truncatedTails: 0 });
    expect(stats.recovery.corruptBytes).toBe(offs[21] - offs[20]);
    expect(stats.count).toBe(49);
    // the queue stays usable: acks across the hole move the cursor over it
    for (let s = 1; s <= 30; s++) q.ack(s);
    expect(q.stats().cursor).toBe(30);
    expect(await q.put(msg(51))).toBe(51);
    await q.close();
  });

  it('a huge length field in the middle is not allocated and does not hide later records', async () => {
    const { dir, segs } = await filled(30);
    const offs = offsets(segs[0]);
    const huge = Buffer.alloc(4);
    huge.writeUInt32LE(0xfffffff0);
    patch(segs[0], offs[10], huge);
    const before = process.memoryUsage().arrayBuffers;
    const { q, seqs, stats } = await reopen(dir);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20);
    expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => i + 1).filter((s) => s !== 11));
    expect(stats.recovery.corruptRegions).toBe(1);
    await q.close();
  });

  it('several damaged records across several segments: every intact record survives', async () => {
    const { dir, segs } = await filled(3000, { segmentBytes: 64 << 10 });
    expect(segs.length).toBeGreaterThan(2);
    const lost = new Set<number>();
    for (const [k, path] of segs.entries()) {
      const offs = offsets(path);
      const base = Number(path.slice(-24, -4));
      for (const idx of [3, 4, 40].filter((i) => i < offs.length - 1)) {
        flip(path, offs[idx] + 12 + k); // seq or timestamp bytes
        lost.add(base + idx);
      }
    }
    const { q, seqs, all } = await reopen(dir, { segmentBytes: 64 << 10 });
    expect(seqs).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1).filter((s) => !lost.has(s)));
    expectIntact(all);
    await q.close();
  });

  it('random damage never crashes recovery and never yields a wrong record (bounded fuzz)', async () => {
    const { dir } = await filled(200);
    const original = readFileSync(join(dir, '00000000000000000001.log'));
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 40; round++) {
      const copy = tmp();
      writeFileSync(join(copy, 'meta.json'), readFileSync(join(dir, 'meta.json')));
      const b = Buffer.from(original);
      const hits = 1 + rnd(5);
      for (let h = 0; h < hits; h++) {
        const at = rnd(b.length);
        const kind = rnd(3);
        if (kind === 0) b[at] ^= 1 << rnd(8);
        else if (kind === 1) b.fill(0, at, Math.min(b.length, at + rnd(300)));
        else b.fill(0xff, at, Math.min(b.length, at + rnd(40)));
      }
      const cut = rnd(4) === 0 ? rnd(b.length) : b.length;
      writeFileSync(join(copy, '00000000000000000001.log'), b.subarray(0, cut));
      const { q, seqs, all } = await reopen(copy);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]);
      expectIntact(all);
      const next = await q.put(msg(999));
      expect(next).toBeGreaterThan(seqs.length > 0 ? seqs[seqs.length - 1] : 0);
      await q.close();
      rmSync(copy, { recursive: true });
      dirs.splice(dirs.indexOf(copy), 1);
    }
  });

  it('a record that rots after open is skipped by read() and counted', async () => {
    const { dir, segs } = await filled(10);
    const offs = offsets(segs[0]);
    const q = await DurableQueue.open(dir);
    flip(segs[0], offs[0] + 30); // seq 1, the oldest
    flip(segs[0], offs[4] + 30); // seq 5
    const seqs = q.read(0, 100).map((e) => e.seq);
    expect(seqs).toEqual([2, 3, 4, 6, 7, 8, 9, 10]);
    expect(q.stats()).toMatchObject({ corruptOnRead: 2, count: 8, cursor: 1 });
    await q.close();
  });
});

describe('hostile directory contents', () => {
  it('a last segment that is all zeros opens empty and takes appends', async () => {
    const { dir, segs } = await filled(5);
    writeFileSync(join(dir, '00000000000000000006.log'), Buffer.alloc(1 << 20));
    const { q, seqs, stats } = await reopen(dir);
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    expect(stats.recovery).toMatchObject({ badHeaders: 1, truncatedTails: 1 });
    expect(await q.put(msg(6))).toBe(6);
    await q.close();
    const again = await reopen(dir);
    expect(again.seqs).toEqual([1, 2, 3, 4, 5, 6]);
    expect(again.stats.recovery.badHeaders).toBe(0);
    await again.q.close();
    expect(segs.length).toBe(1);
  });

  it('a middle segment that is all zeros (no index) is removed; the segments around it survive', async () => {
    const { dir, segs } = await filled(3000, { segmentBytes: 64 << 10 });
    expect(segs.length).toBeGreaterThanOrEqual(3);
    const victim = segs[1];
    rmSync(victim.replace(/\.log$/, '.idx'));
    const lostFrom = Number(victim.slice(-24, -4));
    const lostTo = Number(segs[2].slice(-24, -4)) - 1;
    writeFileSync(victim, Buffer.alloc(readFileSync(victim).length));
    const { q, seqs, all, stats } = await reopen(dir, { segmentBytes: 64 << 10 });
    expect(seqs).toEqual(
      Array.from({ length: 3000 }, (_, i) => i + 1).filter((s) => s < lostFrom || s > lostTo),
    );
    expectIntact(all);
    expect(stats.recovery.removedSegments).toBe(1);
    await q.close();
  });

  it('a middle segment zeroed under a valid index: its records fail their CRC on read, the rest survive', async () => {
    const { dir, segs } = await filled(3000, { segmentBytes: 64 << 10 });
    const victim = segs[1];
    const lostFrom = Number(victim.slice(-24, -4));
    const lostTo = Number(segs[2].slice(-24, -4)) - 1;
    writeFileSync(victim, Buffer.alloc(readFileSync(victim).length));
    const { q, seqs, all, stats } = await reopen(dir, { segmentBytes: 64 << 10 });
    expect(stats.recovery.indexedSegments).toBe(segs.length - 1);
    expect(seqs).toEqual(
      Array.from({ length: 3000 }, (_, i) => i + 1).filter((s) => s < lostFrom || s > lostTo),
    );
    expectIntact(all);
    expect(q.stats().corruptOnRead).toBe(lostTo - lostFrom + 1);
    expect(q.stats().count).toBe(3000 - (lostTo - lostFrom + 1));
    await q.close();
  });

  it('an empty (0-byte) last segment, as a crash right after creating it leaves', async () => {
    const { dir } = await filled(5);
    writeFileSync(join(dir, '00000000000000000006.log'), Buffer.alloc(0));
    const { q, seqs } = await reopen(dir);
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    expect(await q.put(msg(6))).toBe(6);
    await q.close();
    expect((await reopen(dir)).seqs).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('a missing cursor file redelivers everything on disk', async () => {
    const { dir } = await filled(5);
    const q0 = await DurableQueue.open(dir);
    q0.ack(1);
    q0.ack(2);
    await q0.close();
    rmSync(join(dir, 'cursor'));
    const { q, seqs, stats } = await reopen(dir);
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    expect(stats.recovery.cursor).toBe('missing');
    await q.close();
  });

  it('a garbage cursor file is reported invalid and treated as missing', async () => {
    const { dir } = await filled(3);
    writeFileSync(join(dir, 'cursor'), Buffer.from('MEQC\xff\xff\xff\xff\xff\xff\xff\xff1234', 'latin1'));
    const { q, seqs, stats } = await reopen(dir);
    expect(seqs).toEqual([1, 2, 3]);
    expect(stats.recovery.cursor).toBe('invalid');
    await q.close();
  });

  it('a cursor past the end: nothing is delivered and new seqs start above it', async () => {
    const { dir } = await filled(5);
    const c = await DurableQueue.open(dir);
    for (let s = 1; s <= 5; s++) c.ack(s);
    await c.close();
    // forge a cursor far ahead (e.g. records lost with a disk that lied about fsync)
    const cur = readFileSync(join(dir, 'cursor'));
    const forged = Buffer.from(cur);
    forged.writeUInt32LE(1000, 4);
    const { crc32c } = await import('../src/node/durable-queue/index.ts');
    forged.writeUInt32LE(crc32c(forged, 0, 12), 12);
    writeFileSync(join(dir, 'cursor'), forged);
    const { q, seqs, stats } = await reopen(dir);
    expect(seqs).toEqual([]);
    expect(stats).toMatchObject({ count: 0, cursor: 1000, nextSeq: 1001 });
    expect(stats.recovery.cursor).toBe('past-end');
    expect(await q.put(msg(1001))).toBe(1001);
    await q.close();
    const again = await reopen(dir);
    expect(again.seqs).toEqual([1001]);
    expectIntact(again.all);
    await again.q.close();
  });

  it('ignores files that are not segments', async () => {
    const { dir } = await filled(3);
    writeFileSync(join(dir, 'notes.log'), 'hello');
    writeFileSync(join(dir, '00000000000000000000.log'), 'zero is not a seq');
    writeFileSync(join(dir, 'cursor.tmp'), 'half-written');
    mkdirSync(join(dir, '00000000000000000099.log'));
    const { q, seqs } = await reopen(dir);
    expect(seqs).toEqual([1, 2, 3]);
    await q.close();
    expect(readdirSync(dir)).not.toContain('cursor.tmp');
  });
});

describe('segment index files', () => {
  const idxFiles = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.idx'));

  it('sealed segments get an index; reopening from it gives exactly what a scan gives', async () => {
    const { dir, segs } = await filled(3000, { segmentBytes: 64 << 10 });
    expect(idxFiles(dir).length).toBe(segs.length - 1);
    const a = await reopen(dir);
    expect(a.stats.recovery.indexedSegments).toBe(segs.length - 1);
    const viaIndex = a.all.map((e) => [e.seq, e.message.topic, Buffer.from(e.message.payload).toString()]);
    const bytes = a.stats.bytes;
    await a.q.close();
    for (const f of idxFiles(dir)) rmSync(join(dir, f));
    const b = await reopen(dir);
    expect(b.stats.recovery.indexedSegments).toBe(0);
    expect(b.all.map((e) => [e.seq, e.message.topic, Buffer.from(e.message.payload).toString()])).toEqual(
      viaIndex,
    );
    expect(b.stats.bytes).toBe(bytes);
    await b.q.close();
    expect(idxFiles(dir).length).toBe(segs.length - 1); // rewritten by the scan
  });

  it('a damaged, truncated or mismatched index is ignored, the segment scanned and the index rewritten', async () => {
    const { dir, segs } = await filled(6000, { segmentBytes: 64 << 10 });
    expect(segs.length).toBeGreaterThan(5);
    const idx = (k: number) => segs[k].replace(/\.log$/, '.idx');
    flip(idx(0), 30);
    truncateSync(idx(1), 20);
    writeFileSync(idx(2), readFileSync(idx(3))); // another segment's index
    const fd = openSync(segs[3], 'a'); // the file no longer has the size its index names
    writeSync(fd, new Uint8Array(100).fill(0xee));
    closeSync(fd);
    const a = await reopen(dir);
    expect(a.stats.recovery.indexedSegments).toBe(segs.length - 1 - 4);
    expect(a.stats.recovery.truncatedBytes).toBe(100);
    expect(a.seqs).toEqual(Array.from({ length: 6000 }, (_, i) => i + 1));
    expectIntact(a.all);
    await a.q.close();
    const b = await reopen(dir);
    expect(b.stats.recovery.indexedSegments).toBe(segs.length - 1);
    await b.q.close();
  });

  it('an orphan index is removed, and acknowledged segments take their index with them', async () => {
    const { dir, segs } = await filled(3000, { segmentBytes: 64 << 10 });
    writeFileSync(join(dir, '00000000000000999999.idx'), 'orphan');
    const q = await DurableQueue.open(dir);
    expect(idxFiles(dir)).not.toContain('00000000000000999999.idx');
    for (let s = 1; s <= 3000; s++) q.ack(s);
    expect(idxFiles(dir)).toEqual([]);
    expect(readdirSync(dir).filter((f) => f.endsWith('.log'))).toEqual([basename(segs[segs.length - 1])]);
    await q.close();
  });

  it('under fsync batch, a sealed segment is indexed once the fsync that seals it completed', async () => {
    const dir = tmp();
    const q = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    await Promise.all(Array.from({ length: 3000 }, (_, i) => q.put(msg(i + 1))));
    await q.flush();
    const logs = readdirSync(dir).filter((f) => f.endsWith('.log')).length;
    expect(idxFiles(dir).length).toBe(logs - 1);
    await q.close();
  });
});
