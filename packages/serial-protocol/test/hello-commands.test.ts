/**
 * Issue 14.1: HELLO may carry the device's model (`m`) and a description of the commands it
 * takes (`c`), so the agent can offer them to Home Assistant as buttons, switches, numbers and
 * selects. Both keys are optional: an old HELLO decodes as before, and an old agent ignores them
 * (receivers ignore unknown keys). A descriptor of a kind this receiver does not know is skipped,
 * so firmware may describe kinds a later agent learns.
 */
import { encode as cborEncode } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import {
  type CommandInfo,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type HelloFrame,
  MAX_COMMANDS,
  MAX_OPTIONS,
} from '../src/index.ts';
import { rawWire } from './arbitraries.ts';

const base = { d: 'dev-1', f: '1.2.0', b: 7, s: [{ s: 'temp', u: 'Cel' }] };

function decodeHello(body: Record<string, unknown>): { frames: Frame[]; d: FrameDecoder } {
  const d = new FrameDecoder();
  return { frames: d.push(rawWire(0x01, 0, cborEncode(body))), d };
}

const commands: CommandInfo[] = [
  { name: 'reboot', kind: 'button' },
  { name: 'relay', kind: 'switch' },
  { name: 'set-led', kind: 'switch', arg: 'on' },
  { name: 'set-interval', kind: 'number', min: 10, max: 3_600_000, step: 10, unit: 'ms', arg: 'ms' },
  { name: 'gain', kind: 'number', min: -1.5, max: 1.5 },
  { name: 'set-mode', kind: 'select', options: ['eco', 'normal', 'boost'] },
];

function helloFrame(over: Partial<HelloFrame>): HelloFrame {
  return { type: 'hello', seq: 0, deviceId: 'dev-1', firmware: '1.2.0', bootId: 7, sensors: [], ...over };
}

describe('issue 14.1: HELLO model and command descriptors', () => {
  it('issue 14.1: a HELLO with a model and every command kind round-trips', () => {
    const hello = helloFrame({ sensors: [{ name: 'temp', unit: 'Cel' }], model: 'TH-1 rev B', commands });
    const d = new FrameDecoder();
    expect(d.push(encodeFrame(hello))).toEqual([hello]);
  });

  it('issue 14.1: wire keys are the documented ones (m, c; c, k, a, lo, hi, st, u, o)', () => {
    const { frames } = decodeHello({
      ...base,
      m: 'TH-1',
      c: [
        { c: 'reboot', k: 'button' },
        { c: 'set-interval', k: 'number', a: 'ms', lo: 10, hi: 60000, st: 10, u: 'ms' },
        { c: 'set-mode', k: 'select', o: ['eco', 'boost'] },
        { c: 'relay', k: 'switch' },
      ],
    });
    expect(frames).toEqual([
      helloFrame({
        sensors: [{ name: 'temp', unit: 'Cel' }],
        model: 'TH-1',
        commands: [
          { name: 'reboot', kind: 'button' },
          { name: 'set-interval', kind: 'number', arg: 'ms', min: 10, max: 60000, step: 10, unit: 'ms' },
          { name: 'set-mode', kind: 'select', options: ['eco', 'boost'] },
          { name: 'relay', kind: 'switch' },
        ],
      }),
    ]);
  });

  it('issue 14.1: a HELLO without them decodes as before (no model, no commands keys)', () => {
    const { frames } = decodeHello(base);
    expect(frames).toHaveLength(1);
    expect(Object.keys(frames[0]).sort()).toEqual([
      'bootId',
      'deviceId',
      'firmware',
      'sensors',
      'seq',
      'type',
    ]);
  });

  it('issue 14.1: a descriptor of an unknown kind is skipped, the rest kept (forward compatible)', () => {
    const { frames, d } = decodeHello({
      ...base,
      c: [
        { c: 'say', k: 'text', max: 20 },
        { c: 'ping', k: 'button' },
      ],
    });
    expect(d.stats.bodyErrors).toBe(0);
    expect((frames[0] as HelloFrame).commands).toEqual([{ name: 'ping', kind: 'button' }]);
  });

  it('issue 14.1: malformed model or descriptors make the HELLO a body error, never a throw', () => {
    const bad: unknown[] = [
      { m: 42 },
      { m: 'x'.repeat(65) },
      { m: 'line\nbreak' },
      { c: 'ping' },
      { c: [1] },
      { c: [{ k: 'button' }] },
      { c: [{ c: 'a/b', k: 'button' }] },
      { c: [{ c: 'x', k: 7 }] },
      { c: [{ c: 'x', k: 'number', lo: 1 }] },
      { c: [{ c: 'x', k: 'number', lo: 5, hi: 1 }] },
      { c: [{ c: 'x', k: 'number', lo: 0, hi: Number.POSITIVE_INFINITY }] },
      { c: [{ c: 'x', k: 'number', lo: 0, hi: 1, st: 0 }] },
      { c: [{ c: 'x', k: 'number', lo: 0, hi: 1, u: 5 }] },
      { c: [{ c: 'x', k: 'select' }] },
      { c: [{ c: 'x', k: 'select', o: [] }] },
      { c: [{ c: 'x', k: 'select', o: ['a b'] }] },
      { c: [{ c: 'x', k: 'select', o: ['a', 'a'] }] },
      { c: [{ c: 'x', k: 'select', o: Array.from({ length: MAX_OPTIONS + 1 }, (_, i) => `o${i}`) }] },
      { c: [{ c: 'x', k: 'switch', a: 'no spaces' }] },
      {
        c: [
          { c: 'x', k: 'button' },
          { c: 'x', k: 'button' },
        ],
      },
      { c: Array.from({ length: MAX_COMMANDS + 1 }, (_, i) => ({ c: `c${i}`, k: 'button' })) },
    ];
    for (const extra of bad) {
      const { frames, d } = decodeHello({ ...base, ...(extra as object) });
      expect(frames, JSON.stringify(extra)).toEqual([]);
      expect(d.stats.bodyErrors, JSON.stringify(extra)).toBe(1);
    }
  });

  it('issue 14.1: encodeFrame refuses descriptors a decoder would reject', () => {
    const hello = helloFrame({ commands: [{ name: 'x', kind: 'number', min: 2, max: 1 }] });
    expect(() => encodeFrame(hello)).toThrow(/hello\.c/);
  });
});

describe('issue 19.2: HELLO reporting interval (p)', () => {
  it('issue 19.2: a HELLO with its reporting interval round-trips, under wire key p', () => {
    const hello = helloFrame({ intervalMs: 250 });
    expect(new FrameDecoder().push(encodeFrame(hello))).toEqual([hello]);
    expect(decodeHello({ ...base, p: 60_000 }).frames).toEqual([
      helloFrame({ sensors: [{ name: 'temp', unit: 'Cel' }], intervalMs: 60_000 }),
    ]);
    // Absent: no interval (an older device), and the HELLO is as before.
    expect(decodeHello(base).frames[0]).not.toHaveProperty('intervalMs');
  });

  it('issue 19.2: an interval that is not a uint32 of at least 1 ms makes the HELLO invalid', () => {
    for (const p of [0, -1, 1.5, 2 ** 32, '1000', null, Number.NaN]) {
      const { frames, d } = decodeHello({ ...base, p });
      expect(frames, `p = ${String(p)}`).toEqual([]);
      expect(d.stats.bodyErrors).toBe(1);
    }
    expect(() => encodeFrame(helloFrame({ intervalMs: 0 }))).toThrow(/hello\.p/);
  });
});
