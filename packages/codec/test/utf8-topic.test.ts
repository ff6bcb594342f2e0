import { describe, expect, it } from 'vitest';
import { topicFilterProblem, topicNameProblem, utf8ByteLength, utf8Encode, utf8Read } from '../src/index.ts';

describe('utf8', () => {
  it('round-trips ASCII, 2-, 3- and 4-byte characters', () => {
    const s = 'a\u00e9\u20ac\u{1f600}z';
    const bytes = utf8Encode(s);
    expect(Array.from(bytes)).toEqual([0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0x7a]);
    expect(utf8Read(bytes, 0, bytes.length)).toBe(s);
  });
  it('rejects U+0000, overlong forms, encoded surrogates and truncated sequences', () => {
    for (const bad of [
      [0x00],
      [0xc0, 0x80],
      [0xe0, 0x80, 0x80],
      [0xed, 0xa0, 0x80],
      [0xe2, 0x82],
      [0xf4, 0x90, 0x80, 0x80],
      [0xff],
    ]) {
      expect(utf8Read(Uint8Array.from(bad), 0, bad.length)).toBeNull();
    }
  });
  it('reports lone surrogates as not encodable', () => {
    expect(utf8ByteLength('a\ud800b')).toBe(-1);
    expect(utf8ByteLength('\udc00')).toBe(-1);
  });
});

describe('topic validation', () => {
  it('accepts valid names and filters', () => {
    for (const t of ['a', '/', 'a/b', 'sport/tennis/player1', '$SYS/x', ' '])
      expect(topicNameProblem(t)).toBeNull();
    for (const f of ['#', '+', 'a/#', '+/+', '/+', 'a/+/b', '$share/g/a/#', 'sport/'])
      expect(topicFilterProblem(f)).toBeNull();
  });
  it('rejects wildcards in names, misplaced wildcards in filters, empty and NUL', () => {
    for (const t of ['', 'a/+', 'a/#', 'a\u0000b']) expect(topicNameProblem(t)).not.toBeNull();
    for (const f of [
      '',
      'a/#/b',
      'a/b#',
      'a+',
      '+a',
      '#/a',
      'a\u0000',
      '$share/g',
      '$share//a',
      '$share/g+/a',
      '$share/g/',
    ])
      expect(topicFilterProblem(f)).not.toBeNull();
  });
  it('rejects topics over 65,535 UTF-8 bytes', () => {
    expect(topicNameProblem('a'.repeat(65_535))).toBeNull();
    expect(topicNameProblem('a'.repeat(65_536))).toMatch(/65,535/);
    expect(topicNameProblem('\u20ac'.repeat(21_846))).toMatch(/65,535/);
  });
});
