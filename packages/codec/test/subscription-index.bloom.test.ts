/**
 * The Bloom filter in front of the exact-filter table and the trie's level tables: a clear bit
 * skips the lookup, yet no filter is ever missed, stale bits left by removals cost a lookup
 * and never a match, and the bits are rebuilt (bounded) under churn.
 */
import { describe, expect, it } from 'vitest';
import { SubscriptionIndex } from '../src/index.ts';
import { referenceMatch } from './topic-vectors.ts';

interface Inside {
  exact: { get(key: string, h: number): unknown };
  bloom: { bits: Int32Array; reset(live: number): void };
}

/** Counts the exact table's lookups (match() reaches it only through `get`). */
function countLookups(index: SubscriptionIndex<number>): { calls: number } {
  const exact = (index as unknown as Inside).exact;
  const get = exact.get.bind(exact);
  const counter = { calls: 0 };
  exact.get = (k: string, h: number) => {
    counter.calls++;
    return get(k, h);
  };
  return counter;
}

function hits(index: SubscriptionIndex<number>, topic: string): number[] {
  const out: number[] = [];
  index.match(topic, (v) => out.push(v));
  return out.sort((a, b) => a - b);
}

describe('SubscriptionIndex path Bloom filter (exact filters and trie tables)', () => {
  it('skips the lookup for most topics that match no exact filter, and finds every exact filter', () => {
    const index = new SubscriptionIndex<number>();
    const n = 5000;
    for (let i = 0; i < n; i++) index.add(`site/${i % 100}/dev/${i}/temp`, i);
    const lookups = countLookups(index);
    for (let i = 0; i < n; i++) expect(hits(index, `site/${i % 100}/dev/${i}/temp`)).toEqual([i]);
    expect(lookups.calls).toBe(n);
    lookups.calls = 0;
    const misses = 20_000;
    for (let i = 0; i < misses; i++) expect(hits(index, `site/${i % 100}/dev/${i}/hum`)).toEqual([]);
    // 8-16 bits per filter: a few percent of false positives at most, far from one per topic.
    expect(lookups.calls).toBeLessThan(misses / 5);
  });

  it('never loses a match to a stale bit: removal leaves the bit, re-adding and neighbours still match', () => {
    const index = new SubscriptionIndex<number>();
    index.add('a/b', 1);
    index.add('a/c', 2);
    expect(index.remove('a/b', 1)).toBe(true);
    expect(hits(index, 'a/b')).toEqual([]);
    expect(hits(index, 'a/c')).toEqual([2]);
    index.add('a/b', 3);
    expect(hits(index, 'a/b')).toEqual([3]);
    // A second value on the same filter does not mark again, and removing one keeps the other.
    index.add('a/b', 4);
    expect(index.remove('a/b', 3)).toBe(true);
    expect(hits(index, 'a/b')).toEqual([4]);
  });

  it('rebuilds the bits after many removals: size stays bounded, live filters found, dead ones not', () => {
    const index = new SubscriptionIndex<number>();
    const live = 50;
    for (let i = 0; i < live; i++) index.add(`keep/${i}`, i);
    const inside = index as unknown as Inside;
    let maxWords = 0;
    for (let round = 0; round < 200; round++) {
      for (let i = 0; i < 100; i++) index.add(`churn/${round}/${i}`, 1000 + i);
      for (let i = 0; i < 100; i++) expect(index.remove(`churn/${round}/${i}`, 1000 + i)).toBe(true);
      maxWords = Math.max(maxWords, inside.bloom.bits.length);
    }
    // 20,000 filters were marked; the bits follow the live count (at most 150), not that.
    expect(maxWords).toBeLessThanOrEqual(64);
    for (let i = 0; i < live; i++) expect(hits(index, `keep/${i}`)).toEqual([i]);
    expect(hits(index, 'churn/7/7')).toEqual([]);
    expect(index.size).toBe(live);
    // After the churn, new filters are still found.
    for (let i = 0; i < 1000; i++) index.add(`new/${i}`, i);
    for (let i = 0; i < 1000; i++) expect(hits(index, `new/${i}`)).toEqual([i]);
    for (let i = 0; i < live; i++) expect(hits(index, `keep/${i}`)).toEqual([i]);
  });

  it('matches exact and wildcard filters of the same topic together', () => {
    const index = new SubscriptionIndex<number>();
    index.add('s/1/t', 1);
    index.add('s/+/t', 2);
    index.add('s/#', 3);
    index.add('', 4);
    expect(hits(index, 's/1/t')).toEqual([1, 2, 3]);
    expect(hits(index, '')).toEqual([4]);
  });

  it('keeps single values and sets apart through every transition (exact and wildcard filters)', () => {
    for (const filter of ['x/y', 'x/+', 'x/#']) {
      const index = new SubscriptionIndex<number>();
      index.add(filter, 1);
      expect(hits(index, 'x/y')).toEqual([1]);
      index.add(filter, 2);
      index.add(filter, 3);
      index.add(filter, 2);
      expect(hits(index, 'x/y')).toEqual([1, 2, 3]);
      expect(index.remove(filter, 1)).toBe(true);
      expect(hits(index, 'x/y')).toEqual([2, 3]);
      expect(index.remove(filter, 3)).toBe(true);
      expect(hits(index, 'x/y')).toEqual([2]);
      expect(index.remove(filter, 3)).toBe(false);
      index.add(filter, 4);
      expect(hits(index, 'x/y')).toEqual([2, 4]);
      expect(index.remove(filter, 2)).toBe(true);
      expect(index.remove(filter, 4)).toBe(true);
      expect(hits(index, 'x/y')).toEqual([]);
      expect(index.isEmpty()).toBe(true);
      expect(index.nodeCount).toBe(2);
    }
  });

  it('asks the bits before a trie table: every wildcard filter under a big level is found, through churn and rebuilds', () => {
    // Parents with hundreds of children (tables, where the bits are asked), under literal and
    // `+` levels, ending in literals, `+` and `#`; then remove most and add others, so stale
    // bits, rebuilds and tables shrinking back to lists all happen.
    const index = new SubscriptionIndex<number>();
    const live = new Map<string, number>();
    const filterOf = (i: number): string => {
      const kind = i % 4;
      if (kind === 0) return `s/+/d/${i}/t`;
      if (kind === 1) return `s/${i % 7}/d/${i}/+`;
      if (kind === 2) return `s/${i % 7}/d/${i}/#`;
      return `+/${i % 7}/d/${i}`;
    };
    const topicsOf = (i: number): string[] => [
      `s/${i % 7}/d/${i}/t`,
      `s/${i % 7}/d/${i}`,
      `x/${i % 7}/d/${i}`,
    ];
    const check = (upTo: number): void => {
      for (let i = 0; i < upTo; i += 7) {
        for (const topic of topicsOf(i)) {
          const want = [...live].filter(([f]) => referenceMatch(f, topic)).map(([, v]) => v);
          expect(hits(index, topic)).toEqual(want.sort((a, b) => a - b));
        }
      }
    };
    for (let i = 0; i < 2000; i++) {
      index.add(filterOf(i), i);
      live.set(filterOf(i), i);
    }
    check(2000);
    for (let i = 0; i < 2000; i++) {
      if (i % 5 === 0) continue;
      expect(index.remove(filterOf(i), i)).toBe(true);
      live.delete(filterOf(i));
    }
    check(2000);
    for (let i = 2000; i < 4000; i++) {
      index.add(filterOf(i), i);
      live.set(filterOf(i), i);
    }
    check(4000);
    for (const [f, v] of live) expect(index.remove(f, v)).toBe(true);
    expect(index.isEmpty()).toBe(true);
    expect(index.nodeCount).toBe(2);
    // The bits follow what is live: 4,000 filters' nodes marked in all, none left.
    expect((index as unknown as Inside).bloom.bits.length).toBeLessThanOrEqual(2048);
  });

  it('rebuilds a logarithmic number of times while growing, and keeps about 8 bits per key', () => {
    const index = new SubscriptionIndex<number>();
    const bloom = (index as unknown as Inside).bloom;
    const reset = bloom.reset.bind(bloom);
    let resets = 0;
    bloom.reset = (live: number) => {
      resets++;
      reset(live);
    };
    const n = 50_000;
    for (let i = 0; i < n; i++) index.add(i % 3 === 0 ? `s/${i}/+` : `s/${i % 10}/${i}`, i);
    // Each rebuild leaves room for 40% more keys or more: about log(n) / log(1.4) of them.
    expect(resets).toBeLessThanOrEqual(Math.ceil(Math.log(n) / Math.log(1.4)) + 2);
    // Keys marked: the exact filters and the trie nodes (one per wildcard filter here).
    const bitsPerKey = (bloom.bits.length * 32) / n;
    expect(bitsPerKey).toBeGreaterThanOrEqual(4);
    expect(bitsPerKey).toBeLessThanOrEqual(12);
  });
});
