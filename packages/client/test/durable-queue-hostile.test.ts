/**
 * Issue 12 (hostile input for the durable queue's own reader): every file the open reads (the
 * segments, their index files, the cursor, the format marker, the lock) is handed truncated,
 * bit-flipped, oversized and garbage contents. The open never crashes and never allocates what a
 * length field or a file's size claims; it cuts or ignores what is bad and says so in
 * `stats().recovery`, and every intact record is still delivered.
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { crc32c, DurableQueue } from '../src/node/durable-queue/index.ts';
import { tmpDirs } from './helpers/dq-files.ts';

const tmp = tmpDirs('mqtt-edge-dq-hostile-');

const msg = (i: number): OutboxMessage => ({
  topic: `sensor/${i}`,
  payload: new Uint8Array(Buffer.from(`value=${i}`)),
  qos: 1,
  retain: false,
});
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function filled(n: number, segmentBytes = 8 << 20): Promise<{ dir: string; segs: string[] }> {
  const dir = tmp();
  const q = await DurableQueue.open(dir, { fsync: 'never', segmentBytes });
  for (let i = 1; i <= n; i++) q.put(msg(i));
  await q.close();
  const segs = readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .map((f) => join(dir, f));
  return { dir, segs };
}

/** A sparse file of `size` bytes that starts with `head`: claims much, costs the disk nothing. */
function sparse(path: string, size: number, head: Uint8Array = new Uint8Array(0)): void {
  writeFileSync(path, head);
  truncateSync(path, size);
}

/**
 * Opens, reads everything; the memory the open allocated, even briefly, is checked against
 * `maxGrowth`: the peak RSS of the process (a buffer read and freed again still raises it).
 */
async function openChecked(dir: string, maxGrowth = 64 << 20) {
  const peak = process.resourceUsage().maxRSS * 1024;
  const before = process.memoryUsage();
  const q = await DurableQueue.open(dir);
  const after = process.memoryUsage();
  expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(maxGrowth);
  expect(process.resourceUsage().maxRSS * 1024 - Math.max(peak, before.rss)).toBeLessThan(maxGrowth);
  const seqs = q.read(0, 1_000_000).map((e) => e.seq);
  return { q, seqs, stats: q.stats() };
}

const HUGE = 3 * 2 ** 30; // past what readFileSync can hold in one Buffer
const BIG = 512 << 20;

