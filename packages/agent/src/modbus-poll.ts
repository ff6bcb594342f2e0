/**
 * What a Modbus device's register map becomes on the line (issue 20.1), and what comes back
 * becomes: poll groups (one request each: registers of one table and one interval whose addresses
 * touch or overlap, up to the spec's 125 registers or 2000 bits), values from raw words with their
 * type, word order, scale and offset, and a written value back to raw. Pure functions.
 */
import {
  type CommandInfo,
  decodeRegisters,
  encodeRegisters,
  type ModbusReadRequest,
  type ModbusRequest,
  type RegisterType,
  registerCount,
  registerRange,
  registerValueProblem,
  type SensorInfo,
} from '@mqtt-edge/serial-protocol';
import type { ModbusDeviceConfig, ModbusRegisterConfig, ModbusTable } from './modbus-config.ts';

const FN: Record<ModbusTable, 1 | 2 | 3 | 4> = { coil: 1, discrete: 2, holding: 3, input: 4 };
const MAX_QUANTITY: Record<ModbusTable, number> = { coil: 2000, discrete: 2000, holding: 125, input: 125 };

export interface PollGroup {
  device: ModbusDeviceConfig;
  table: ModbusTable;
  intervalMs: number;
  request: ModbusReadRequest;
  /** Its registers, in address order, each with its first word's (or bit's) index in the response. */
  entries: Array<{ register: ModbusRegisterConfig; at: number }>;
}

function width(r: ModbusRegisterConfig): number {
  return r.type === 'bool' ? 1 : registerCount(r.type);
}

/** A device's registers as requests: one table and interval each, contiguous addresses merged. */
export function pollGroups(device: ModbusDeviceConfig): PollGroup[] {
  const byKind = new Map<string, ModbusRegisterConfig[]>();
  for (const r of device.registers) {
    const k = `${r.table}/${r.intervalMs}`;
    const list = byKind.get(k);
    if (list === undefined) byKind.set(k, [r]);
    else list.push(r);
  }
  const groups: PollGroup[] = [];
  for (const list of byKind.values()) {
    const sorted = [...list].sort((a, b) => a.address - b.address || width(b) - width(a));
    let current: PollGroup | undefined;
    let end = 0;
    for (const r of sorted) {
      const rEnd = r.address + width(r);
      const max = MAX_QUANTITY[r.table];
      if (current !== undefined && r.address <= end && Math.max(end, rEnd) - current.request.address <= max) {
        end = Math.max(end, rEnd);
        current.request.quantity = end - current.request.address;
        current.entries.push({ register: r, at: r.address - current.request.address });
        continue;
      }
      current = {
        device,
        table: r.table,
        intervalMs: r.intervalMs,
        request: { unit: device.unit, fn: FN[r.table], address: r.address, quantity: width(r) },
        entries: [{ register: r, at: 0 }],
      };
      end = rEnd;
      groups.push(current);
    }
  }
  return groups;
}

/** The shortest decimal that is the same float32 (`0.1`, not `0.10000000149011612`). */
function shortestFloat32(x: number): number {
  for (let p = 1; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

/** raw * scale + offset, without the binary noise of the multiplication (234.5, not 234.50000000000003). */
function scaled(raw: number, r: ModbusRegisterConfig): number {
  if (r.scale === 1 && r.offset === 0) return raw;
  return Number((raw * r.scale + r.offset).toPrecision(15));
}

/** The reading of one register from its group's response (words, or bits); NaN when the device sent a non-finite float. */
export function registerValue(r: ModbusRegisterConfig, at: number, words: number[] | boolean[]): number {
  if (r.type === 'bool') return (words as boolean[])[at] ? 1 : 0;
  let raw = decodeRegisters(words as number[], r.type, r.wordOrder, at);
  if (!Number.isFinite(raw)) return Number.NaN;
  if (r.type === 'float32') raw = shortestFloat32(raw);
  return scaled(raw, r);
}

/**
 * The write request for a command's value (engineering units), and the value that will read back
 * (rounded to what the register holds); or why it cannot be written.
 */
export function writeRequest(
  unit: number,
  r: ModbusRegisterConfig,
  value: unknown,
): { request: ModbusRequest; written: number | boolean } | { error: string } {
  if (r.type === 'bool') {
    const on = value === true || value === 1 ? true : value === false || value === 0 ? false : undefined;
    if (on === undefined) return { error: `${r.name} is a coil: send true or false` };
    return { request: { unit, fn: 5, address: r.address, value: on }, written: on };
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) return { error: `${r.name} takes a number` };
  const [min, max] = numberBounds(r);
  if (value < min || value > max) return { error: `${r.name} takes ${min}..${max}; got ${value}` };
  let raw = (value - r.offset) / r.scale;
  if (r.type !== 'float32') raw = Math.round(raw);
  const problem = registerValueProblem(raw, r.type as RegisterType);
  if (problem !== undefined) return { error: `${r.name}: ${value} is ${raw} raw: ${problem}` };
  const words = encodeRegisters(raw, r.type, r.wordOrder);
  const written = registerValue(r, 0, words);
  const request: ModbusRequest =
    words.length === 1
      ? { unit, fn: 6, address: r.address, value: words[0] }
      : { unit, fn: 16, address: r.address, values: words };
  return { request, written };
}

/** A writable number's bounds in engineering units: its min/max, else its type's range scaled. */
export function numberBounds(r: ModbusRegisterConfig): [number, number] {
  const [lo, hi] = r.type === 'bool' ? [0, 1] : registerRange(r.type);
  // float32's range is no useful slider: a million either way unless the config says.
  const clamp = (x: number) => (r.type === 'float32' ? Math.max(-1e6, Math.min(1e6, x)) : x);
  const a = clamp(scaled(lo, r));
  const b = clamp(scaled(hi, r));
  return [r.min ?? Math.min(a, b), r.max ?? Math.max(a, b)];
}

/** What Home Assistant discovery announces for the device: a sensor per register, a command per writable one. */
export function describe(device: ModbusDeviceConfig): { sensors: SensorInfo[]; commands: CommandInfo[] } {
  const sensors = device.registers.map((r) =>
    r.unit === undefined ? { name: r.name } : { name: r.name, unit: r.unit },
  );
  const commands: CommandInfo[] = [];
  for (const r of device.registers) {
    if (!r.writable) continue;
    if (r.type === 'bool') commands.push({ name: r.name, kind: 'switch' });
    else {
      const [min, max] = numberBounds(r);
      const c: CommandInfo = { name: r.name, kind: 'number', min, max, step: Math.abs(r.scale) };
      if (r.unit !== undefined) c.unit = r.unit;
      commands.push(c);
    }
  }
  return { sensors, commands };
}
