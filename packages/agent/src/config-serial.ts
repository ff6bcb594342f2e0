/**
 * The `serial:` section: the list of ports, each a device path or a USB match, its line settings
 * and what speaks on it (mqtt-edge framing, text lines, or Modbus RTU, whose devices
 * `modbus-config.ts` reads).
 */
import path from 'node:path';
import { isName } from '@mqtt-edge/serial-protocol';
import { fmtMs, kind, type Obj, type Reader, show } from './config-reader.ts';
import { MODBUS_PORT_KEYS, type ModbusPortConfig, modbusDocument, readModbusPort } from './modbus-config.ts';

export type Framing = 'native' | 'json-lines' | 'key-value';

export interface UsbMatch {
  /** Hex, as `lsusb` and SerialPort.list() print it (`2341`). */
  vendorId?: string;
  productId?: string;
  serialNumber?: string;
}

export interface SerialPortConfig {
  /** Label in logs and status. */
  name: string;
  /** A device path (`/dev/ttyUSB0`, `/dev/serial/by-id/...`); or `usb` to find one. */
  path?: string;
  usb?: UsbMatch;
  baud: number;
  framing: Framing;
  /** Device id for text framings (they carry none); for native, the id expected in HELLO. */
  device?: string;
  /**
   * How often the device reports, ms, when its HELLO does not say (`p`): a port silent for
   * longer is asked for HELLO, then reopened (issue 19). 0: never. Absent: native ports use
   * `agent.expectedInterval`, text ports are not watched.
   */
  expectedIntervalMs?: number;
  /** A write that finds no room in the tty for this long fails and the port is reopened (issue 19). */
  writeTimeoutMs: number;
  /** Character format; absent: 8, none, 1 (issue 20: always set on Modbus ports, parity even by default). */
  dataBits?: 5 | 6 | 7 | 8;
  parity?: 'none' | 'even' | 'odd';
  stopBits?: 1 | 2;
  /** `protocol: modbus-rtu` (issue 20): the agent polls the devices listed here. */
  modbus?: ModbusPortConfig;
}

const PORT_KEYS = [
  'name',
  'path',
  'usb',
  'baud',
  'framing',
  'device',
  'expectedInterval',
  'writeTimeout',
  'protocol',
  'dataBits',
  'parity',
  'stopBits',
] as const;

const BAUDS = [
  300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 76800, 115200, 230400, 250000, 460800,
  500000, 921600, 1000000, 1500000, 2000000, 3000000,
];

/** What the ports read so far claim, so that two ports cannot share a name or a path. */
interface Taken {
  names: Set<string>;
  paths: Set<string>;
}

export function readSerialSection(r: Reader, v: unknown): SerialPortConfig[] {
  const serial: SerialPortConfig[] = [];
  if (v === undefined || v === null) r.problem('serial', 'missing: list at least one port');
  else if (!Array.isArray(v)) r.problem('serial', `must be a list of ports, got ${kind(v)}`);
  else if (v.length === 0) r.problem('serial', 'must list at least one port');
  else if (v.length > 256) r.problem('serial', 'at most 256 ports');
  else {
    const taken: Taken = { names: new Set(), paths: new Set() };
    v.forEach((item, i) => {
      const port = readPort(r, item, i, taken);
      if (port !== undefined) serial.push(port);
    });
  }
  return serial;
}

function readPort(r: Reader, item: unknown, i: number, taken: Taken): SerialPortConfig | undefined {
  const p = `serial[${i}]`;
  const s = r.object(p, item, [...PORT_KEYS, ...MODBUS_PORT_KEYS], false);
  if (s === undefined) return undefined;
  const portPath = r.string(`${p}.path`, s.path);
  const usb = s.usb === undefined ? undefined : readUsb(r, p, s.usb);
  if ((portPath === undefined) === (usb === undefined)) r.problem(p, 'give exactly one of path or usb');
  const protocol = r.oneOf(`${p}.protocol`, s.protocol, ['mqtt-edge', 'modbus-rtu'] as const, 'mqtt-edge');
  const modbus = protocol === 'modbus-rtu';
  checkProtocolKeys(r, p, s, modbus);
  // Modbus lines are mostly 9600 baud; the spec makes even parity the default (section 2.5.1).
  const baud = r.int(`${p}.baud`, s.baud, 50, 4_000_000, modbus ? 9600 : 115200);
  if (s.baud !== undefined && Number.isInteger(s.baud) && !BAUDS.includes(baud))
    r.problem(`${p}.baud`, `${baud} is not a standard rate (${BAUDS.join(', ')})`);
  const framing = r.oneOf(
    `${p}.framing`,
    s.framing,
    ['native', 'json-lines', 'key-value'] as const,
    'native',
  );
  const device = r.string(`${p}.device`, s.device);
  if (device !== undefined && !isName(device))
    r.problem(`${p}.device`, `must be 1..64 of A-Z a-z 0-9 _ . : - ; got ${show(device)}`);
  if (framing !== 'native' && device === undefined && !modbus)
    r.problem(`${p}.device`, `required with framing ${framing} (text lines carry no device id)`);
  const name =
    r.string(`${p}.name`, s.name) ??
    device ??
    (portPath !== undefined
      ? path.basename(portPath)
      : `usb-${usb?.vendorId ?? ''}-${usb?.serialNumber ?? i}`);
  if (taken.names.has(name)) r.problem(`${p}.name`, `${show(name)} names two ports; set distinct names`);
  taken.names.add(name);
  if (portPath !== undefined) {
    const abs = path.resolve(r.baseDir, portPath);
    if (taken.paths.has(abs)) r.problem(`${p}.path`, `${portPath} is listed twice`);
    taken.paths.add(abs);
  }
  const writeTimeoutMs = r.duration(`${p}.writeTimeout`, s.writeTimeout, 100, 600_000, 5000);
  const port: SerialPortConfig = { name, baud, framing, writeTimeoutMs };
  if (portPath !== undefined) port.path = path.resolve(r.baseDir, portPath);
  if (usb !== undefined) port.usb = usb;
  if (device !== undefined) port.device = device;
  const expected = r.interval(`${p}.expectedInterval`, s.expectedInterval);
  if (expected !== undefined && !modbus) port.expectedIntervalMs = expected;
  readCharacterFormat(r, p, s, modbus, port);
  if (modbus) port.modbus = readModbusPort(r, p, s, name);
  return port;
}

