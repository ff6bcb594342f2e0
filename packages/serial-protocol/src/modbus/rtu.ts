/**
 * Modbus RTU framing (issue 20): requests a master sends, and the reader of the one response it
 * then waits for. Pure code on Uint8Array, no I/O and no timers; `master.ts` drives it on a line.
 *
 * An RTU frame is unit id, function code, data, CRC-16/MODBUS (low byte first), at most 256 bytes
 * (the ADU), and frames are told apart on the wire by 3.5 characters of silence. A master knows
 * from its request exactly how long a normal response is (or 5 bytes for an exception), so the
 * reader takes the length from the request and never from the response: a byte count that lies is
 * refused, never followed. It skips line noise before the response (a driver enabling on RS-485
 * often leaves a byte or two), accepts a frame only with the right CRC, unit, function and length,
 * and holds at most one ADU whatever arrives.
 */
import { crc16Matches, crc16modbus } from './crc16.ts';

/** The largest RTU frame (address + PDU of 253 + CRC). */
export const MODBUS_MAX_ADU = 256;

export const ModbusFunction = {
  ReadCoils: 1,
  ReadDiscreteInputs: 2,
  ReadHoldingRegisters: 3,
  ReadInputRegisters: 4,
  WriteSingleCoil: 5,
  WriteSingleRegister: 6,
  WriteMultipleCoils: 15,
  WriteMultipleRegisters: 16,
} as const;

/** Read 1..2000 coils (1) or discrete inputs (2), 1..125 holding (3) or input (4) registers. */
export interface ModbusReadRequest {
  unit: number;
  fn: 1 | 2 | 3 | 4;
  address: number;
  quantity: number;
}

export type ModbusRequest =
  | ModbusReadRequest
  | { unit: number; fn: 5; address: number; value: boolean }
  | { unit: number; fn: 6; address: number; value: number }
  | { unit: number; fn: 15; address: number; values: readonly boolean[] }
  | { unit: number; fn: 16; address: number; values: readonly number[] };

export type ModbusResponse =
  | { type: 'bits'; values: boolean[] }
  | { type: 'registers'; values: number[] }
  /** A write's echo, checked against the request. */
  | { type: 'written' }
  /** The device refused the request: `code` is the Modbus exception code (2: illegal data address). */
  | { type: 'exception'; code: number };

/** The spec's limits per request (Modbus Application Protocol 1.1b3, section 6). */
const MAX_READ_BITS = 2000;
const MAX_READ_REGISTERS = 125;
const MAX_WRITE_BITS = 1968;
const MAX_WRITE_REGISTERS = 123;

const isInt = (x: unknown, min: number, max: number): x is number =>
  typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;

function quantityOf(r: ModbusRequest): number {
  switch (r.fn) {
    case 1:
    case 2:
    case 3:
    case 4:
      return r.quantity;
    case 5:
    case 6:
      return 1;
    case 15:
    case 16:
      return r.values.length;
  }
}

/** Why a request cannot be sent (undefined: it can). */
export function requestProblem(r: ModbusRequest): string | undefined {
  if (!isInt(r.unit, 1, 247))
    return `unit must be 1..247 (0 is broadcast, which is never answered); got ${r.unit}`;
  if (!isInt(r.address, 0, 65535)) return `address must be 0..65535; got ${r.address}`;
  const max = {
    1: MAX_READ_BITS,
    2: MAX_READ_BITS,
    3: MAX_READ_REGISTERS,
    4: MAX_READ_REGISTERS,
    5: 1,
    6: 1,
    15: MAX_WRITE_BITS,
    16: MAX_WRITE_REGISTERS,
  }[r.fn];
  if (max === undefined) return `function ${(r as { fn: unknown }).fn} is not supported`;
  const q = quantityOf(r);
  if (!isInt(q, 1, max)) return `quantity must be 1..${max} for function ${r.fn}; got ${q}`;
  if (r.address + q > 65536) return `address ${r.address} + quantity ${q} runs past 65535`;
  if (r.fn === 5 && typeof r.value !== 'boolean') return 'value must be true or false';
  if (r.fn === 6 && !isInt(r.value, 0, 65535)) return `value must be an integer 0..65535; got ${r.value}`;
  if (r.fn === 15 && !r.values.every((v) => typeof v === 'boolean')) return 'values must be true or false';
  if (r.fn === 16 && !r.values.every((v) => isInt(v, 0, 65535))) return 'values must be integers 0..65535';
  return undefined;
}

