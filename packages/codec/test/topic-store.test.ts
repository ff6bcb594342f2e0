import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TopicStore } from '../src/index.ts';
import { MATCH_VECTORS, referenceMatch } from './topic-vectors.ts';

function matched<V>(store: TopicStore<V>, filter: string): string[] {
  const out: string[] = [];
  store.match(filter, (t, v) => {
    expect(store.get(t)).toBe(v);
    out.push(t);
  });
  return out.sort();
}

describe('TopicStore: the spec examples, in the retained direction', () => {
  for (const v of MATCH_VECTORS.filter((x) => !x.filter.startsWith('$share/'))) {
    it(`'${v.filter}' ${v.matches ? 'finds' : 'does not find'} '${v.topic}' (${v.source})`, () => {
      const store = new TopicStore<number>();
      store.set(v.topic, 1);
      store.set('unrelated/topic', 2);
      expect(matched(store, v.filter).includes(v.topic)).toBe(v.matches);
    });
  }
});

describe('TopicStore', () => {
  it('sets, gets, replaces and deletes by exact topic', () => {
    const store = new TopicStore<string>();
    store.set('a/b', 'one');
    store.set('a/b', 'two');
    store.set('a', 'parent');
    store.set('a/', 'empty level');
    expect(store.size).toBe(3);
    expect(store.get('a/b')).toBe('two');
    expect(store.get('a')).toBe('parent');
    expect(store.get('a/')).toBe('empty level');
    expect(store.get('a/b/c')).toBeUndefined();
    expect(store.get('b')).toBeUndefined();
    expect(store.has('a/b')).toBe(true);
    expect(store.delete('a/b')).toBe(true);
    expect(store.delete('a/b')).toBe(false);
    expect(store.delete('nothing/here')).toBe(false);
    expect(store.get('a/b')).toBeUndefined();
    expect(store.get('a')).toBe('parent');
    expect(store.size).toBe(2);
  });

  it('holds an undefined value as a value', () => {
    const store = new TopicStore<undefined>();
    store.set('a', undefined);
    expect(store.has('a')).toBe(true);
    expect(store.size).toBe(1);
    expect(matched(store, '#')).toEqual(['a']);
  });

  it('# finds the parent level and everything below; + one level, empty ones included', () => {
    const store = new TopicStore<number>();
    for (const t of ['sport', 'sport/', 'sport/tennis', 'sport/tennis/p1', 'sportx', '/sport', 'x/sport'])
      store.set(t, 0);
    expect(matched(store, 'sport/#')).toEqual(['sport', 'sport/', 'sport/tennis', 'sport/tennis/p1']);
    expect(matched(store, 'sport/+')).toEqual(['sport/', 'sport/tennis']);
    expect(matched(store, '+/sport')).toEqual(['/sport', 'x/sport']);
    expect(matched(store, '+')).toEqual(['sport', 'sportx']);
    expect(matched(store, 'sport')).toEqual(['sport']);
    expect(matched(store, 'nope/#')).toEqual([]);
  });

  it('a wildcard in the first level skips $ topics; deeper $ levels are ordinary', () => {
    const store = new TopicStore<number>();
    for (const t of ['$SYS/broker/uptime', '$SYS', 'a/$b', 'x']) store.set(t, 0);
    expect(matched(store, '#')).toEqual(['a/$b', 'x']);
    expect(matched(store, '+')).toEqual(['x']);
    expect(matched(store, '+/+/uptime')).toEqual([]);
    expect(matched(store, '$SYS/#')).toEqual(['$SYS', '$SYS/broker/uptime']);
    expect(matched(store, 'a/+')).toEqual(['a/$b']);
  });

  it('refuses a name ending in a wildcard level without touching the parent topic', () => {
    const store = new TopicStore<number>();
    store.set('a', 1);
    const nodes = store.nodeCount;
    expect(() => store.set('a/+', 2)).toThrow(RangeError);
    expect(() => store.set('a/#', 3)).toThrow(RangeError);
    expect(() => store.set('a/b/c/+', 4)).toThrow(RangeError);
    expect(store.get('a')).toBe(1);
    expect(store.size).toBe(1);
    expect(store.nodeCount).toBe(nodes);
  });

  it('frees the nodes a deleted topic used, and only those', () => {
    const store = new TopicStore<number>();
    const topics = ['a/b/c', 'a/b', 'a/x/y/z', '/', '//', 'a', '$SYS/q'];
    for (let i = 0; i < 40; i++) topics.push(`wide/${i}`);
    for (let i = 0; i < topics.length; i++) store.set(topics[i], i);
    expect(store.nodeCount).toBeGreaterThan(40);
    for (const t of [...topics].reverse().filter((_, i) => i % 2 === 0)) expect(store.delete(t)).toBe(true);
    for (const t of topics.filter((_, i) => (topics.length - 1 - i) % 2 === 1))
      expect(store.get(t)).toBeDefined();
    for (const t of topics) store.delete(t);
    expect(store.size).toBe(0);
    expect(store.nodeCount).toBe(1);
  });

  it('walks 65,536-level topics without recursion', () => {
    const store = new TopicStore<number>();
    const deep = '/'.repeat(65_535);
    store.set(deep, 1);
    store.set('a', 2);
    expect(matched(store, '#').length).toBe(2);
    expect(matched(store, `${'+/'.repeat(65_535)}+`)).toEqual([deep]);
    expect(store.delete(deep)).toBe(true);
    expect(store.nodeCount).toBe(2);
  });

  it('forEach visits every topic, and changes inside a visitor are refused', () => {
    const store = new TopicStore<number>();
    store.set('a', 1);
    store.set('b/c', 2);
    const all: string[] = [];
    store.forEach((t) => {
      all.push(t);
    });
    expect(all.sort()).toEqual(['a', 'b/c']);
    expect(() => store.match('#', (t) => store.delete(t))).toThrow(/during match/);
    expect(() =>
      store.forEach(() => {
        store.set('z', 0);
      }),
    ).toThrow(/during match/);
    expect(store.size).toBe(2);
    expect(store.delete('a')).toBe(true);
  });
});

describe('TopicStore agrees with brute force', () => {
  const level = fc.constantFrom('', 'a', 'b', 'ab', '$', '$SYS', '\u00e9', '\u{1f600}', ' ');
  const topicArb = fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => l.join('/'));
  const filterArb = fc
    .tuple(fc.array(fc.oneof(level, fc.constant('+')), { maxLength: 5 }), fc.boolean())
    .map(([l, hash]) => [...l, ...(hash ? ['#'] : [])].join('/'))
    .filter((f) => f.length > 0);

  it('on random sets, deletes and filters, and empties completely', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(topicArb, fc.boolean()), { minLength: 1, maxLength: 80 }),
        fc.array(filterArb, { minLength: 1, maxLength: 15 }),
        (ops, filters) => {
          const store = new TopicStore<number>();
          const ref = new Map<string, number>();
          ops.forEach(([t, isSet], i) => {
            if (isSet) {
              store.set(t, i);
              ref.set(t, i);
            } else {
              expect(store.delete(t)).toBe(ref.delete(t));
            }
          });
          expect(store.size).toBe(ref.size);
          for (const f of filters) {
            const expected = [...ref.keys()].filter((t) => referenceMatch(f, t)).sort();
            expect(matched(store, f)).toEqual(expected);
          }
          for (const t of ref.keys()) expect(store.delete(t)).toBe(true);
          expect(store.size).toBe(0);
          expect(store.nodeCount).toBe(1);
        },
      ),
      { numRuns: 300 },
    );
  });
});
