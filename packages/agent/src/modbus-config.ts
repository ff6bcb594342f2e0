/**
 * A `protocol: modbus-rtu` port's settings (issue 20.1): the line's timing, and its devices by
 * unit id, each with a register map. Read with the config's Reader, so every problem is reported
 * with its key path and line like the rest of the file.
 */
import { isName, type RegisterType, registerCount, type WordOrder } from '@mqtt-edge/serial-protocol';
import { fmtMs, type Obj, type Reader, show } from './config-reader.ts';

export type ModbusTable = 'coil' | 'discrete' | 'holding' | 'input';
/** Registers hold numbers of a RegisterType; coils and discrete inputs a bit. */
export type ModbusValueType = RegisterType | 'bool';

export interface ModbusRegisterConfig {
  /** The sensor name (a topic level) and, when writable, the command name. */
  name: string;
  table: ModbusTable;
  /** 0..65535, as on the wire (register 40001 of a manual is holding address 0). */
  address: number;
  type: ModbusValueType;
  wordOrder: WordOrder;
  /** The reading is raw * scale + offset. */
  scale: number;
  offset: number;
  /** SenML unit. */
  unit?: string;
  /** How often its group is read, ms. */
  intervalMs: number;
  /** Holding registers and coils: `{prefix}/{device}/cmd/{name}` writes it. */
  writable: boolean;
  /** A writable number's bounds (engineering units); default the type's range, scaled. */
  min?: number;
  max?: number;
}

export interface ModbusDeviceConfig {
  /** The device id in topics. */
  id: string;
  /** Modbus unit (slave) address, 1..247. */
  unit: number;
  model?: string;
  registers: ModbusRegisterConfig[];
}

export interface ModbusPortConfig {
  /** The silence before each request, ms; absent: 3.5 characters (1.75 ms above 19200 baud). */
  frameGapMs?: number;
  responseTimeoutMs: number;
  retries: number;
  /** A device is offline after this many polls in a row went unanswered. */
  offlineAfter: number;
  devices: ModbusDeviceConfig[];
}

export const MODBUS_PORT_KEYS = [
  'frameGap',
  'responseTimeout',
  'retries',
  'offlineAfter',
  'devices',
] as const;
const DEVICE_KEYS = ['id', 'unit', 'model', 'interval', 'registers'];
const REGISTER_KEYS = [
  'name',
  'table',
  'address',
  'type',
  'wordOrder',
  'scale',
  'offset',
  'unit',
  'interval',
  'writable',
  'min',
  'max',
];
const TABLES: readonly ModbusTable[] = ['holding', 'input', 'coil', 'discrete'];
const TYPES: readonly ModbusValueType[] = ['int16', 'uint16', 'int32', 'uint32', 'float32', 'bool'];
const MAX_DEVICES = 247;
const MAX_REGISTERS = 256;
const DEFAULT_INTERVAL_MS = 10_000;

const isBits = (t: ModbusTable) => t === 'coil' || t === 'discrete';

/** Reads a modbus-rtu port's keys (`s` is the port's mapping at `p`). */
export function readModbusPort(r: Reader, p: string, s: Obj, portName: string): ModbusPortConfig {
  const frameGapMs = r.duration(`${p}.frameGap`, s.frameGap, 1, 1000);
  const port: ModbusPortConfig = {
    responseTimeoutMs: r.duration(`${p}.responseTimeout`, s.responseTimeout, 10, 60_000, 1000),
    retries: r.int(`${p}.retries`, s.retries, 0, 10, 1),
    offlineAfter: r.int(`${p}.offlineAfter`, s.offlineAfter, 1, 1000, 3),
    devices: [],
  };
  if (frameGapMs !== undefined) port.frameGapMs = frameGapMs;
  if (!Array.isArray(s.devices) || s.devices.length === 0) {
    r.problem(`${p}.devices`, 'list the devices on the line (unit, registers)');
    return port;
  }
  if (s.devices.length > MAX_DEVICES) r.problem(`${p}.devices`, `at most ${MAX_DEVICES} (unit ids 1..247)`);
  const units = new Set<number>();
  const ids = new Set<string>();
  s.devices.slice(0, MAX_DEVICES).forEach((item, i) => {
    const dp = `${p}.devices[${i}]`;
    const d = r.object(dp, item, DEVICE_KEYS, false);
    if (d === undefined) return;
    const unit = r.int(`${dp}.unit`, d.unit, 1, 247);
    if (unit === undefined) {
      if (d.unit === undefined) r.problem(`${dp}.unit`, "missing: the device's Modbus address, 1..247");
      return;
    }
    if (units.has(unit)) r.problem(`${dp}.unit`, `unit ${unit} is listed twice on this line`);
    units.add(unit);
    const id = r.string(`${dp}.id`, d.id) ?? `${portName}-${unit}`;
    if (!isName(id)) r.problem(`${dp}.id`, `must be 1..64 of A-Z a-z 0-9 _ . : - ; got ${show(id)}`);
    if (ids.has(id)) r.problem(`${dp}.id`, `${show(id)} names two devices`);
    ids.add(id);
    const device: ModbusDeviceConfig = { id, unit, registers: [] };
    const model = r.string(`${dp}.model`, d.model);
    if (model !== undefined) device.model = model;
    const interval = r.duration(`${dp}.interval`, d.interval, 100, 86_400_000, DEFAULT_INTERVAL_MS);
    if (!Array.isArray(d.registers) || d.registers.length === 0) {
      r.problem(`${dp}.registers`, 'list what to read: name, table, address (type, scale, unit...)');
    } else if (d.registers.length > MAX_REGISTERS) {
      r.problem(`${dp}.registers`, `at most ${MAX_REGISTERS} per device`);
    } else {
      const names = new Set<string>();
      d.registers.forEach((ri, j) => {
        const reg = readRegister(r, `${dp}.registers[${j}]`, ri, interval);
        if (reg === undefined) return;
        if (names.has(reg.name))
          r.problem(`${dp}.registers[${j}].name`, `${show(reg.name)} names two registers`);
        names.add(reg.name);
        device.registers.push(reg);
      });
    }
    port.devices.push(device);
  });
  return port;
}

