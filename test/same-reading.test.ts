/**
 * The e2e verdict's rule for duplicate copies (test/helpers/processes.ts): the same reading, byte
 * for byte or stamped again later by the agent (issue 18.4: a reading published before its
 * commit by an agent killed before the commit is sent again by the device).
 */
import { describe, expect, it } from 'vitest';
import { sameReading } from './helpers/processes.ts';

const copy = (v: number, at: number) => `{"id":"d0:1:7:0","v":${v},"u":"Cel","t":1200,"at":${at}}`;

describe('sameReading', () => {
  it('takes a byte-identical copy and one stamped later', () => {
    expect(sameReading(copy(21.5, 1000), copy(21.5, 1000))).toBe(true);
    expect(sameReading(copy(21.5, 1000), copy(21.5, 2500))).toBe(true);
  });
  it('refuses another value, an earlier stamp, or a payload without a stamp that differs', () => {
    expect(sameReading(copy(21.5, 1000), copy(21.6, 2500))).toBe(false);
    expect(sameReading(copy(21.5, 2500), copy(21.5, 1000))).toBe(false);
    expect(sameReading('{"v":1}', '{"v":2}')).toBe(false);
    expect(sameReading(copy(21.5, 1000), '{"id":"d0:1:7:0","v":21.5,"u":"Cel","t":1200}')).toBe(false);
  });
});
