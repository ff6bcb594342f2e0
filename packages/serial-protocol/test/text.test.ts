import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  formatTextLine,
  parseJsonLine,
  parseKeyValueLine,
  type Reading,
  type SerialFrameError,
  TextLineDecoder,
  type TextMode,
} from '../src/index.ts';
import { reading } from './arbitraries.ts';

const enc = (s: string) => Uint8Array.from(Buffer.from(s, 'utf8'));

describe('json-lines', () => {
  it('single-reading form', () => {
    expect(parseJsonLine('{"sensor":"temp","value":21.5,"unit":"Cel","ts":1000}')).toEqual({
      ok: true,
      readings: [{ sensor: 'temp', value: 21.5, unit: 'Cel', ts: 1000 }],
    });
  });
  it('map form', () => {
    expect(parseJsonLine('{"temp":21.5,"hum":40}')).toEqual({
      ok: true,
      readings: [
        { sensor: 'temp', value: 21.5 },
        { sensor: 'hum', value: 40 },
      ],
    });
  });
  const bad: Array<[string, string]> = [
    ['{"temp":', 'line-syntax'],
    ['[1,2]', 'line-syntax'],
    ['"temp"', 'line-syntax'],
    ['{}', 'line-value'],
    ['{"temp":"21.5"}', 'line-value'],
    ['{"temp":null}', 'line-value'],
    ['{"temp":{"v":1}}', 'line-value'],
    ['{"a/b":1}', 'line-value'],
    ['{"sensor":"temp"}', 'line-value'],
    ['{"sensor":"temp","value":true}', 'line-value'],
    ['{"sensor":"t#","value":1}', 'line-value'],
    ['{"sensor":"temp","value":1,"ts":-1}', 'line-value'],
    ['{"temp":1e999}', 'line-value'],
    ['{"__proto__":1}', 'line-value'],
  ];
  for (const [line, kind] of bad) {
    it(`rejects ${line}`, () => {
      expect(parseJsonLine(line)).toMatchObject({ ok: false, kind });
    });
  }
});

describe('key=value', () => {
  it('parses spaces, tabs, commas and semicolons, signs and exponents', () => {
    expect(parseKeyValueLine('temp=21.5 hum=40,\tp=1.013e3; d=-.5')).toEqual({
      ok: true,
      readings: [
        { sensor: 'temp', value: 21.5 },
        { sensor: 'hum', value: 40 },
        { sensor: 'p', value: 1013 },
        { sensor: 'd', value: -0.5 },
      ],
    });
  });
  for (const line of [
    'temp',
    '=5',
    'temp=',
    'temp=hot',
    'temp=0x10',
    'temp=1e999',
    'a/b=1',
    'temp=1=2',
    'temp=NaN',
    'temp=Infinity',
  ]) {
    it(`rejects ${JSON.stringify(line)}`, () => {
      expect(parseKeyValueLine(line).ok).toBe(false);
    });
  }
});

describe('TextLineDecoder', () => {
  for (const mode of ['json-lines', 'key-value'] as TextMode[]) {
    it(`${mode}: formatted readings round-trip for any split`, () => {
      fc.assert(
        fc.property(
          fc.array(fc.array(reading, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
          fc.integer({ min: 1, max: 50 }),
          (lines, chunk) => {
            // key=value and the map form carry only sensor and value; names must be unique per line.
            const norm = lines.map((rs) => {
              const uniq = [...new Map(rs.map((r) => [r.sensor, r])).values()];
              return mode === 'json-lines' && uniq.length === 1
                ? uniq
                : uniq.map((r) => ({ sensor: r.sensor, value: r.value }));
            });
            const text = norm.map((rs) => formatTextLine(mode, rs)).join('');
            const bytes = enc(text);
            const d = new TextLineDecoder({ mode });
            const got: Reading[][] = [];
            for (let i = 0; i < bytes.length; i += chunk)
              got.push(...d.push(bytes.subarray(i, i + chunk)).map((r) => r.readings));
            // JSON objects list integer-like keys first: compare readings per line as sets.
            const bySensor = (rs: Reading[]) => [...rs].sort((a, b) => (a.sensor < b.sensor ? -1 : 1));
            expect(got.map(bySensor)).toEqual(norm.map(bySensor));
          },
        ),
        { numRuns: 100 },
      );
    });
  }

  it('CRLF, blank lines and # comments', () => {
    const d = new TextLineDecoder({ mode: 'key-value' });
    const out = d.push(enc('# booting v1.2\r\n\r\ntemp=20\r\n   \nhum=30\n'));
    expect(out.map((r) => r.readings)).toEqual([
      [{ sensor: 'temp', value: 20 }],
      [{ sensor: 'hum', value: 30 }],
    ]);
    expect(d.stats).toMatchObject({ lines: 2, readings: 2, skipped: 3 });
    expect(out[1].offset).toBe(enc('# booting v1.2\r\n\r\ntemp=20\r\n   \n').length);
  });

  it('an over-long line is discarded and counted, memory stays bounded, the next line parses', () => {
    const errors: SerialFrameError[] = [];
    const d = new TextLineDecoder({ mode: 'key-value', maxLine: 32, onError: (e) => errors.push(e) });
    const junk = enc('x'.repeat(10_000));
    for (let i = 0; i < 100; i++) expect(d.push(junk)).toEqual([]);
    expect(d.push(enc('\ntemp=1\n')).map((r) => r.readings)).toEqual([[{ sensor: 'temp', value: 1 }]]);
    expect(d.stats.tooLong).toBe(1);
    expect(errors.map((e) => e.kind)).toEqual(['line-too-long']);
  });

  it('a line of exactly maxLine bytes is accepted, maxLine + 1 is not', () => {
    const d = new TextLineDecoder({ mode: 'key-value', maxLine: 8 });
    expect(d.push(enc('temp=123\n')).length).toBe(1);
    expect(d.push(enc('temp=1234\n')).length).toBe(0);
    expect(d.push(enc('temp=123\r\n')).length).toBe(1);
    expect(d.stats.tooLong).toBe(1);
  });

  it('invalid UTF-8, syntax and value errors are counted', () => {
    const d = new TextLineDecoder({ mode: 'json-lines' });
    d.push(new Uint8Array([0xff, 0xfe, 0x0a]));
    d.push(enc('not json\n{"t":"x"}\n{"t":1}\n'));
    expect(d.stats).toMatchObject({ syntaxErrors: 2, valueErrors: 1, lines: 1 });
  });

  it('arbitrary bytes never throw and never exceed the line bound', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.constantFrom<TextMode>('json-lines', 'key-value'),
        (junk, mode) => {
          const d = new TextLineDecoder({ mode, maxLine: 64 });
          d.push(junk);
          expect(d.push(enc('\ntemp=1\n{"temp":1}\n')).length).toBe(1);
        },
      ),
      { numRuns: 300 },
    );
  });
});
