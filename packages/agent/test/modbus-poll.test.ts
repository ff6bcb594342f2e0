/** Issue 20.1: a register map as requests, raw words as readings, a command's value as a write. */
import { describe, expect, it } from 'vitest';
import type { ModbusDeviceConfig, ModbusRegisterConfig } from '../src/modbus-config.ts';
import {
  describe as describeDevice,
  numberBounds,
  pollGroups,
  registerValue,
  writeRequest,
} from '../src/modbus-poll.ts';

const reg = (r: Partial<ModbusRegisterConfig> & { name: string; address: number }): ModbusRegisterConfig => ({
  table: 'holding',
  type: 'int16',
  wordOrder: 'big',
  scale: 1,
  offset: 0,
  intervalMs: 1000,
  writable: false,
  ...r,
});

describe('issue 20.1: poll groups', () => {
  it('issue 20.1: contiguous or overlapping registers of one table and interval are read in one request, up to 125', () => {
    const device: ModbusDeviceConfig = {
      id: 'm',
      unit: 4,
      registers: [
        reg({ name: 'c', address: 2, type: 'float32' }),
        reg({ name: 'a', address: 0 }),
        reg({ name: 'b', address: 1 }),
        reg({ name: 'overlap', address: 3, type: 'uint16' }),
        reg({ name: 'gap', address: 10 }),
        reg({ name: 'slow', address: 4, intervalMs: 60_000 }),
        reg({ name: 'in', address: 4, table: 'input' }),
        ...Array.from({ length: 130 }, (_, i) => reg({ name: `r${i}`, address: 400 + i, intervalMs: 5000 })),
        reg({ name: 'coil', address: 0, table: 'coil', type: 'bool' }),
        reg({ name: 'coil2', address: 1, table: 'coil', type: 'bool' }),
      ],
    };
    const groups = pollGroups(device).map((g) => ({
      request: g.request,
      entries: g.entries.map((e) => `${e.register.name}@${e.at}`),
    }));
    expect(groups).toEqual([
      { request: { unit: 4, fn: 3, address: 0, quantity: 4 }, entries: ['a@0', 'b@1', 'c@2', 'overlap@3'] },
      { request: { unit: 4, fn: 3, address: 10, quantity: 1 }, entries: ['gap@0'] },
      { request: { unit: 4, fn: 3, address: 4, quantity: 1 }, entries: ['slow@0'] },
      { request: { unit: 4, fn: 4, address: 4, quantity: 1 }, entries: ['in@0'] },
      // 130 contiguous registers: 125 (the spec's most) in one request, the other 5 in the next.
      {
        request: { unit: 4, fn: 3, address: 400, quantity: 125 },
        entries: Array.from({ length: 125 }, (_, i) => `r${i}@${i}`),
      },
      {
        request: { unit: 4, fn: 3, address: 525, quantity: 5 },
        entries: ['r125@0', 'r126@1', 'r127@2', 'r128@3', 'r129@4'],
      },
      { request: { unit: 4, fn: 1, address: 0, quantity: 2 }, entries: ['coil@0', 'coil2@1'] },
    ]);
  });
});

describe('issue 20.1: values', () => {
  it('issue 20.1: scale and offset apply without binary noise; float32 reads as its shortest decimal; NaN is refused', () => {
    expect(registerValue(reg({ name: 't', address: 0, scale: 0.1 }), 0, [2345])).toBe(234.5);
    expect(registerValue(reg({ name: 't', address: 0, scale: 0.1, offset: -40 }), 0, [65535 - 99])).toBe(-50);
    expect(registerValue(reg({ name: 'f', address: 0, type: 'float32' }), 0, [0x3dcc, 0xcccd])).toBe(0.1);
    expect(registerValue(reg({ name: 'f', address: 0, type: 'float32' }), 0, [0x7fc0, 0])).toBeNaN();
    expect(registerValue(reg({ name: 'b', address: 0, type: 'bool', table: 'coil' }), 1, [false, true])).toBe(
      1,
    );
  });

  it('issue 20.3: a command value becomes the write of the raw value; what does not fit is refused with why', () => {
    const sp = reg({ name: 'sp', address: 10, scale: 0.1, writable: true, min: 5, max: 30 });
    expect(writeRequest(9, sp, 21.54)).toEqual({
      request: { unit: 9, fn: 6, address: 10, value: 215 },
      written: 21.5,
    });
    expect(writeRequest(9, sp, -1)).toEqual({ error: 'sp takes 5..30; got -1' });
    expect(writeRequest(9, sp, 'x')).toEqual({ error: 'sp takes a number' });
    const big = reg({ name: 'big', address: 0, type: 'int32', wordOrder: 'little', writable: true });
    expect(writeRequest(9, big, -2)).toEqual({
      request: { unit: 9, fn: 16, address: 0, values: [0xfffe, 0xffff] },
      written: -2,
    });
    const neg = reg({ name: 'u', address: 0, type: 'uint16', writable: true });
    expect(writeRequest(9, neg, -1)).toEqual({ error: 'u takes 0..65535; got -1' });
    const coil = reg({ name: 'k', address: 3, type: 'bool', table: 'coil', writable: true });
    expect(writeRequest(9, coil, true)).toEqual({
      request: { unit: 9, fn: 5, address: 3, value: true },
      written: true,
    });
    expect(writeRequest(9, coil, 'on')).toEqual({ error: 'k is a coil: send true or false' });
    expect(numberBounds(reg({ name: 'n', address: 0, scale: -0.5 }))).toEqual([-16383.5, 16384]);
  });

  it('issue 20.3: Home Assistant gets a sensor per register, a number or a switch per writable one', () => {
    const d = describeDevice({
      id: 'x',
      unit: 1,
      registers: [
        reg({ name: 'sp', address: 0, scale: 0.5, unit: 'Cel', writable: true }),
        reg({ name: 'k', address: 0, table: 'coil', type: 'bool', writable: true }),
      ],
    });
    expect(d.sensors).toEqual([{ name: 'sp', unit: 'Cel' }, { name: 'k' }]);
    expect(d.commands).toEqual([
      { name: 'sp', kind: 'number', min: -16384, max: 16383.5, step: 0.5, unit: 'Cel' },
      { name: 'k', kind: 'switch' },
    ]);
  });
});
