import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkTopicFilter,
  checkTopicName,
  MAX_TOPIC_BYTES,
  MqttError,
  ReasonCode,
  splitShared,
  TopicError,
  topicFilterProblem,
  topicNameProblem,
  utf8ByteLength,
  validateTopicFilter,
  validateTopicName,
} from '../src/index.ts';
import { INVALID_FILTERS, VALID_FILTERS } from './topic-vectors.ts';

function thrown(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('topic names', () => {
  it('accepts the spec examples: any character but wildcards and U+0000', () => {
    for (const t of [
      'sport/tennis/player1',
      '/finance',
      '/',
      'Accounts payable',
      '$SYS/monitor/Clients',
      'a//b',
      'sport/',
      '\u00e9t\u00e9/\u{1f600}',
      'a\u0001b',
      '$share/g/x',
    ])
      expect(checkTopicName(t), t).toBeNull();
  });

  it('is at least one character long [MQTT-4.7.3-1]', () => {
    expect(checkTopicName('')).toMatchObject({ kind: 'empty', index: -1 });
  });

  it('holds no wildcard, and says which and where [MQTT-3.3.2-2]', () => {
    expect(checkTopicName('sport/+/x')).toMatchObject({ kind: 'wildcard-in-name', index: 6 });
    expect(checkTopicName('#')).toMatchObject({ kind: 'wildcard-in-name', index: 0 });
    expect(topicNameProblem('ab#')).toMatch(/'#' at character 2/);
  });

  it('holds no U+0000 [MQTT-4.7.3-2]', () => {
    expect(checkTopicName('a\u0000')).toMatchObject({ kind: 'nul', index: 1 });
    expect(checkTopicName('\u0000'.repeat(70_000))).toMatchObject({ kind: 'nul', index: 0 });
  });

  it('rejects lone surrogates (no UTF-8 form) with their position', () => {
    expect(checkTopicName('ab\ud800')).toMatchObject({ kind: 'lone-surrogate', index: 2 });
    expect(checkTopicName('ab\ud800c')).toMatchObject({ kind: 'lone-surrogate', index: 2 });
    expect(checkTopicName('\udc00')).toMatchObject({ kind: 'lone-surrogate', index: 0 });
    expect(checkTopicName('x\udc00\ud800')).toMatchObject({ kind: 'lone-surrogate', index: 1 });
    expect(checkTopicName('\u{1f600}')).toBeNull();
  });

  it('fits in 65,535 UTF-8 bytes, counted in bytes not characters [MQTT-1.5.4]', () => {
    expect(checkTopicName('a'.repeat(MAX_TOPIC_BYTES))).toBeNull();
    expect(checkTopicName('a'.repeat(65_536))).toMatchObject({ kind: 'too-long', index: 65_535 });
    expect(checkTopicName('/'.repeat(65_536))).toMatchObject({ kind: 'too-long' });
    // 21,845 three-byte characters are 65,535 bytes; one more is over
    expect(checkTopicName('\u20ac'.repeat(21_845))).toBeNull();
    expect(checkTopicName('\u20ac'.repeat(21_846))).toMatchObject({ kind: 'too-long', index: 21_845 });
    // a surrogate pair is 4 bytes, not 6
    expect(checkTopicName('\u{1f600}'.repeat(16_383) + 'abc')).toBeNull();
    expect(checkTopicName('\u{1f600}'.repeat(16_384))).toMatchObject({ kind: 'too-long' });
    expect(topicNameProblem('a'.repeat(1_000_000))).toMatch(/1,000,000|1000000/);
  });

  it('validateTopicName throws a typed error carrying reason 0x90, kind, index and offset', () => {
    const err = thrown(() => validateTopicName('a/+', 17));
    expect(err).toBeInstanceOf(TopicError);
    expect(err).toBeInstanceOf(MqttError);
    const e = err as TopicError;
    expect(e.code).toBe('TOPIC_NAME_INVALID');
    expect(e.reasonCode).toBe(ReasonCode.TopicNameInvalid);
    expect(e.kind).toBe('wildcard-in-name');
    expect(e.index).toBe(2);
    expect(e.offset).toBe(17);
    expect(e.message).toMatch(/at byte 17/);
    expect(() => validateTopicName('a/b')).not.toThrow();
  });
});

describe('topic filters', () => {
  it('accepts the spec examples', () => {
    for (const f of VALID_FILTERS) expect(checkTopicFilter(f), f).toBeNull();
  });

  it('rejects the spec counter-examples with the rule broken', () => {
    for (const [f, kind] of INVALID_FILTERS) expect(checkTopicFilter(f)?.kind, f).toBe(kind);
  });

  it('places + and # exactly [MQTT-4.7.1-1, MQTT-4.7.1-2], and says where', () => {
    expect(checkTopicFilter('a/b+/c')).toMatchObject({ kind: 'plus-placement', index: 3 });
    expect(checkTopicFilter('a/+b')).toMatchObject({ kind: 'plus-placement', index: 2 });
    expect(checkTopicFilter('a/#/c')).toMatchObject({ kind: 'hash-placement', index: 2 });
    expect(checkTopicFilter('a#')).toMatchObject({ kind: 'hash-placement', index: 1 });
    expect(checkTopicFilter('+/+/+')).toBeNull();
    expect(checkTopicFilter('+/#')).toBeNull();
  });

  it('checks shared subscriptions: group non-empty, no wildcard, a filter after it [MQTT-4.8.2-1/2]', () => {
    expect(checkTopicFilter('$share/g/a/+')).toBeNull();
    expect(checkTopicFilter('$share/g/#')).toBeNull();
    expect(checkTopicFilter('$share/g+/a')).toMatchObject({ kind: 'share-group-wildcard', index: 8 });
    expect(checkTopicFilter('$share//a')).toMatchObject({ kind: 'share-group-empty', index: 7 });
    expect(checkTopicFilter('$share/g/a\u0000')).toMatchObject({ kind: 'nul', index: 10 });
    expect(checkTopicFilter('$share/g\u0000/a')).toMatchObject({ kind: 'nul', index: 8 });
    expect(checkTopicFilter('$share/\ud800/a')).toMatchObject({ kind: 'lone-surrogate', index: 7 });
    // not shared: "$share" alone and "$shared/..." are ordinary filters
    expect(checkTopicFilter('$share')).toBeNull();
    expect(checkTopicFilter('$shared/x/#')).toBeNull();
  });

  it('splitShared splits group and inner filter, and refuses malformed ones', () => {
    expect(splitShared('$share/consumer1//finance')).toEqual({ group: 'consumer1', filter: '/finance' });
    expect(splitShared('$share/g/a/#')).toEqual({ group: 'g', filter: 'a/#' });
    expect(splitShared('a/b')).toBeNull();
    expect(splitShared('$share/g')).toBeNull();
    expect(splitShared('$share//a')).toBeNull();
    expect(splitShared('$share/g/')).toBeNull();
  });

  it('rejects NUL, lone surrogates and over-long filters', () => {
    expect(checkTopicFilter('a/\u0000')).toMatchObject({ kind: 'nul', index: 2 });
    expect(checkTopicFilter('+/\udfff')).toMatchObject({ kind: 'lone-surrogate', index: 2 });
    expect(checkTopicFilter('a'.repeat(65_535))).toBeNull();
    expect(checkTopicFilter(`${'a/'.repeat(32_767)}#`)).toBeNull();
    expect(checkTopicFilter(`${'a/'.repeat(32_767)}ab`)).toMatchObject({ kind: 'too-long' });
    expect(checkTopicFilter('a'.repeat(65_536))).toMatchObject({ kind: 'too-long', index: 65_535 });
    expect(checkTopicFilter(`$share/${'g'.repeat(65_530)}/a`)).toMatchObject({ kind: 'too-long' });
    expect(topicFilterProblem('\u20ac'.repeat(21_846))).toMatch(/65,535/);
  });

  it('validateTopicFilter throws a typed error carrying reason 0x8F', () => {
    const e = thrown(() => validateTopicFilter('a/#/b')) as TopicError;
    expect(e).toBeInstanceOf(TopicError);
    expect(e.code).toBe('TOPIC_FILTER_INVALID');
    expect(e.reasonCode).toBe(ReasonCode.TopicFilterInvalid);
    expect(e.kind).toBe('hash-placement');
    expect(e.index).toBe(2);
    expect(e.offset).toBe(-1);
    expect(() => validateTopicFilter('a/+/#')).not.toThrow();
  });
});

describe('validation against a reference on arbitrary strings', () => {
  const alphabet = ['a', 'b', '/', '+', '#', '$', '\u0000', '\u00e9', '\u20ac', '\ud83d', '\ude00', ' '];
  const hostile = fc.array(fc.constantFrom(...alphabet), { maxLength: 24 }).map((a) => a.join(''));

  function referenceName(t: string): boolean {
    if (t.length === 0 || /[+#\u0000]/.test(t)) return false;
    const bytes = utf8ByteLength(t);
    return bytes >= 0 && bytes <= MAX_TOPIC_BYTES;
  }

  function referenceFilterLevels(f: string): boolean {
    if (f.length === 0) return false;
    const levels = f.split('/');
    return levels.every(
      (l, i) => (l === '#' && i === levels.length - 1) || l === '+' || (!l.includes('+') && !l.includes('#')),
    );
  }

  function referenceFilter(f: string): boolean {
    if (f.length === 0 || f.includes('\u0000')) return false;
    const bytes = utf8ByteLength(f);
    if (bytes < 0 || bytes > MAX_TOPIC_BYTES) return false;
    if (f.startsWith('$share/')) {
      const rest = f.slice(7);
      const slash = rest.indexOf('/');
      if (slash <= 0) return false;
      const group = rest.slice(0, slash);
      if (/[+#]/.test(group)) return false;
      return referenceFilterLevels(rest.slice(slash + 1));
    }
    return referenceFilterLevels(f);
  }

  it('names: checkTopicName agrees with a regex-and-split reference', () => {
    fc.assert(
      fc.property(hostile, (t) => {
        expect(checkTopicName(t) === null).toBe(referenceName(t));
      }),
      { numRuns: 2000 },
    );
  });

  it('filters: checkTopicFilter agrees with a split-based reference', () => {
    const filters = fc.oneof(
      hostile,
      hostile.map((s) => `$share/${s}`),
      fc.string({ unit: 'binary', maxLength: 20 }),
    );
    fc.assert(
      fc.property(filters, (f) => {
        expect(checkTopicFilter(f) === null).toBe(referenceFilter(f));
      }),
      { numRuns: 1500 },
    );
  });

  it('never throws and always reports an index inside the string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        for (const p of [checkTopicName(s), checkTopicFilter(s)]) {
          if (p === null) continue;
          expect(p.index).toBeGreaterThanOrEqual(p.kind === 'empty' ? -1 : 0);
          expect(p.index).toBeLessThanOrEqual(s.length);
          expect(p.message.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
