/**
 * Issue 18.4 (flash wear): the acknowledge cursor is written in place, in one of two checksummed
 * 16-byte slots of a fixed 528-byte file (offsets 0 and 512, different sectors), alternately, so a
 * torn write leaves the other slot valid. No new file, no rename, no fsync per acknowledge batch.
 * A queue an earlier version left (a 16-byte cursor file) still opens at its cursor.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { crc32c } from '../src/node/durable-queue/crc32c.ts';
import { DurableQueue } from '../src/node/durable-queue/index.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-cur-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function msg(i: number): OutboxMessage {
  return { topic: `s/${i}`, payload: new Uint8Array(Buffer.from(`v=${i}`)), qos: 1, retain: false };
}
/** The cursor as version 1 wrote it: magic, seq low, seq high, CRC-32C of the first 12 bytes. */
function slot(seq: number): Buffer {
  const b = Buffer.alloc(16);
  b.write('MEQC', 0, 'latin1');
  b.writeUInt32LE(seq >>> 0, 4);
  b.writeUInt32LE(Math.floor(seq / 2 ** 32), 8);
  b.writeUInt32LE(crc32c(b, 0, 12), 12);
  return b;
}
async function filled(n: number): Promise<string> {
  const dir = tmp();
  const q = await DurableQueue.open(dir);
  for (let i = 1; i <= n; i++) await q.put(msg(i));
  await q.close();
  return dir;
}
async function seqsAfterOpen(dir: string): Promise<{ seqs: number[]; cursor: string }> {
  const q = await DurableQueue.open(dir);
  const seqs = q.read(0, 1000).map((e) => e.seq);
  const cursor = q.stats().recovery.cursor;
  await q.close();
  return { seqs, cursor };
}

describe('issue 18.4: the cursor written in place', () => {
  it('issue 18.4: acknowledge batches rewrite the same file in place (same inode), two checksummed slots', async () => {
    const dir = await filled(10);
    const q = await DurableQueue.open(dir, { cursorEveryAcks: 1 });
    q.ack(1);
    const file = join(dir, 'cursor');
    await expect.poll(() => statSync(file).size).toBe(528);
    const ino = statSync(file).ino;
    for (let s = 2; s <= 6; s++) {
      q.ack(s);
      await expect.poll(() => q.stats().cursor).toBe(s);
    }
    expect(statSync(file).ino).toBe(ino);
    const b = readFileSync(file);
    const seqs = [0, 512].map((o) => b.readUInt32LE(o + 4));
    for (const o of [0, 512]) expect(crc32c(b, o, o + 12)).toBe(b.readUInt32LE(o + 12));
    // the two slots hold the last two values written: 6 and 5
    expect(seqs.sort()).toEqual([5, 6]);
    await q.close();
    expect(statSync(file).ino).toBe(ino);
    expect((await seqsAfterOpen(dir)).seqs).toEqual([7, 8, 9, 10]);
  });

  it('issue 18.4: a torn slot (garbage, zeroes or a bad CRC) leaves the other slot: the larger valid seq wins', async () => {
    const dir = await filled(10);
    const file = join(dir, 'cursor');
    const torn = [
      Buffer.alloc(16, 0xa5),
      Buffer.alloc(16),
      Buffer.from(slot(9).map((x, i) => (i === 5 ? x ^ 1 : x))),
    ];
    for (const bad of torn) {
      for (const [goodAt, badAt] of [
        [0, 512],
        [512, 0],
      ]) {
        const b = Buffer.alloc(528);
        slot(4).copy(b, goodAt);
        bad.copy(b, badAt);
        writeFileSync(file, b);
        const r = await seqsAfterOpen(dir);
        expect(r).toEqual({ seqs: [5, 6, 7, 8, 9, 10], cursor: 'ok' });
      }
    }
    const both = Buffer.alloc(528);
    slot(3).copy(both, 0);
    slot(7).copy(both, 512);
    writeFileSync(file, both);
    expect((await seqsAfterOpen(dir)).seqs).toEqual([8, 9, 10]);
    const none = Buffer.alloc(528, 0xff);
    writeFileSync(file, none);
    expect(await seqsAfterOpen(dir)).toEqual({ seqs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], cursor: 'invalid' });
  });

  it('issue 18.4 (recovery): a queue directory an earlier version left, with a 16-byte cursor file, opens at its cursor and keeps going', async () => {
    const dir = await filled(10);
    const file = join(dir, 'cursor');
    writeFileSync(file, slot(6));
    expect(await seqsAfterOpen(dir)).toEqual({ seqs: [7, 8, 9, 10], cursor: 'ok' });
    const q = await DurableQueue.open(dir, { cursorEveryAcks: 1 });
    q.ack(7);
    q.ack(8);
    await q.close();
    expect(statSync(file).size).toBe(528);
    expect((await seqsAfterOpen(dir)).seqs).toEqual([9, 10]);
  });
});