/** Appends the CRC to `frame[0..end)` (the array has room for it) and returns the frame. */
function sealed(frame: Uint8Array): Uint8Array {
  const end = frame.length - 2;
  const crc = crc16modbus(frame, 0, end);
  frame[end] = crc & 0xff;
  frame[end + 1] = crc >>> 8;
  return frame;
}

function packBits(values: readonly boolean[], into: Uint8Array, at: number): void {
  for (let i = 0; i < values.length; i++) if (values[i]) into[at + (i >> 3)] |= 1 << (i & 7);
}

/** The request as bytes, CRC included. RangeError when it breaks the spec (`requestProblem`). */
export function encodeRequest(r: ModbusRequest): Uint8Array {
  const problem = requestProblem(r);
  if (problem !== undefined) throw new RangeError(`modbus request: ${problem}`);
  let frame: Uint8Array;
  switch (r.fn) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6: {
      frame = new Uint8Array(8);
      const word = r.fn === 5 ? (r.value ? 0xff00 : 0) : r.fn === 6 ? r.value : r.quantity;
      frame[4] = word >>> 8;
      frame[5] = word & 0xff;
      break;
    }
    case 15: {
      const bytes = (r.values.length + 7) >> 3;
      frame = new Uint8Array(9 + bytes);
      frame[4] = r.values.length >>> 8;
      frame[5] = r.values.length & 0xff;
      frame[6] = bytes;
      packBits(r.values, frame, 7);
      break;
    }
    case 16: {
      frame = new Uint8Array(9 + 2 * r.values.length);
      frame[4] = r.values.length >>> 8;
      frame[5] = r.values.length & 0xff;
      frame[6] = 2 * r.values.length;
      r.values.forEach((v, i) => {
        frame[7 + 2 * i] = v >>> 8;
        frame[8 + 2 * i] = v & 0xff;
      });
      break;
    }
  }
  frame[0] = r.unit;
  frame[1] = r.fn;
  frame[2] = r.address >>> 8;
  frame[3] = r.address & 0xff;
  return sealed(frame);
}

/** Bytes of the normal (not exception) response to `r`, CRC included. */
export function expectedResponseLength(r: ModbusRequest): number {
  switch (r.fn) {
    case 1:
    case 2:
      return 5 + ((r.quantity + 7) >> 3);
    case 3:
    case 4:
      return 5 + 2 * r.quantity;
    default:
      return 8;
  }
}

/**
 * The response a device sends to `r` (servers, line emulators and tests build theirs with it).
 * `bits` and `registers` must hold what `r` asked for.
 */
export function encodeResponse(r: ModbusRequest, response: ModbusResponse): Uint8Array {
  if (response.type === 'exception') {
    const f = new Uint8Array(5);
    f[0] = r.unit;
    f[1] = r.fn | 0x80;
    f[2] = response.code;
    return sealed(f);
  }
  const frame = new Uint8Array(expectedResponseLength(r));
  frame[0] = r.unit;
  frame[1] = r.fn;
  if (response.type === 'bits') {
    frame[2] = frame.length - 5;
    packBits(response.values, frame, 3);
  } else if (response.type === 'registers') {
    frame[2] = frame.length - 5;
    response.values.forEach((v, i) => {
      frame[3 + 2 * i] = v >>> 8;
      frame[4 + 2 * i] = v & 0xff;
    });
  } else {
    // A write's echo: the request's first six bytes.
    frame.set(encodeRequest(r).subarray(0, 6));
  }
  return sealed(frame);
}

const EXCEPTIONS: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  8: 'memory parity error',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
};

/** The spec's name of an exception code (`illegal data address`), or `exception N`. */
export function exceptionName(code: number): string {
  return EXCEPTIONS[code] ?? `exception ${code}`;
}

/** Why a response could not be read. */
export type ModbusFrameErrorKind =
  /** Nothing arrived. */
  | 'timeout'
  /** The response began and stopped short. */
  | 'truncated'
  /** A frame of the right shape whose CRC is wrong. */
  | 'crc'
  /** A valid frame from another unit id. */
  | 'unit'
  /** The right unit, a function code that is neither the request's nor its exception. */
  | 'function'
  /** The byte count is not what the request asked for. */
  | 'byte-count'
  /** A write's echo differs from the write. */
  | 'echo'
  /** More bytes than the response can have: bytes after the frame, or a flood without one. */
  | 'oversize'
  /** Bytes without anything like a response in them. */
  | 'garbage';

export class ModbusFrameError extends Error {
  override readonly name = 'ModbusFrameError';
  constructor(
    readonly kind: ModbusFrameErrorKind,
    message: string,
  ) {
    super(`${kind}: ${message}`);
  }
}