function readRegister(
  r: Reader,
  p: string,
  item: unknown,
  defaultInterval: number,
): ModbusRegisterConfig | undefined {
  const o = r.object(p, item, REGISTER_KEYS, false);
  if (o === undefined) return undefined;
  const name = r.string(`${p}.name`, o.name, { required: true });
  if (name !== undefined && !isName(name))
    r.problem(`${p}.name`, `must be 1..64 of A-Z a-z 0-9 _ . : - (a topic level); got ${show(name)}`);
  if (o.table === undefined) r.problem(`${p}.table`, `missing: one of ${TABLES.join(', ')}`);
  const table = r.oneOf(`${p}.table`, o.table, TABLES, 'holding');
  const address = r.int(`${p}.address`, o.address, 0, 65535);
  if (o.address === undefined) r.problem(`${p}.address`, 'missing: 0..65535, as on the wire');
  const type = r.oneOf(`${p}.type`, o.type, TYPES, isBits(table) ? 'bool' : 'int16');
  if (isBits(table) !== (type === 'bool'))
    r.problem(
      `${p}.type`,
      isBits(table)
        ? `a ${table} is one bit: type bool (or leave it out)`
        : `a ${table} register holds int16, uint16, int32, uint32 or float32`,
    );
  if (address !== undefined && type !== 'bool' && address + registerCount(type) > 65536)
    r.problem(`${p}.address`, `${type} at ${address} runs past register 65535`);
  const reg: ModbusRegisterConfig = {
    name: name ?? '',
    table,
    address: address ?? 0,
    type,
    wordOrder: r.oneOf(`${p}.wordOrder`, o.wordOrder, ['big', 'little'] as const, 'big'),
    scale: number(r, `${p}.scale`, o.scale, 1),
    offset: number(r, `${p}.offset`, o.offset, 0),
    intervalMs: r.duration(`${p}.interval`, o.interval, 100, 86_400_000, defaultInterval),
    writable: r.bool(`${p}.writable`, o.writable, false),
  };
  if (reg.scale === 0) r.problem(`${p}.scale`, 'must not be 0');
  const unit = r.string(`${p}.unit`, o.unit);
  if (unit !== undefined) reg.unit = unit;
  if (reg.writable && (table === 'input' || table === 'discrete'))
    r.problem(
      `${p}.writable`,
      `${table === 'input' ? 'an input register' : 'a discrete input'} is read-only in Modbus: only holding registers and coils are written`,
    );
  for (const k of ['min', 'max'] as const) {
    if (o[k] === undefined) continue;
    if (!reg.writable || type === 'bool') r.problem(`${p}.${k}`, 'bounds a writable number register only');
    else reg[k] = number(r, `${p}.${k}`, o[k], 0);
  }
  if (reg.min !== undefined && reg.max !== undefined && reg.min > reg.max)
    r.problem(`${p}.max`, 'must be >= min');
  return reg;
}

function number(r: Reader, p: string, v: unknown, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    r.problem(p, `must be a number; got ${show(v)}`);
    return dflt;
  }
  return v;
}

/** The port's Modbus keys as the file spells them (for `check` and reload diffs). */
export function modbusDocument(m: ModbusPortConfig): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (m.frameGapMs !== undefined) o.frameGap = fmtMs(m.frameGapMs);
  Object.assign(o, {
    responseTimeout: fmtMs(m.responseTimeoutMs),
    retries: m.retries,
    offlineAfter: m.offlineAfter,
    devices: m.devices.map((d) => ({
      id: d.id,
      unit: d.unit,
      ...(d.model === undefined ? {} : { model: d.model }),
      registers: d.registers.map((g) => {
        const reg: Record<string, unknown> = {
          name: g.name,
          table: g.table,
          address: g.address,
          type: g.type,
          wordOrder: g.wordOrder,
          scale: g.scale,
          offset: g.offset,
        };
        if (g.unit !== undefined) reg.unit = g.unit;
        reg.interval = fmtMs(g.intervalMs);
        reg.writable = g.writable;
        if (g.min !== undefined) reg.min = g.min;
        if (g.max !== undefined) reg.max = g.max;
        return reg;
      }),
    })),
  });
  return o;
}
