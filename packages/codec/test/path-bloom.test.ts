/**
 * PathBloom's sizing: after a rebuild for L live keys there is room for 40% more marks before
 * the next one (so rebuilds stay amortised O(1) per mark, never one per insert), about 8 bits
 * per key, and no false negatives.
 */
import { describe, expect, it } from 'vitest';
import { hashStep, levelHash } from '../src/level-table.ts';
import { PathBloom } from '../src/path-bloom.ts';

/** The path hash of the one-level topic `String(i)`, as the index computes it. */
const pathHash = (i: number): number => {
  const s = String(i);
  return hashStep(0, levelHash(s, 0, s.length));
};

describe('PathBloom', () => {
  it('leaves room for 40% more keys after a rebuild, at about 8 bits per key, for every live count up to 70,000', () => {
    const bloom = new PathBloom();
    const bad: string[] = [];
    for (let live = 1; live <= 70_000; live += live < 2000 ? 1 : 97) {
      bloom.reset(live);
      const bitsPerKey = (bloom.bits.length * 32) / live;
      if (live >= 64 && (bitsPerKey < 5.6 || bitsPerKey > 11.4)) bad.push(`${live}: ${bitsPerKey} bits/key`);
      let i = 0;
      for (; i < live; i++) bloom.mark(i);
      for (; i < Math.floor(live * 1.4) && !bloom.due(); i++) bloom.mark(i);
      if (i < Math.floor(live * 1.4)) bad.push(`${live}: due after ${i} marks`);
    }
    expect(bad).toEqual([]);
  });

  it('answers yes for every key marked, and no for most others', () => {
    const bloom = new PathBloom();
    const n = 20_000;
    bloom.reset(n);
    for (let i = 0; i < n; i++) bloom.mark(pathHash(i));
    let missed = 0;
    for (let i = 0; i < n; i++) if (!bloom.has(pathHash(i))) missed++;
    expect(missed).toBe(0);
    let wrong = 0;
    for (let i = n; i < 3 * n; i++) if (bloom.has(pathHash(i))) wrong++;
    // 6.6 bits per key here, two bits each: about 8% (one bit per key would give about 14%).
    expect(wrong / (2 * n)).toBeLessThan(0.11);
  });
});
