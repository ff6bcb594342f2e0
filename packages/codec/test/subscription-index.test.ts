import { describe, expect, it } from 'vitest';
import { SubscriptionIndex } from '../src/index.ts';
import { MATCH_VECTORS } from './topic-vectors.ts';

interface Sub {
  client: string;
  qos: 0 | 1 | 2;
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
  id?: number;
}

function matches<V>(index: SubscriptionIndex<V>, topic: string): V[] {
  const out: V[] = [];
  index.match(topic, (v) => out.push(v));
  return out;
}

function sharedMatches<V>(index: SubscriptionIndex<V>, topic: string): Map<string, V[]> {
  const out = new Map<string, V[]>();
  index.match(
    topic,
    () => {},
    (group, members) => {
      expect(out.has(group), `group ${group} delivered twice`).toBe(false);
      out.set(group, [...members]);
    },
  );
  return out;
}

describe('SubscriptionIndex: the spec examples', () => {
  for (const v of MATCH_VECTORS) {
    it(`'${v.filter}' ${v.matches ? 'gets' : 'does not get'} '${v.topic}' (${v.source})`, () => {
      const index = new SubscriptionIndex<string>();
      index.add(v.filter, 'x');
      index.add('unrelated/filter', 'y');
      if (v.filter.startsWith('$share/')) {
        const groups = sharedMatches(index, v.topic);
        expect(groups.size).toBe(v.matches ? 1 : 0);
      } else {
        expect(matches(index, v.topic)).toEqual(v.matches ? ['x'] : []);
      }
    });
  }
});