export type ReaderState =
  | { status: 'incomplete' }
  /** `skipped`: bytes of line noise before the frame. */
  | { status: 'done'; response: ModbusResponse; skipped: number }
  | { status: 'error'; error: ModbusFrameError };

const INCOMPLETE: ReaderState = { status: 'incomplete' };
/** What an offset holds: nothing that can start the response, not enough bytes yet, or a frame of this length. */
const DEAD = -1;
const WAIT = 0;

/**
 * Reads the response to one request from the bytes that follow it. `push` every chunk; the
 * state turns `done` or `error` once and stays so. When the line goes quiet while it is still
 * `incomplete` (a response timeout, or silence after a partial frame), `finish()` says why.
 *
 * Every offset is judged once: a candidate frame there is checked when its last byte arrives
 * and, if it fails, never again. So the work on any input is bounded by one CRC per offset of one
 * ADU, and the buffer by one ADU.
 */
export class RtuResponseReader {
  private readonly buf = new Uint8Array(MODBUS_MAX_ADU);
  private len = 0;
  /** Offsets below it hold no response. */
  private scan = 0;
  /** Bytes pushed in all. */
  received = 0;
  private final: ReaderState | undefined;
  private readonly unit: number;
  private readonly fn: number;
  private readonly normalLength: number;
  private seenCrc = false;
  private seenByteCount = false;
  private seenFunction = false;

  constructor(readonly request: ModbusRequest) {
    this.unit = request.unit;
    this.fn = request.fn;
    this.normalLength = expectedResponseLength(request);
  }

  /** Bytes held (at most one ADU). */
  get held(): number {
    return this.len;
  }

  push(chunk: Uint8Array): ReaderState {
    if (this.final !== undefined) return this.final;
    if (chunk.length === 0) return INCOMPLETE;
    this.received += chunk.length;
    if (this.received > MODBUS_MAX_ADU)
      return this.fail('oversize', `${this.received} bytes without a response that fits one frame`);
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
    for (let s = this.scan; s < this.len; s++) {
      const length = this.candidate(s);
      if (length === WAIT) return INCOMPLETE;
      if (length === DEAD) {
        this.scan = s + 1;
        continue;
      }
      return this.accept(s, length);
    }
    return INCOMPLETE;
  }

  /** No response came (the line went quiet): why, as an error. */
  finish(): ModbusFrameError {
    if (this.final?.status === 'error') return this.final.error;
    if (this.received === 0) return new ModbusFrameError('timeout', 'no response');
    const n = `${this.received} bytes`;
    if (this.seenCrc) return new ModbusFrameError('crc', `${n}, a frame with a wrong CRC`);
    if (this.seenByteCount)
      return new ModbusFrameError(
        'byte-count',
        `${n}, a byte count other than the ${this.normalLength - 5} asked for`,
      );
    if (this.seenFunction) return new ModbusFrameError('function', `${n}, an unexpected function code`);
    if (this.scan < this.len && this.buf[this.scan] === this.unit)
      return new ModbusFrameError('truncated', `${n}, the response stopped after ${this.len - this.scan}`);
    return new ModbusFrameError('garbage', `${n}, no response in them`);
  }

  private fail(kind: ModbusFrameErrorKind, message: string): ReaderState {
    this.final = { status: 'error', error: new ModbusFrameError(kind, message) };
    return this.final;
  }

  /** At offset `s`: DEAD, WAIT, or the length of a complete frame whose CRC is right. */
  private candidate(s: number): number {
    const b = this.buf;
    const ours = b[s] === this.unit;
    if (s + 1 >= this.len) return WAIT;
    let length: number;
    if (b[s + 1] === this.fn) length = this.normalLength;
    else if (b[s + 1] === (this.fn | 0x80)) length = 5;
    else {
      if (ours) this.seenFunction = true;
      return DEAD;
    }
    if (length !== 5 && this.fn <= 4) {
      if (s + 2 >= this.len) return WAIT;
      if (b[s + 2] !== this.normalLength - 5) {
        if (ours) this.seenByteCount = true;
        return DEAD;
      }
    }
    if (s + length > this.len) return WAIT;
    if (!crc16Matches(b, s, s + length - 2)) {
      if (ours) this.seenCrc = true;
      return DEAD;
    }
    return length;
  }

