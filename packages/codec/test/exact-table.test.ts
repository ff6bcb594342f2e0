import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExactTable } from '../src/exact-table.ts';

/** A few hashes for many keys: long probe runs, wrap-around, and deletions inside them. */
const hashOf = (k: string, spread: number) => ((k.length * 2654435761 + k.charCodeAt(0)) % spread) | 0;

describe('ExactTable', () => {
  it('agrees with a Map under random set/delete, colliding hashes included', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.tuple(fc.boolean(), fc.string({ maxLength: 6 }), fc.integer()), { maxLength: 300 }),
        (spread, ops) => {
          // spread 1: every key has one hash, so the table works on string comparison alone
          const t = new ExactTable<number>();
          const m = new Map<string, number>();
          for (const [del, k, v] of ops) {
            const h = hashOf(k, spread);
            if (del) expect(t.delete(k, h)).toBe(m.delete(k));
            else {
              t.set(k, h, v);
              m.set(k, v);
            }
            expect(t.size).toBe(m.size);
          }
          for (const [, k] of ops) expect(t.get(k, hashOf(k, spread))).toBe(m.get(k));
          const hs: number[] = [];
          t.hashes((h) => hs.push(h));
          expect(hs.sort()).toEqual([...m.keys()].map((k) => hashOf(k, spread)).sort());
        },
      ),
      { numRuns: 300 },
    );
  });

  it('grows, then shrinks and compacts when emptied', () => {
    const t = new ExactTable<number>();
    for (let i = 0; i < 10_000; i++) t.set(`k${i}`, i * 7919, i);
    // three array elements per slot, at most half of the slots in use
    expect(t.slots.length).toBeGreaterThanOrEqual(3 * 2 * 10_000);
    for (let i = 0; i < 10_000; i++) expect(t.get(`k${i}`, i * 7919)).toBe(i);
    for (let i = 0; i < 10_000; i++) expect(t.delete(`k${i}`, i * 7919)).toBe(true);
    expect(t.size).toBe(0);
    expect(t.slots.length).toBeLessThanOrEqual(3 * 16);
    // removal frees: no key or value stays referenced
    expect(t.slots.every((x) => x === undefined || x === 0)).toBe(true);
    expect(t.get('k1', 7919)).toBeUndefined();
  });

  it('takes any int32 hash (negative, zero, extremes) and keeps colliding keys apart', () => {
    const t = new ExactTable<string>();
    const hs = [0, -1, -2147483648, 2147483647, -16, 16];
    // two keys per hash, so every slot run mixes equal hashes of different strings
    for (const h of hs) for (const k of ['a', 'b']) t.set(`${k}${h}`, h, `v${k}${h}`);
    for (const h of hs) for (const k of ['a', 'b']) expect(t.get(`${k}${h}`, h)).toBe(`v${k}${h}`);
    expect(t.get('c0', 0)).toBeUndefined();
    for (const h of hs) expect(t.delete(`a${h}`, h)).toBe(true);
    for (const h of hs) {
      expect(t.get(`a${h}`, h)).toBeUndefined();
      expect(t.get(`b${h}`, h)).toBe(`vb${h}`);
    }
    expect(t.size).toBe(hs.length);
  });
});