describe('issue 12: hostile input to the durable queue reader', () => {
  for (const size of [BIG, HUGE]) {
    it(`issue 12: a ${size / 2 ** 20} MiB cursor file is reported invalid, not read whole`, async () => {
      const { dir } = await filled(5);
      sparse(join(dir, 'cursor'), size, Buffer.from('MEQC'));
      const { q, seqs, stats } = await openChecked(dir);
      expect(stats.recovery.cursor).toBe('invalid');
      expect(seqs).toEqual(range(1, 5));
      await q.close();
    });

    it(`issue 12: a ${size / 2 ** 20} MiB meta.json is rewritten, not read whole`, async () => {
      const { dir } = await filled(5);
      sparse(join(dir, 'meta.json'), size, Buffer.from('{"format":'));
      const { q, seqs, stats } = await openChecked(dir);
      expect(stats.recovery.metaRewritten).toBe(true);
      expect(seqs).toEqual(range(1, 5));
      await q.close();
      expect(readFileSync(join(dir, 'meta.json'), 'utf8')).toMatch(/mqtt-edge-durable-queue/);
    });

    it(`issue 12: a ${size / 2 ** 20} MiB LOCK file is a stale lock, not read whole`, async () => {
      const { dir } = await filled(5);
      sparse(join(dir, 'LOCK'), size, Buffer.from('1 '));
      const { q, seqs } = await openChecked(dir);
      expect(seqs).toEqual(range(1, 5));
      await q.close();
    });
  }

  it('issue 12: cursor files truncated, bit-flipped, with a seq past 2^53, or a directory: never trusted, never a crash', async () => {
    const { dir } = await filled(8);
    const q0 = await DurableQueue.open(dir);
    for (let s = 1; s <= 4; s++) q0.ack(s);
    await q0.close();
    const good = readFileSync(join(dir, 'cursor'));
    const first = await openChecked(dir);
    expect(first.seqs).toEqual(range(5, 8));
    await first.q.close();
    // two slots (issue 18.4): at 0 and 512; spoiling one leaves the other, so both are spoiled
    expect(good.length).toBe(528);
    const unsafe = Buffer.from(good);
    for (const at of [0, 512]) {
      unsafe.writeUInt32LE(0xffffffff, at + 4);
      unsafe.writeUInt32LE(0xffffffff, at + 8);
      unsafe.writeUInt32LE(crc32c(unsafe, at, at + 12), at + 12);
    }
    const variants: Array<[string, Buffer]> = [
      ['truncated', good.subarray(0, 11)],
      ['empty', Buffer.alloc(0)],
      ['bit-flipped', Buffer.from(good.map((b, i) => (i === 5 || i === 517 ? b ^ 1 : b)))],
      [
        'a version-1 cursor, bit-flipped',
        Buffer.from(good.subarray(0, 16).map((b, i) => (i === 5 ? b ^ 1 : b))),
      ],
      ['one byte longer', Buffer.concat([good, Buffer.from([0])])],
      ['seq past 2^53', unsafe],
    ];
    for (const [what, bytes] of variants) {
      writeFileSync(join(dir, 'cursor'), bytes);
      const { q, seqs, stats } = await openChecked(dir);
      expect([what, stats.recovery.cursor]).toEqual([what, 'invalid']);
      expect([what, seqs]).toEqual([what, range(1, 8)]);
      await q.close();
    }
    rmSync(join(dir, 'cursor'));
    mkdirSync(join(dir, 'cursor'));
    const asDir = await openChecked(dir);
    expect(asDir.stats.recovery.cursor).toBe('invalid');
    expect(asDir.seqs).toEqual(range(1, 8));
    await asDir.q.close();
    rmSync(join(dir, 'cursor'), { recursive: true });
    writeFileSync(join(dir, 'cursor'), good);
    const last = await openChecked(dir);
    expect(last.seqs).toEqual(range(5, 8));
    await last.q.close();
  });

  it('issue 12: an index claiming 2^28 records (sparse, the right size for it) is refused without reading it through', async () => {
    // 4000 small records: three 64 KiB segments (their records take 41-44 bytes)
    const { dir, segs } = await filled(4000, 64 << 10);
    expect(segs.length).toBeGreaterThan(2);
    const victim = segs[0].replace(/\.log$/, '.idx');
    const head = readFileSync(victim).subarray(0, 24);
    const n = 2 ** 28;
    head.writeUInt32LE(n, 16);
    sparse(victim, 24 + 8 * n + 4, head);
    const { q, seqs, stats } = await openChecked(dir);
    expect(seqs).toEqual(range(1, 4000));
    expect(stats.recovery.indexedSegments).toBe(segs.length - 2);
    await q.close();
  });

  it('issue 12: a first record claiming 4 GiB, a header cut to 3 bytes, another version: recovery cuts there, reports it, and the queue goes on', async () => {
    const cases: Array<[string, (seg: string) => void, number[]]> = [
      [
        'length 0xffffffff',
        (seg) => {
          const fd = openSync(seg, 'r+');
          writeSync(fd, Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, 8);
          closeSync(fd);
        },
        range(2, 5),
      ],
      ['header cut to 3 bytes', (seg) => truncateSync(seg, 3), []],
      [
        'segment format version 9',
        (seg) => {
          const fd = openSync(seg, 'r+');
          writeSync(fd, Buffer.from([9]), 0, 1, 4);
          closeSync(fd);
        },
        range(1, 5),
      ],
    ];
    for (const [what, damage, survivors] of cases) {
      const { dir, segs } = await filled(5);
      damage(segs[0]);
      const { q, seqs, stats } = await openChecked(dir);
      expect([what, seqs]).toEqual([what, survivors]);
      const r = stats.recovery;
      expect([what, r.truncatedTails + r.corruptRegions + r.badHeaders]).not.toEqual([what, 0]);
      const next = await q.put(msg(6));
      expect(next).toBeGreaterThan(survivors.at(-1) ?? 0);
      await q.close();
      const again = await openChecked(dir);
      expect([what, again.seqs]).toEqual([what, [...survivors, next]]);
      await again.q.close();
    }
  });

  it('issue 12: segments full of random garbage (last, and in the middle without an index): removed or emptied, never a crash', async () => {
    let seed = 99;
    const garbage = (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        b[i] = seed >> 16;
      }
      return b;
    };
    const { dir, segs } = await filled(4000, 64 << 10);
    expect(segs.length).toBeGreaterThan(2);
    const middle = segs[1];
    rmSync(middle.replace(/\.log$/, '.idx'));
    const lostFrom = Number(middle.slice(-24, -4));
    const lostTo = Number(segs[2].slice(-24, -4)) - 1;
    writeFileSync(middle, garbage(readFileSync(middle).length));
    const last = join(dir, `${String(4001).padStart(20, '0')}.log`);
    writeFileSync(last, garbage(300_000));
    const { q, seqs, stats } = await openChecked(dir);
    expect(seqs).toEqual(range(1, 4000).filter((s) => s < lostFrom || s > lostTo));
    expect(stats.recovery.removedSegments).toBe(1);
    expect(stats.recovery.truncatedBytes).toBeGreaterThanOrEqual(300_000);
    expect(await q.put(msg(4001))).toBe(4001);
    await q.close();
  });
});