/** `usb:` finds the port by what the adapter reports; undefined when it is not a mapping. */
function readUsb(r: Reader, p: string, v: unknown): UsbMatch | undefined {
  const u = r.object(`${p}.usb`, v, ['vendorId', 'productId', 'serialNumber']);
  if (u === undefined) return undefined;
  const usb: UsbMatch = {};
  for (const k of ['vendorId', 'productId'] as const) {
    const id = typeof u[k] === 'number' ? String(u[k]) : u[k];
    const h = r.string(`${p}.usb.${k}`, id);
    if (h !== undefined && !/^(0x)?[0-9a-fA-F]{1,4}$/.test(h))
      r.problem(`${p}.usb.${k}`, `must be a 4-digit hex id such as 2341; got ${show(h)}`);
    else if (h !== undefined) usb[k] = h.replace(/^0x/, '').toLowerCase().padStart(4, '0');
  }
  const sn = r.string(
    `${p}.usb.serialNumber`,
    typeof u.serialNumber === 'number' ? String(u.serialNumber) : u.serialNumber,
  );
  if (sn !== undefined) usb.serialNumber = sn;
  if (Object.keys(usb).length === 0)
    r.problem(`${p}.usb`, 'give at least one of vendorId, productId, serialNumber');
  return usb;
}

/** The keys of one protocol are refused on a port of the other. */
function checkProtocolKeys(r: Reader, p: string, s: Obj, modbus: boolean): void {
  if (modbus) {
    for (const k of ['framing', 'device', 'expectedInterval'] as const)
      if (s[k] !== undefined)
        r.problem(
          `${p}.${k}`,
          k === 'device' ? 'a modbus-rtu port lists devices (unit, registers)' : 'not for a modbus-rtu port',
        );
  } else {
    for (const k of MODBUS_PORT_KEYS)
      if (s[k] !== undefined) r.problem(`${p}.${k}`, 'only with protocol: modbus-rtu');
  }
}

function readCharacterFormat(r: Reader, p: string, s: Obj, modbus: boolean, port: SerialPortConfig): void {
  const dataBits = r.int(`${p}.dataBits`, s.dataBits, 5, 8);
  const parity = r.oneOf(`${p}.parity`, s.parity, ['none', 'even', 'odd'] as const, modbus ? 'even' : 'none');
  const stopBits = r.int(`${p}.stopBits`, s.stopBits, 1, 2);
  // Written out only when set (or on Modbus ports, where they set the timing).
  if (modbus || dataBits !== undefined) port.dataBits = (dataBits ?? 8) as 5 | 6 | 7 | 8;
  if (modbus || s.parity !== undefined) port.parity = parity;
  if (modbus || stopBits !== undefined) port.stopBits = (stopBits ?? 1) as 1 | 2;
}

/** A port in the file's own keys and units. */
export function serialPortDocument(p: SerialPortConfig): Record<string, unknown> {
  const o: Record<string, unknown> = { name: p.name };
  if (p.path !== undefined) o.path = p.path;
  if (p.usb !== undefined) o.usb = { ...p.usb };
  o.baud = p.baud;
  if (p.modbus !== undefined) o.protocol = 'modbus-rtu';
  else o.framing = p.framing;
  if (p.dataBits !== undefined) o.dataBits = p.dataBits;
  if (p.parity !== undefined) o.parity = p.parity;
  if (p.stopBits !== undefined) o.stopBits = p.stopBits;
  if (p.device !== undefined) o.device = p.device;
  if (p.expectedIntervalMs !== undefined) o.expectedInterval = fmtMs(p.expectedIntervalMs);
  o.writeTimeout = fmtMs(p.writeTimeoutMs);
  if (p.modbus !== undefined) Object.assign(o, modbusDocument(p.modbus));
  return o;
}