  private accept(s: number, length: number): ReaderState {
    const b = this.buf;
    if (b[s] !== this.unit)
      return this.fail(
        'unit',
        `a valid frame from unit ${b[s]}, not ${this.unit}: two devices at one address?`,
      );
    if (s + length < this.len)
      return this.fail('oversize', `${this.len - s - length} bytes after a ${length}-byte response`);
    let response: ModbusResponse;
    if (length === 5 && b[s + 1] === (this.fn | 0x80)) response = { type: 'exception', code: b[s + 2] };
    else {
      const r = this.request;
      switch (r.fn) {
        case 1:
        case 2: {
          const values = new Array<boolean>(r.quantity);
          for (let i = 0; i < r.quantity; i++) values[i] = ((b[s + 3 + (i >> 3)] >> (i & 7)) & 1) === 1;
          response = { type: 'bits', values };
          break;
        }
        case 3:
        case 4: {
          const values = new Array<number>(r.quantity);
          for (let i = 0; i < r.quantity; i++) values[i] = (b[s + 3 + 2 * i] << 8) | b[s + 4 + 2 * i];
          response = { type: 'registers', values };
          break;
        }
        default: {
          const echo = encodeRequest(r);
          for (let i = 2; i < 6; i++)
            if (b[s + i] !== echo[i])
              return this.fail('echo', 'the echo of the write differs from the write');
          response = { type: 'written' };
        }
      }
    }
    this.final = { status: 'done', response, skipped: s };
    return this.final;
  }
}

/**
 * The length of the request frame at the start of `bytes[0..len)`: 0 while too few bytes say,
 * -1 for a function this module does not serve. For servers and line emulators.
 */
export function requestFrameLength(bytes: Uint8Array, len = bytes.length): number {
  if (len < 2) return 0;
  const fn = bytes[1];
  if (fn >= 1 && fn <= 6) return 8;
  if (fn !== 15 && fn !== 16) return -1;
  return len < 7 ? 0 : 9 + bytes[6];
}

/** A whole request frame parsed (servers, line emulators, tests); CRC and counts checked. */
export function parseRequestFrame(
  frame: Uint8Array,
): { ok: true; request: ModbusRequest } | { ok: false; error: string } {
  const length = requestFrameLength(frame);
  if (length < 0) return { ok: false, error: `function ${frame[1]} not supported` };
  if (length === 0 || frame.length !== length)
    return { ok: false, error: `${frame.length} bytes, not a whole frame` };
  if (!crc16Matches(frame, 0, length - 2)) return { ok: false, error: 'wrong CRC' };
  const unit = frame[0];
  const fn = frame[1];
  const address = (frame[2] << 8) | frame[3];
  const word = (frame[4] << 8) | frame[5];
  let request: ModbusRequest;
  if (fn <= 4) request = { unit, fn: fn as 1 | 2 | 3 | 4, address, quantity: word };
  else if (fn === 5) {
    if (word !== 0xff00 && word !== 0) return { ok: false, error: 'a coil is written 0xFF00 or 0x0000' };
    request = { unit, fn, address, value: word === 0xff00 };
  } else if (fn === 6) request = { unit, fn, address, value: word };
  else if (fn === 15) {
    if (frame[6] !== (word + 7) >> 3) return { ok: false, error: 'byte count does not match the quantity' };
    const values = Array.from({ length: word }, (_, i) => ((frame[7 + (i >> 3)] >> (i & 7)) & 1) === 1);
    request = { unit, fn, address, values };
  } else {
    if (frame[6] !== 2 * word) return { ok: false, error: 'byte count does not match the quantity' };
    const values = Array.from({ length: word }, (_, i) => (frame[7 + 2 * i] << 8) | frame[8 + 2 * i]);
    request = { unit, fn: 16, address, values };
  }
  const problem = requestProblem(request);
  return problem === undefined ? { ok: true, request } : { ok: false, error: problem };
}

/** How a character is sent: data bits, parity, stop bits (a start bit always). */
export interface CharFormat {
  dataBits: 5 | 6 | 7 | 8;
  parity: 'none' | 'even' | 'odd';
  stopBits: 1 | 2;
}

/** One character on the line, in microseconds. */
export function modbusCharTimeUs(baud: number, f: CharFormat): number {
  return ((1 + f.dataBits + (f.parity === 'none' ? 0 : 1) + f.stopBits) * 1e6) / baud;
}

/**
 * The silence between frames: 3.5 characters, and 1.75 ms above 19200 baud (the spec fixes it
 * there: Modbus over Serial Line 1.02, section 2.5.1.1).
 */
export function modbusFrameGapUs(baud: number, f: CharFormat): number {
  return baud > 19200 ? 1750 : 3.5 * modbusCharTimeUs(baud, f);
}
