import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkTopicFilter, SubscriptionIndex, splitShared } from '../src/index.ts';
import { referenceMatch } from './topic-vectors.ts';

/**
 * A brute-force reference: a list of (filter, value) pairs with set semantics per filter, and
 * the split-based matcher run over every pair.
 */
class Reference {
  pairs: Array<{ filter: string; value: number }> = [];
  add(filter: string, value: number): void {
    if (!this.pairs.some((p) => p.filter === filter && p.value === value)) this.pairs.push({ filter, value });
  }
  remove(filter: string, value: number): boolean {
    const i = this.pairs.findIndex((p) => p.filter === filter && p.value === value);
    if (i < 0) return false;
    this.pairs.splice(i, 1);
    return true;
  }
  normal(topic: string): number[] {
    return this.pairs
      .filter((p) => !p.filter.startsWith('$share/') && referenceMatch(p.filter, topic))
      .map((p) => p.value)
      .sort((a, b) => a - b);
  }
  shared(topic: string): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const p of this.pairs) {
      const sf = splitShared(p.filter);
      if (sf === null || !referenceMatch(sf.filter, topic)) continue;
      const members = out.get(sf.group) ?? [];
      if (!members.includes(p.value)) members.push(p.value);
      out.set(sf.group, members);
    }
    for (const m of out.values()) m.sort((a, b) => a - b);
    return out;
  }
}

// Few distinct level texts, so random filters and topics collide often enough to match.
const level = fc.constantFrom(
  '',
  'a',
  'b',
  'ab',
  '$',
  '$SYS',
  'x$',
  '\u00e9',
  '\u{1f600}',
  '\u4e2d',
  ' ',
  'A',
);
const topicArb = fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => l.join('/'));
const plainFilter = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+'), fc.constant('+')), { maxLength: 5 }), fc.boolean())
  .filter(([l, hash]) => l.length > 0 || hash)
  .map(([l, hash]) => [...l, ...(hash ? ['#'] : [])].join('/'))
  .filter((f) => f.length > 0);
const filterArb = fc.oneof(
  { weight: 4, arbitrary: plainFilter },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom('g', 'h', '\u00e9'), plainFilter).map(([g, f]) => `$share/${g}/${f}`),
  },
);

it('the filter generator makes only valid filters', () => {
  fc.assert(
    fc.property(filterArb, (f) => checkTopicFilter(f) === null),
    { numRuns: 500 },
  );
});
const op = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('add' as const), filter: filterArb, value: fc.nat(6) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('remove' as const), filter: filterArb, value: fc.nat(6) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('removeKnown' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('match' as const), topic: topicArb }) },
);

function indexNormal(index: SubscriptionIndex<number>, topic: string): number[] {
  const out: number[] = [];
  index.match(topic, (v) => out.push(v));
  return out.sort((a, b) => a - b);
}

function indexShared(index: SubscriptionIndex<number>, topic: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  index.match(
    topic,
    () => {},
    (g, m) => {
      if (out.has(g)) throw new Error(`group ${g} delivered twice`);
      out.set(
        g,
        [...m].sort((a, b) => a - b),
      );
    },
  );
  return out;
}

describe('SubscriptionIndex agrees with a brute-force reference', () => {
  it('across random add/remove/match sequences, and empties completely', () => {
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 1, maxLength: 60 }),
        fc.array(topicArb, { minLength: 3, maxLength: 3 }),
        (ops, probes) => {
          const index = new SubscriptionIndex<number>();
          const ref = new Reference();
          const emptyNodes = index.nodeCount;
          for (const o of ops) {
            if (o.kind === 'add') {
              index.add(o.filter, o.value);
              ref.add(o.filter, o.value);
            } else if (o.kind === 'remove') {
              expect(index.remove(o.filter, o.value)).toBe(ref.remove(o.filter, o.value));
            } else if (o.kind === 'removeKnown') {
              if (ref.pairs.length === 0) continue;
              const p = ref.pairs[o.pick % ref.pairs.length];
              expect(index.remove(p.filter, p.value)).toBe(true);
              ref.remove(p.filter, p.value);
            } else {
              expect(indexNormal(index, o.topic)).toEqual(ref.normal(o.topic));
              expect(indexShared(index, o.topic)).toEqual(ref.shared(o.topic));
            }
            expect(index.size).toBe(ref.pairs.length);
          }
          for (const t of probes) {
            expect(indexNormal(index, t)).toEqual(ref.normal(t));
            expect(indexShared(index, t)).toEqual(ref.shared(t));
          }
          // Remove everything in a shuffled order: nothing may be left behind.
          const rest = [...ref.pairs].reverse();
          for (let i = 0; i < rest.length; i += 2) rest.push(...rest.splice(i, 1));
          for (const p of rest) expect(index.remove(p.filter, p.value)).toBe(true);
          expect(index.isEmpty()).toBe(true);
          expect(index.size).toBe(0);
          expect(index.nodeCount).toBe(emptyNodes);
          for (const t of probes) expect(indexNormal(index, t)).toEqual([]);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('with many subscriptions at once (tables and long buckets in play)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(filterArb, fc.nat(300)), { minLength: 50, maxLength: 400 }),
        fc.array(topicArb, { minLength: 10, maxLength: 10 }),
        (subs, topics) => {
          const index = new SubscriptionIndex<number>();
          const ref = new Reference();
          for (const [f, v] of subs) {
            index.add(f, v);
            ref.add(f, v);
          }
          for (const t of topics) {
            expect(indexNormal(index, t)).toEqual(ref.normal(t));
            expect(indexShared(index, t)).toEqual(ref.shared(t));
          }
          for (const p of ref.pairs) expect(index.remove(p.filter, p.value)).toBe(true);
          expect(index.isEmpty()).toBe(true);
          expect(index.nodeCount).toBe(2);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('with wide fan-out: many distinct level texts under one node', () => {
    const wideLevel = fc.nat(80).map((n) => `n${n}`);
    const wideTopic = fc.tuple(wideLevel, wideLevel).map(([a, b]) => `${a}/${b}`);
    const wideFilter = fc
      .tuple(fc.oneof(wideLevel, fc.constant('+')), fc.oneof(wideLevel, fc.constant('+'), fc.constant('#')))
      .map(([a, b]) => `${a}/${b}`);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(wideFilter, fc.nat(20), fc.boolean()), { minLength: 100, maxLength: 600 }),
        fc.array(wideTopic, { minLength: 20, maxLength: 20 }),
        (ops, topics) => {
          const index = new SubscriptionIndex<number>();
          const ref = new Reference();
          for (const [f, v, isAdd] of ops) {
            if (isAdd) {
              index.add(f, v);
              ref.add(f, v);
            } else {
              expect(index.remove(f, v)).toBe(ref.remove(f, v));
            }
          }
          for (const t of topics) expect(indexNormal(index, t)).toEqual(ref.normal(t));
          for (const p of ref.pairs) expect(index.remove(p.filter, p.value)).toBe(true);
          expect(index.nodeCount).toBe(2);
        },
      ),
      { numRuns: 40 },
    );
  });
});
