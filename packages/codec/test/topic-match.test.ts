import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasWildcard, matchTopic } from '../src/index.ts';
import {
  addKid,
  findKid,
  type KidTable,
  type LevelNode,
  levelHash,
  pushKids,
  removeKid,
} from '../src/level-table.ts';
import { MATCH_VECTORS, referenceMatch } from './topic-vectors.ts';

describe('matchTopic: the spec examples', () => {
  for (const v of MATCH_VECTORS) {
    it(`${v.matches ? 'matches' : 'does not match'}: '${v.filter}' vs '${v.topic}' (${v.source})`, () => {
      expect(matchTopic(v.filter, v.topic)).toBe(v.matches);
      expect(referenceMatch(v.filter, v.topic)).toBe(v.matches);
    });
  }
});

describe('matchTopic: each rule', () => {
  it('+ matches exactly one level, empty levels included', () => {
    expect(matchTopic('+', 'a')).toBe(true);
    expect(matchTopic('+', '')).toBe(true);
    expect(matchTopic('+', 'a/b')).toBe(false);
    expect(matchTopic('a/+', 'a/')).toBe(true);
    expect(matchTopic('a/+', 'a')).toBe(false);
    expect(matchTopic('+/+/+', '//')).toBe(true);
    expect(matchTopic('+/+/+', '/')).toBe(false);
    expect(matchTopic('a/+/c', 'a/b/c/d')).toBe(false);
  });

  it('# matches the parent level and any number below, empty ones included', () => {
    expect(matchTopic('a/#', 'a')).toBe(true);
    expect(matchTopic('a/#', 'a/')).toBe(true);
    expect(matchTopic('a/#', 'a//')).toBe(true);
    expect(matchTopic('a/#', 'a/b/c/d/e')).toBe(true);
    expect(matchTopic('a/#', 'ab')).toBe(false);
    expect(matchTopic('a/#', 'b/a')).toBe(false);
    expect(matchTopic('#', '/')).toBe(true);
    expect(matchTopic('a/b/#', 'a')).toBe(false);
  });

  it('a wildcard in the first level does not match a topic starting with $', () => {
    expect(matchTopic('#', '$SYS')).toBe(false);
    expect(matchTopic('+', '$')).toBe(false);
    expect(matchTopic('+/#', '$x/y')).toBe(false);
    expect(matchTopic('$x/#', '$x/y')).toBe(true);
    expect(matchTopic('$x', '$x')).toBe(true);
    expect(matchTopic('#', 'x$')).toBe(true);
  });

  it('literal levels compare exactly: case, unicode, spaces, prefixes', () => {
    expect(matchTopic('caf\u00e9/\u{1f600}', 'caf\u00e9/\u{1f600}')).toBe(true);
    expect(matchTopic('caf\u00e9', 'cafe\u0301')).toBe(false);
    expect(matchTopic('ab', 'abc')).toBe(false);
    expect(matchTopic('abc', 'ab')).toBe(false);
    expect(matchTopic('a/b', 'a/b/')).toBe(false);
    expect(matchTopic('a/b/', 'a/b')).toBe(false);
  });

  it('a shared filter matches what its inner filter matches', () => {
    expect(matchTopic('$share/g/a/+', 'a/b')).toBe(true);
    expect(matchTopic('$share/g/a/+', '$share/g/a/b')).toBe(false);
    expect(matchTopic('$share/g', 'g')).toBe(false);
  });

  it('agrees with the split-based reference on random filters and topics', () => {
    const level = fc.constantFrom('', 'a', 'b', '$', '$a', 'ab', '\u00e9', '\u{1f600}', ' ');
    const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((l) => l.join('/'));
    const filter = fc
      .tuple(
        fc.array(fc.oneof(level, fc.constant('+')), { minLength: 0, maxLength: 5 }),
        fc.boolean(),
        fc.boolean(),
      )
      .filter(([l, hash]) => l.length > 0 || hash)
      .map(([l, hash, shared]) => (shared ? '$share/g/' : '') + [...l, ...(hash ? ['#'] : [])].join('/'));
    fc.assert(
      fc.property(filter, topic, (f, t) => {
        expect(matchTopic(f, t)).toBe(referenceMatch(f, t));
      }),
      { numRuns: 5000 },
    );
  });

  it('answers long and deep inputs without recursion', () => {
    const deep = 'a/'.repeat(30_000);
    expect(matchTopic(`${deep}#`, `${deep}b`)).toBe(true);
    expect(matchTopic('+/'.repeat(30_000) + '+', '/'.repeat(30_000))).toBe(true);
    expect(matchTopic('#', 'x'.repeat(65_535))).toBe(true);
  });

  it('hasWildcard spots + and #', () => {
    expect(hasWildcard('a/b')).toBe(false);
    expect(hasWildcard('a/+')).toBe(true);
    expect(hasWildcard('#')).toBe(true);
  });
});

