import { describe, expect, it } from 'vitest';
import { MemoryOutbox } from '../src/core/memory-outbox.ts';
import { OutboxFullError, type OutboxMessage } from '../src/core/outbox.ts';

const msg = (topic: string, n = 4): OutboxMessage => ({
  topic,
  payload: new Uint8Array(n),
  qos: 1,
  retain: false,
});

describe('MemoryOutbox', () => {
  it('reads in seq order after a cursor, acks out of order', async () => {
    const o = new MemoryOutbox();
    const seqs = [];
    for (let i = 0; i < 10; i++) seqs.push(await o.put(msg(`t/${i}`)));
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(o.read(0, 3).map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(o.read(3, 2).map((e) => e.message.topic)).toEqual(['t/3', 't/4']);
    o.ack(5);
    o.ack(1);
    o.ack(42); // unknown: no-op
    expect(o.read(0, 100).map((e) => e.seq)).toEqual([2, 3, 4, 6, 7, 8, 9, 10]);
    expect(o.stats().count).toBe(8);
    expect(o.stats().bytes).toBe(8 * (4 + 3));
  });

  it('drop-oldest keeps the newest within count and bytes, and counts the drops', () => {
    const o = new MemoryOutbox({ maxCount: 3, maxBytes: 1000 });
    for (let i = 0; i < 5; i++) o.putSync(msg(`t${i}`));
    expect(o.read(0, 10).map((e) => e.message.topic)).toEqual(['t2', 't3', 't4']);
    expect(o.stats().droppedOldest).toBe(2);
    const dropped: number[] = [];
    o.onDrop = (seq) => dropped.push(seq);
    o.putSync(msg('t5'));
    expect(dropped).toEqual([3]);
    const b = new MemoryOutbox({ maxBytes: 30 });
    for (let i = 0; i < 4; i++) b.putSync(msg(`b${i}`, 8)); // 10 bytes each
    expect(b.stats()).toMatchObject({ count: 3, bytes: 30, droppedOldest: 1 });
  });

  it('reject-new refuses and counts, storing nothing', async () => {
    const o = new MemoryOutbox({ maxCount: 2, policy: 'reject-new' });
    await o.put(msg('a'));
    await o.put(msg('b'));
    await expect(o.put(msg('c'))).rejects.toBeInstanceOf(OutboxFullError);
    expect(() => o.putSync(msg('d'))).toThrow(OutboxFullError);
    expect(o.stats()).toMatchObject({ count: 2, rejectedNew: 2 });
    expect(o.read(0, 10).map((e) => e.message.topic)).toEqual(['a', 'b']);
  });

  it('a message bigger than the byte bound is rejected even under drop-oldest', () => {
    const o = new MemoryOutbox({ maxBytes: 10 });
    o.putSync(msg('a', 2));
    expect(() => o.putSync(msg('big', 20))).toThrow(OutboxFullError);
    expect(o.stats()).toMatchObject({ count: 1, rejectedNew: 1, droppedOldest: 0 });
  });

  it('reports the age of the oldest message from its clock', () => {
    let t = 100;
    const o = new MemoryOutbox({ clock: () => t });
    o.putSync(msg('a'));
    t = 350;
    o.putSync(msg('b'));
    expect(o.stats(400).oldestAgeMs).toBe(300);
    o.ack(1);
    expect(o.stats(400).oldestAgeMs).toBe(50);
    o.ack(2);
    expect(o.stats(400).oldestAgeMs).toBe(0);
  });

  it('stays correct through compaction of a long acked prefix', () => {
    const o = new MemoryOutbox();
    for (let i = 0; i < 5000; i++) o.putSync(msg('x'));
    for (let s = 1; s <= 4000; s++) o.ack(s);
    expect(o.read(0, 3).map((e) => e.seq)).toEqual([4001, 4002, 4003]);
    expect(o.read(4500, 2).map((e) => e.seq)).toEqual([4501, 4502]);
    expect(o.stats().count).toBe(1000);
  });
});
