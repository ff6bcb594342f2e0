/**
 * Issue 15.2: `log_timestamp_format`, a strftime(3) format in local time as Mosquitto writes it.
 * Each conversion is compared with GNU date(1) (which formats with the C library's strftime) for
 * instants around year ends, ISO week edges, DST changes and midnight/noon, in four time zones.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { compileStrftime, STRFTIME_CONVERSIONS, StrftimeError } from '../src/strftime.ts';

const INSTANTS = [
  '2024-12-29T23:59:59Z', // ISO week 1 of 2025 starts on Monday 30 December
  '2024-12-31T12:00:00Z',
  '2025-01-01T00:00:00Z',
  '2021-01-03T10:00:00Z', // ISO week 53 of 2020
  '2024-02-29T06:07:08Z', // leap day
  '2025-03-30T00:59:59Z', // EU DST starts at 01:00 UTC
  '2025-03-30T01:00:00Z',
  '2025-11-02T06:30:00Z', // US DST ends at 06:00 UTC (New York)
  '2026-07-04T00:00:00Z',
  '2026-12-07T12:00:00Z',
  '2038-01-19T03:14:08Z',
].map((s) => Date.parse(s) / 1000);
const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata'];
// %Z is compared in UTC only: Node's Intl names some zones otherwise than tzdata (GMT+1 / CET).
const LETTERS = [...STRFTIME_CONVERSIONS].filter((c) => c !== 'Z');

const savedTz = process.env.TZ;
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

describe('issue 15.2: log_timestamp_format', () => {
  it('issue 15.2: every conversion as the C library writes it (GNU date), in four zones', () => {
    const format = LETTERS.map((c) => `%${c}`).join('|');
    for (const tz of ZONES) {
      process.env.TZ = tz;
      const f = compileStrftime(format);
      for (const t of INSTANTS) {
        const want = execFileSync('date', ['-d', `@${t}`, `+${format}`], { env: { TZ: tz, LC_ALL: 'C' } })
          .toString()
          .replace(/\n$/, '');
        const got = f(new Date(t * 1000));
        const wantParts = want.split('|');
        const gotParts = got.split('|');
        // A part containing a newline (%n) splits the same in both.
        expect(gotParts.length, `${tz} ${t}`).toBe(wantParts.length);
        for (let i = 0; i < LETTERS.length; i++)
          expect(`%${LETTERS[i]} ${gotParts[i]}`, `${tz} @${t}`).toBe(`%${LETTERS[i]} ${wantParts[i]}`);
      }
    }
    process.env.TZ = 'UTC';
    expect(compileStrftime('%Z')(new Date(0))).toBe('UTC');
  });

  it("issue 15.2: the format Mosquitto users write, literal text and '%%'", () => {
    process.env.TZ = 'Europe/Berlin';
    const d = new Date('2026-12-07T05:54:00Z');
    expect(compileStrftime('%Y-%m-%dT%H:%M:%S')(d)).toBe('2026-12-07T06:54:00');
    expect(compileStrftime('[%F %T%z] 100%%')(d)).toBe('[2026-12-07 06:54:00+0100] 100%');
    expect(compileStrftime('no conversions')(d)).toBe('no conversions');
  });

  it('issue 15.2: a conversion it cannot write, or a lone %, is an error naming it', () => {
    expect(() => compileStrftime('%Y-%Q')).toThrow(StrftimeError);
    expect(() => compileStrftime('%Y-%Q')).toThrow(/unsupported conversion '%Q'/);
    expect(() => compileStrftime('%Y %')).toThrow(/lone '%'/);
    // glibc's flags and widths (%-d, %5Y) are not in the subset: refused, not misprinted.
    expect(() => compileStrftime('%-d')).toThrow(/'%-'/);
  });
});
