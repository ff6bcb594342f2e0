/**
 * Issue 17.3: the one edit distance behind both config readers' "did you mean" (broker-lite's
 * mosquitto.conf keys, the agent's YAML keys).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { editDistance, nearest } from '../src/index.ts';

/** The textbook full-matrix Levenshtein, to check the one-row version against. */
function reference(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

describe('issue 17.3: editDistance and nearest', () => {
  it('issue 17.3: editDistance counts insertions, deletions and substitutions', () => {
    expect(editDistance('', '')).toBe(0);
    expect(editDistance('abc', '')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('alow_anonymous', 'allow_anonymous')).toBe(1);
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (a, b) => {
        expect(editDistance(a, b)).toBe(reference(a, b));
        expect(editDistance(b, a)).toBe(editDistance(a, b));
      }),
      { numRuns: 2000 },
    );
  });

  it('issue 17.3: nearest is the first closest candidate within two edits', () => {
    const keys = ['listener', 'port', 'password_file', 'acl_file', 'allow_anonymous'];
    expect(nearest('alow_anonymous', keys)).toBe('allow_anonymous');
    expect(nearest('prot', keys)).toBe('port');
    expect(nearest('acl_fiel', keys)).toBe('acl_file');
    expect(nearest('persistence', keys)).toBeUndefined();
    // Ties: the first listed wins.
    expect(nearest('ab', ['ax', 'ay'])).toBe('ax');
    // Case: as given unless folded; the candidate comes back as written.
    expect(nearest('Listener', ['listener', 'Listen'])).toBe('listener');
    expect(nearest('LISTENER', ['listener'])).toBeUndefined();
    expect(nearest('LISTENER', ['listener'], (s) => s.toLowerCase())).toBe('listener');
    expect(nearest('baud', ['Baud', 'bauds'], (s) => s.toLowerCase())).toBe('Baud');
  });

  it('issue 17.3: a word longer than 64 characters gets no suggestion, even one edit from a candidate', () => {
    const long = `${'x'.repeat(63)}y`;
    expect(nearest(long, [`${'x'.repeat(63)}z`])).toBe(`${'x'.repeat(63)}z`);
    expect(nearest(`${long}y`, [`${long}z`])).toBeUndefined();
  });
});