describe('SubscriptionIndex', () => {
  it('holds a filter ending in + on its parent: one level, empty included, $ rule, no extra node', () => {
    const index = new SubscriptionIndex<number>();
    const empty = index.nodeCount;
    index.add('dev/1/+', 1);
    // dev and 1: no node of its own for the final `+`
    expect(index.nodeCount).toBe(empty + 2);
    index.add('dev/1/+/x', 2);
    index.add('dev/1', 3);
    index.add('dev/1/#', 4);
    index.add('+', 5);
    index.add('+/+', 6);
    index.add('$share/g/dev/1/+', 7);
    expect(matches(index, 'dev/1/a').sort()).toEqual([1, 4]);
    expect(matches(index, 'dev/1/').sort()).toEqual([1, 4]);
    expect(matches(index, 'dev/1/a/x').sort()).toEqual([2, 4]);
    expect(matches(index, 'dev/1').sort()).toEqual([3, 4, 6]);
    expect(matches(index, 'dev/1/a/b')).toEqual([4]);
    expect(matches(index, 'x').sort()).toEqual([5]);
    expect(matches(index, '$SYS')).toEqual([]);
    expect(matches(index, '/finance')).toEqual([6]);
    expect(sharedMatches(index, 'dev/1/a').get('g')).toEqual([7]);
    expect(sharedMatches(index, 'dev/1').size).toBe(0);
    // A set on the same filter, then back to one value, then none: the node goes too.
    index.add('dev/1/+', 8);
    expect(matches(index, 'dev/1/z').sort()).toEqual([1, 4, 8]);
    for (const [f, v] of [
      ['dev/1/+', 1],
      ['dev/1/+', 8],
      ['dev/1/+/x', 2],
      ['dev/1', 3],
      ['dev/1/#', 4],
      ['+', 5],
      ['+/+', 6],
      ['$share/g/dev/1/+', 7],
    ] as const)
      expect(index.remove(f, v)).toBe(true);
    expect(index.remove('dev/1/+', 1)).toBe(false);
    expect(index.isEmpty()).toBe(true);
    expect(index.nodeCount).toBe(empty);
  });

  it('keeps the options a broker stores as the value, untouched', () => {
    const index = new SubscriptionIndex<Sub>();
    const sub: Sub = {
      client: 'c1',
      qos: 2,
      noLocal: true,
      retainAsPublished: true,
      retainHandling: 2,
      id: 7,
    };
    index.add('a/+', sub);
    const [got] = matches(index, 'a/b');
    expect(got).toBe(sub);
    expect(got).toEqual({
      client: 'c1',
      qos: 2,
      noLocal: true,
      retainAsPublished: true,
      retainHandling: 2,
      id: 7,
    });
  });

  it('holds many values per filter, each visited once', () => {
    const index = new SubscriptionIndex<number>();
    for (let i = 0; i < 100; i++) index.add('a/b', i);
    expect(index.size).toBe(100);
    expect(matches(index, 'a/b').sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it('adding the same value on the same filter again is a no-op', () => {
    const index = new SubscriptionIndex<string>();
    index.add('a', 'v');
    index.add('a', 'v');
    expect(index.size).toBe(1);
    expect(matches(index, 'a')).toEqual(['v']);
    expect(index.remove('a', 'v')).toBe(true);
    expect(index.remove('a', 'v')).toBe(false);
  });

  it('visits a value once per matching subscription (overlapping filters: the broker dedupes)', () => {
    const index = new SubscriptionIndex<string>();
    index.add('a/+', 'c1');
    index.add('a/#', 'c1');
    index.add('#', 'c1');
    index.add('a/b', 'c2');
    expect(matches(index, 'a/b').sort()).toEqual(['c1', 'c1', 'c1', 'c2']);
    expect(matches(index, 'a').sort()).toEqual(['c1', 'c1']);
  });

  it('removes by identity, in any order, and reports what it did not hold', () => {
    const index = new SubscriptionIndex<{ n: number }>();
    const a = { n: 1 };
    const b = { n: 1 };
    index.add('x/#', a);
    index.add('x/#', b);
    expect(index.remove('x/#', { n: 1 })).toBe(false);
    expect(index.remove('x/+', a)).toBe(false);
    expect(index.remove('y/#', a)).toBe(false);
    expect(index.remove('x', a)).toBe(false);
    expect(index.remove('x/#', b)).toBe(true);
    expect(matches(index, 'x/1')).toEqual([a]);
    expect(index.remove('x/#', a)).toBe(true);
    expect(index.isEmpty()).toBe(true);
  });

  it('frees every node when the last value goes, whatever the order', () => {
    const index = new SubscriptionIndex<number>();
    const empty = index.nodeCount;
    const filters = ['a/b/c', 'a/b', 'a/+/c', 'a/#', '#', '+', '+/+/+/#', '/', '//', 'a/b/c/d/e/f', '$SYS/#'];
    for (let i = 0; i < filters.length; i++) index.add(filters[i], i);
    for (let i = 0; i < 50; i++) index.add(`many/${i}/x`, i);
    expect(index.nodeCount).toBeGreaterThan(empty + 50);
    for (const i of [3, 0, 10, 5, 1, 9, 2, 8, 4, 7, 6]) expect(index.remove(filters[i], i)).toBe(true);
    for (let i = 49; i >= 0; i--) expect(index.remove(`many/${i}/x`, i)).toBe(true);
    expect(index.isEmpty()).toBe(true);
    expect(index.size).toBe(0);
    expect(index.nodeCount).toBe(empty);
  });

  it('keeps a node that still has a child when its own values go', () => {
    const index = new SubscriptionIndex<string>();
    index.add('a/b', 'x');
    index.add('a/b/c', 'y');
    index.add('a/b/#', 'z');
    expect(index.remove('a/b', 'x')).toBe(true);
    expect(matches(index, 'a/b/c').sort()).toEqual(['y', 'z']);
    expect(index.remove('a/b/#', 'z')).toBe(true);
    expect(matches(index, 'a/b/c')).toEqual(['y']);
    expect(matches(index, 'a/b')).toEqual([]);
  });

  it('handles large fan-out (table children) and long buckets (position maps)', () => {
    const index = new SubscriptionIndex<number>();
    for (let i = 0; i < 2000; i++) index.add(`dev/${i}/t`, i);
    for (let i = 0; i < 200; i++) index.add('all', i);
    for (let i = 0; i < 2000; i += 7) expect(matches(index, `dev/${i}/t`)).toEqual([i]);
    expect(matches(index, 'dev/2000/t')).toEqual([]);
    for (let i = 0; i < 200; i += 2) expect(index.remove('all', i)).toBe(true);
    expect(matches(index, 'all').sort((a, b) => a - b)).toEqual(
      Array.from({ length: 100 }, (_, i) => 2 * i + 1),
    );
    for (let i = 0; i < 2000; i++) expect(index.remove(`dev/${i}/t`, i)).toBe(true);
    for (let i = 1; i < 200; i += 2) expect(index.remove('all', i)).toBe(true);
    expect(index.isEmpty()).toBe(true);
    expect(index.nodeCount).toBe(2);
  });

  it('matches deep topics and filters without recursion', () => {
    const index = new SubscriptionIndex<string>();
    const deep = 'a/'.repeat(32_000);
    index.add(`${deep}#`, 'hash');
    index.add(`${'+/'.repeat(32_000)}b`, 'plus');
    index.add('#', 'root');
    expect(matches(index, `${deep}b`).sort()).toEqual(['hash', 'plus', 'root']);
    expect(index.remove(`${deep}#`, 'hash')).toBe(true);
    expect(index.remove(`${'+/'.repeat(32_000)}b`, 'plus')).toBe(true);
    expect(index.remove('#', 'root')).toBe(true);
    expect(index.nodeCount).toBe(2);
  });

  it('refuses changes from inside a visitor, and stays usable', () => {
    const index = new SubscriptionIndex<string>();
    index.add('a', 'x');
    expect(() => index.match('a', () => index.remove('a', 'x'))).toThrow(/during match/);
    expect(() => index.match('a', () => index.add('b', 'y'))).toThrow(/during match/);
    expect(index.remove('a', 'x')).toBe(true);
    expect(index.isEmpty()).toBe(true);
  });

  it('allows a match from inside a visitor', () => {
    const index = new SubscriptionIndex<string>();
    index.add('a/+', 'outer');
    index.add('b/#', 'inner');
    index.add('$share/g/b/c', 'shared');
    const seen: string[] = [];
    index.match('a/1', (v) => {
      seen.push(v);
      index.match(
        'b/c',
        (w) => seen.push(w),
        (g, m) => seen.push(`${g}:${m.join(',')}`),
      );
    });
    expect(seen).toEqual(['outer', 'inner', 'g:shared']);
  });
});

describe('SubscriptionIndex: shared subscriptions', () => {
  it('delivers each matching group once, with its matching members, apart from normal values', () => {
    const index = new SubscriptionIndex<string>();
    index.add('$share/consumer1/sport/tennis/+', 'c1');
    index.add('$share/consumer1/sport/tennis/+', 'c2');
    index.add('$share/consumer2/sport/tennis/+', 'c3');
    index.add('sport/tennis/+', 'plain');
    const normal = matches(index, 'sport/tennis/player1');
    expect(normal).toEqual(['plain']);
    const groups = sharedMatches(index, 'sport/tennis/player1');
    expect([...groups.keys()].sort()).toEqual(['consumer1', 'consumer2']);
    expect(groups.get('consumer1')?.sort()).toEqual(['c1', 'c2']);
    expect(groups.get('consumer2')).toEqual(['c3']);
    expect(index.size).toBe(4);
  });

  it('merges a group spread over several matching filters, without duplicates', () => {
    const index = new SubscriptionIndex<string>();
    index.add('$share/g/a/+', 'm1');
    index.add('$share/g/a/#', 'm2');
    index.add('$share/g/a/#', 'm1');
    index.add('$share/g/+/b', 'm3');
    index.add('$share/h/a/b', 'm4');
    index.add('$share/g/x', 'm5');
    const groups = sharedMatches(index, 'a/b');
    expect(groups.get('g')?.sort()).toEqual(['m1', 'm2', 'm3']);
    expect(groups.get('h')).toEqual(['m4']);
    expect(groups.size).toBe(2);
  });

  it('merges correctly with many groups matching at once', () => {
    const index = new SubscriptionIndex<string>();
    for (let g = 0; g < 40; g++) {
      index.add(`$share/g${g}/t/+`, `a${g}`);
      index.add(`$share/g${g}/t/#`, `b${g}`);
      if (g % 2 === 0) index.add(`$share/g${g}/#`, `a${g}`);
    }
    const groups = sharedMatches(index, 't/x');
    expect(groups.size).toBe(40);
    for (let g = 0; g < 40; g++) expect(groups.get(`g${g}`)?.sort()).toEqual([`a${g}`, `b${g}`]);
  });

  it('applies the $ rule to the inner filter', () => {
    const index = new SubscriptionIndex<string>();
    index.add('$share/g/#', 'all');
    index.add('$share/g/$SYS/#', 'sys');
    expect(sharedMatches(index, '$SYS/x').get('g')).toEqual(['sys']);
    expect(sharedMatches(index, 'x').get('g')).toEqual(['all']);
  });

  it('is silent without a visitShared, and frees its nodes on removal', () => {
    const index = new SubscriptionIndex<string>();
    index.add('$share/g/a/b', 'x');
    index.add('$share/g/a/#', 'y');
    index.add('$share/h/a/b', 'z');
    expect(matches(index, 'a/b')).toEqual([]);
    expect(index.remove('$share/h/a/b', 'x')).toBe(false);
    expect(index.remove('$share/g/a/b', 'z')).toBe(false);
    expect(index.remove('$share/g/a/b', 'x')).toBe(true);
    expect(index.remove('$share/h/a/b', 'z')).toBe(true);
    expect(index.remove('$share/g/a/#', 'y')).toBe(true);
    expect(index.remove('$share/g', 'y')).toBe(false);
    expect(index.isEmpty()).toBe(true);
    expect(index.nodeCount).toBe(2);
  });

  it('refuses a malformed shared filter on add', () => {
    const index = new SubscriptionIndex<string>();
    expect(() => index.add('$share/g', 'x')).toThrow(RangeError);
    expect(() => index.add('$share//a', 'x')).toThrow(RangeError);
    expect(index.isEmpty()).toBe(true);
  });

  it('merges big groups spread over several filters', () => {
    const index = new SubscriptionIndex<number>();
    for (let i = 0; i < 300; i++) index.add('$share/g/a/+', i);
    for (let i = 200; i < 500; i++) index.add('$share/g/a/#', i);
    for (let i = 450; i < 600; i++) index.add('$share/g/+/b', i);
    const groups = sharedMatches(index, 'a/b');
    expect(groups.get('g')?.sort((x, y) => x - y)).toEqual(Array.from({ length: 600 }, (_, i) => i));
  });
});