class TNode implements LevelNode<TNode> {
  next: TNode | null = null;
  kids: TNode | KidTable<TNode> | null = null;
  nkids = 0;
  hash: number;
  constructor(public key: string) {
    this.hash = levelHash(key, 0, key.length);
  }
}

describe('level table', () => {
  it('keeps every child findable as it grows into a table and shrinks back to a list', () => {
    const parent = new TNode('');
    const keys = Array.from({ length: 300 }, (_, i) => `k${i}`);
    const byKey = new Map<string, TNode>();
    for (const k of keys) {
      const n = new TNode(k);
      addKid(parent, n);
      byKey.set(k, n);
      expect(findKid(parent, k, 0, k.length, -1)).toBe(n);
    }
    expect(Array.isArray(parent.kids)).toBe(true);
    for (const k of keys)
      expect(findKid(parent, `x/${k}/y`, 2, 2 + k.length, levelHash(k, 0, k.length))).toBe(byKey.get(k));
    expect(findKid(parent, 'nope', 0, 4, -1)).toBeNull();
    const all: TNode[] = [];
    pushKids(parent, all);
    expect(new Set(all).size).toBe(300);
    for (let i = 0; i < keys.length; i++) {
      expect(removeKid(parent, byKey.get(keys[i]) as TNode)).toBe(true);
      expect(removeKid(parent, byKey.get(keys[i]) as TNode)).toBe(false);
      expect(parent.nkids).toBe(keys.length - i - 1);
      const rest: TNode[] = [];
      pushKids(parent, rest);
      expect(rest.length).toBe(parent.nkids);
      if (i % 37 === 0)
        for (let j = i + 1; j < keys.length; j++)
          expect(findKid(parent, keys[j], 0, keys[j].length, -1)).not.toBeNull();
    }
    expect(parent.kids).toBeNull();
  });

  it('finds the empty level and tells apart keys that share a prefix', () => {
    const parent = new TNode('');
    for (const k of ['', 'a', 'ab', 'abc']) addKid(parent, new TNode(k));
    expect(findKid(parent, 'x//y', 2, 2, -1)?.key).toBe('');
    expect(findKid(parent, 'ab', 0, 2, -1)?.key).toBe('ab');
    expect(findKid(parent, 'abcd', 0, 4, -1)).toBeNull();
  });

  it('agrees with a Set across random adds and removes (probing runs, shifts, resizes)', () => {
    const key = fc.nat(300).map((n) => `k${n}`);
    fc.assert(
      fc.property(fc.array(fc.tuple(key, fc.boolean()), { minLength: 1, maxLength: 700 }), (ops) => {
        const parent = new TNode('');
        const nodes = new Map<string, TNode>();
        for (const [k, add] of ops) {
          const existing = nodes.get(k);
          if (add && existing === undefined) {
            const n = new TNode(k);
            addKid(parent, n);
            nodes.set(k, n);
          } else if (!add && existing !== undefined) {
            expect(removeKid(parent, existing)).toBe(true);
            nodes.delete(k);
          }
          expect(parent.nkids).toBe(nodes.size);
        }
        for (let i = 0; i <= 300; i++) {
          const k = `k${i}`;
          expect(findKid(parent, k, 0, k.length, -1)).toBe(nodes.get(k) ?? null);
        }
        const all: TNode[] = [];
        pushKids(parent, all);
        expect(all.length).toBe(nodes.size);
      }),
      { numRuns: 150 },
    );
  });
});
