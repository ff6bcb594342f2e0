/**
 * Modbus RTU framing (issue 20.2/20.3): CRC-16/MODBUS, requests, and the master's response
 * reader against what a line can deliver: good frames in any chunking, exceptions, and hostile
 * input (garbage, truncation, oversize, wrong CRC, wrong unit, byte counts that lie), all at the
 * parser level. The reader is bounded: it never holds more than one ADU (256 bytes).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  crc16modbus,
  decodeRegisters,
  encodeRegisters,
  encodeRequest,
  encodeResponse,
  exceptionName,
  expectedResponseLength,
  MODBUS_MAX_ADU,
  type ModbusRequest,
  modbusCharTimeUs,
  modbusFrameGapUs,
  parseRequestFrame,
  RtuResponseReader,
  requestProblem,
} from '../src/index.ts';

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Pushes `bytes` in the given chunk sizes; the first non-incomplete state, or the last. */
function feed(reader: RtuResponseReader, bytes: Uint8Array, sizes: number[] = [bytes.length]) {
  let at = 0;
  let state = reader.push(new Uint8Array(0));
  for (const n of sizes) {
    if (at >= bytes.length) break;
    state = reader.push(bytes.subarray(at, Math.min(bytes.length, at + n)));
    at += n;
    if (state.status !== 'incomplete') return state;
  }
  if (at < bytes.length) state = reader.push(bytes.subarray(at));
  return state;
}

const READ_HOLDING: ModbusRequest = { unit: 1, fn: 3, address: 0, quantity: 2 };

describe('issue 20.2: CRC-16/MODBUS', () => {
  it('issue 20.2: the check value of "123456789" is 0x4B37, and known frames carry their CRC low byte first', () => {
    expect(crc16modbus(new TextEncoder().encode('123456789'))).toBe(0x4b37);
    // Read 2 holding registers from 0 of unit 1 (the frame every Modbus tutorial shows).
    expect(toHex(encodeRequest(READ_HOLDING))).toBe('010300000002c40b');
    // What pymodbus answered in the reference run: registers 1234 and 5.
    const response = hex('01030404d200059b39');
    expect(crc16modbus(response, 0, response.length - 2)).toBe(0x399b);
  });
});

describe('issue 20.2: requests', () => {
  it('issue 20.2: every function is encoded as the spec lays it out, and parses back', () => {
    const cases: Array<[ModbusRequest, string]> = [
      [{ unit: 17, fn: 1, address: 19, quantity: 37 }, '1101001300 25'],
      [{ unit: 17, fn: 2, address: 196, quantity: 22 }, '110200c40016'],
      [{ unit: 17, fn: 3, address: 107, quantity: 3 }, '1103006b0003'],
      [{ unit: 17, fn: 4, address: 8, quantity: 1 }, '110400080001'],
      [{ unit: 17, fn: 5, address: 172, value: true }, '110500acff00'],
      [{ unit: 17, fn: 6, address: 1, value: 3 }, '110600010003'],
      [
        {
          unit: 17,
          fn: 15,
          address: 19,
          values: [true, false, true, true, false, false, true, true, true, false],
        },
        '110f0013000a02cd01',
      ],
      [{ unit: 17, fn: 16, address: 1, values: [0x000a, 0x0102] }, '1110000100020400 0a0102'],
    ];
    for (const [req, body] of cases) {
      const frame = encodeRequest(req);
      expect(toHex(frame.subarray(0, -2))).toBe(body.replace(/\s+/g, ''));
      expect(crc16modbus(frame, 0, frame.length - 2)).toBe(
        frame[frame.length - 2] | (frame[frame.length - 1] << 8),
      );
      expect(parseRequestFrame(frame)).toEqual({ ok: true, request: req });
    }
  });

  it('issue 20.2: requests outside the spec are refused before a byte is written', () => {
    const bad: Array<[ModbusRequest, RegExp]> = [
      [{ unit: 0, fn: 3, address: 0, quantity: 1 }, /unit/],
      [{ unit: 248, fn: 3, address: 0, quantity: 1 }, /unit/],
      [{ unit: 1, fn: 3, address: 0, quantity: 126 }, /quantity/],
      [{ unit: 1, fn: 3, address: 0, quantity: 0 }, /quantity/],
      [{ unit: 1, fn: 1, address: 0, quantity: 2001 }, /quantity/],
      [{ unit: 1, fn: 4, address: 65535, quantity: 2 }, /address/],
      [{ unit: 1, fn: 6, address: 0, value: 65536 }, /value/],
      [{ unit: 1, fn: 6, address: 0, value: 1.5 }, /value/],
      [{ unit: 1, fn: 16, address: 0, values: new Array(124).fill(0) }, /quantity/],
      [{ unit: 1, fn: 15, address: 0, values: new Array(1969).fill(true) }, /quantity/],
      [{ unit: 1, fn: 3, address: -1, quantity: 1 }, /address/],
    ];
    for (const [req, why] of bad) {
      expect(requestProblem(req)).toMatch(why);
      expect(() => encodeRequest(req)).toThrow(RangeError);
    }
  });
});

describe('issue 20.3: the response reader', () => {
  it('issue 20.3: a good response in any chunking, byte by byte included, gives the registers', () => {
    const frame = hex('01030404d200059b39');
    for (const sizes of [[9], [1, 1, 1, 1, 1, 1, 1, 1, 1], [2, 7], [3, 3, 3], [8, 1]]) {
      const state = feed(new RtuResponseReader(READ_HOLDING), frame, sizes);
      expect(state).toEqual({
        status: 'done',
        response: { type: 'registers', values: [1234, 5] },
        skipped: 0,
      });
    }
  });

  it('issue 20.3: bits, echoes of writes and exception responses are read', () => {
    const coils: ModbusRequest = { unit: 2, fn: 1, address: 0, quantity: 10 };
    const bits = encodeResponse(coils, {
      type: 'bits',
      values: [true, false, true, true, false, false, true, true, true, false],
    });
    expect(feed(new RtuResponseReader(coils), bits)).toMatchObject({
      status: 'done',
      response: { type: 'bits', values: [true, false, true, true, false, false, true, true, true, false] },
    });
    const write: ModbusRequest = { unit: 2, fn: 6, address: 7, value: 300 };
    expect(feed(new RtuResponseReader(write), encodeResponse(write, { type: 'written' }))).toMatchObject({
      status: 'done',
      response: { type: 'written' },
    });
    const ex = encodeResponse(READ_HOLDING, { type: 'exception', code: 2 });
    expect(toHex(ex)).toBe('018302c0f1'); // as pymodbus sent it for an address it does not have
    expect(feed(new RtuResponseReader(READ_HOLDING), ex)).toMatchObject({
      status: 'done',
      response: { type: 'exception', code: 2 },
    });
    expect(exceptionName(2)).toBe('illegal data address');
    expect(exceptionName(6)).toBe('server device busy');
    expect(exceptionName(0x55)).toBe('exception 85');
  });

  it('issue 20.3: line noise before the response is skipped (counted), the response is still read', () => {
    const frame = hex('01030404d200059b39');
    const noisy = new Uint8Array([0x00, 0xff, 0x01, 0x03, ...frame]);
    expect(feed(new RtuResponseReader(READ_HOLDING), noisy, [1, 1, 1, 1, 1, 100])).toEqual({
      status: 'done',
      response: { type: 'registers', values: [1234, 5] },
      skipped: 4,
    });
  });

  it('issue 20.3: a wrong CRC is never accepted; at the end of the line it is reported as crc', () => {
    const frame = hex('01030404d200059b39');
    for (let i = 0; i < frame.length; i++) {
      for (const flip of [0x01, 0x80, 0xff]) {
        const bad = frame.slice();
        bad[i] ^= flip;
        const reader = new RtuResponseReader(READ_HOLDING);
        const state = feed(reader, bad);
        expect(state.status, `byte ${i} ^ ${flip}`).not.toBe('done');
        if (state.status === 'incomplete')
          expect(reader.finish().kind).toMatch(/crc|byte-count|unit|function|truncated|garbage/);
      }
    }
    const reader = new RtuResponseReader(READ_HOLDING);
    const bad = frame.slice();
    bad[8] ^= 1;
    expect(feed(reader, bad).status).toBe('incomplete');
    expect(reader.finish().kind).toBe('crc');
  });

  it('issue 20.3: a valid frame from another unit is refused at once (wrong unit id)', () => {
    const other = encodeResponse({ ...READ_HOLDING, unit: 9 } as ModbusRequest, {
      type: 'registers',
      values: [1, 2],
    });
    const state = feed(new RtuResponseReader(READ_HOLDING), other);
    expect(state).toMatchObject({ status: 'error', error: { kind: 'unit' } });
  });

  it('issue 20.3: byte counts that lie are refused, whatever they claim', () => {
    // Right unit and function, byte count 0xff (past any ADU), 0, 2 (fewer registers than asked),
    // 6 (more): the length comes from the request, so none of them can make the reader wait for
    // or read bytes past the frame; a CRC made over the lie does not help.
    for (const count of [0xff, 0, 2, 6]) {
      const body = [0x01, 0x03, count, ...new Array(Math.min(count, 8)).fill(0x11)];
      const crc = crc16modbus(Uint8Array.from(body));
      const frame = Uint8Array.from([...body, crc & 0xff, crc >> 8]);
      const reader = new RtuResponseReader(READ_HOLDING);
      const state = feed(reader, frame);
      expect(state.status, `count ${count}`).not.toBe('done');
      if (state.status === 'incomplete') expect(reader.finish().kind).toBe('byte-count');
    }
  });

  it('issue 20.3: a write whose echo differs from the request is refused (echo)', () => {
    const write: ModbusRequest = { unit: 3, fn: 6, address: 10, value: 42 };
    const lie = encodeResponse({ unit: 3, fn: 6, address: 10, value: 43 }, { type: 'written' });
    expect(feed(new RtuResponseReader(write), lie)).toMatchObject({
      status: 'error',
      error: { kind: 'echo' },
    });
  });

  it('issue 20.3: a truncated response is reported as truncated when the line goes quiet', () => {
    const frame = hex('01030404d200059b39');
    for (let n = 1; n < frame.length; n++) {
      const reader = new RtuResponseReader(READ_HOLDING);
      expect(feed(reader, frame.subarray(0, n)).status).toBe('incomplete');
      expect(reader.finish().kind, `${n} bytes`).toBe('truncated');
    }
    const none = new RtuResponseReader(READ_HOLDING);
    expect(none.finish().kind).toBe('timeout');
  });

  it('issue 20.3: an oversized response (more bytes than the request calls for) is refused', () => {
    const frame = hex('01030404d200059b39');
    const longer = new Uint8Array([...frame, 0x00, 0x00]);
    expect(feed(new RtuResponseReader(READ_HOLDING), longer)).toMatchObject({
      status: 'error',
      error: { kind: 'oversize' },
    });
    // A flood without a frame in it stops at one ADU, whatever keeps coming.
    const reader = new RtuResponseReader(READ_HOLDING);
    const flood = new Uint8Array(100_000).fill(0x55);
    const state = feed(reader, flood, new Array(1000).fill(100));
    expect(state).toMatchObject({ status: 'error', error: { kind: 'oversize' } });
    expect(reader.held).toBeLessThanOrEqual(MODBUS_MAX_ADU);
    expect(reader.received).toBeLessThanOrEqual(MODBUS_MAX_ADU + 100);
  });

  it('issue 20.3: garbage is garbage, an unexpected function code is function', () => {
    const reader = new RtuResponseReader(READ_HOLDING);
    expect(feed(reader, hex('deadbeef')).status).toBe('incomplete');
    expect(reader.finish().kind).toBe('garbage');
    const fnReader = new RtuResponseReader(READ_HOLDING);
    expect(feed(fnReader, hex('0104020001')).status).toBe('incomplete');
    expect(fnReader.finish().kind).toBe('function');
  });

  it('issue 20.3: any bytes at all, in any chunks: no throw, a bounded buffer, and done only with a frame whose CRC is right', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 40 }),
        fc.constantFrom<ModbusRequest>(
          READ_HOLDING,
          { unit: 1, fn: 1, address: 0, quantity: 9 },
          { unit: 1, fn: 16, address: 4, values: [1, 2] },
          { unit: 1, fn: 5, address: 4, value: false },
        ),
        (bytes, sizes, req) => {
          const reader = new RtuResponseReader(req);
          const state = feed(reader, bytes, sizes);
          expect(reader.held).toBeLessThanOrEqual(MODBUS_MAX_ADU);
          if (state.status === 'done') {
            const at = state.skipped;
            const len = state.response.type === 'exception' ? 5 : expectedResponseLength(req);
            expect(bytes[at]).toBe(1);
            expect(crc16modbus(bytes, at, at + len - 2)).toBe(
              bytes[at + len - 2] | (bytes[at + len - 1] << 8),
            );
          }
          if (state.status === 'incomplete') expect(reader.finish()).toBeInstanceOf(Error);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('issue 20.3: a good response behind random noise is found when the noise has no frame of its own', () => {
    const frame = encodeResponse(READ_HOLDING, { type: 'registers', values: [0xbeef, 7] });
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (noise) => {
        const reader = new RtuResponseReader(READ_HOLDING);
        const state = feed(reader, Uint8Array.from([...noise, ...frame]), [3]);
        // Noise may itself hold a candidate that is still incomplete when the frame ends: then
        // the reader waits, and finish() says why. It never accepts a wrong frame.
        if (state.status === 'done')
          expect(state.response).toEqual({ type: 'registers', values: [0xbeef, 7] });
      }),
      { numRuns: 1000 },
    );
  });
});

describe('issue 20.1: values and timing', () => {
  it('issue 20.1: int16, uint16, int32, uint32, float32 in both word orders round-trip through registers', () => {
    expect(decodeRegisters([0xfffe], 'int16', 'big')).toBe(-2);
    expect(decodeRegisters([0xfffe], 'uint16', 'big')).toBe(65534);
    expect(decodeRegisters([0x0001, 0x0002], 'uint32', 'big')).toBe(0x00010002);
    expect(decodeRegisters([0x0002, 0x0001], 'uint32', 'little')).toBe(0x00010002);
    expect(decodeRegisters([0xffff, 0xfffe], 'int32', 'big')).toBe(-2);
    expect(decodeRegisters([0x4348, 0x0000], 'float32', 'big')).toBe(200);
    expect(decodeRegisters([0x0000, 0x4348], 'float32', 'little')).toBe(200);
    for (const [type, v] of [
      ['int16', -12345],
      ['uint16', 54321],
      ['int32', -123456789],
      ['uint32', 4000000000],
      ['float32', 230.5],
    ] as const) {
      for (const order of ['big', 'little'] as const)
        expect(decodeRegisters(encodeRegisters(v, type, order), type, order)).toBe(v);
    }
    expect(() => encodeRegisters(70000, 'int16', 'big')).toThrow(RangeError);
    expect(() => encodeRegisters(-1, 'uint32', 'big')).toThrow(RangeError);
  });

  it('issue 20.1: a character is start + data + parity + stop bits; 3.5 of them separate frames, 1.75 ms above 19200 baud', () => {
    expect(modbusCharTimeUs(9600, { dataBits: 8, parity: 'even', stopBits: 1 })).toBeCloseTo(1145.8, 1);
    expect(modbusCharTimeUs(9600, { dataBits: 8, parity: 'none', stopBits: 1 })).toBeCloseTo(1041.7, 1);
    expect(modbusFrameGapUs(9600, { dataBits: 8, parity: 'even', stopBits: 1 })).toBeCloseTo(4010.4, 1);
    expect(modbusFrameGapUs(115200, { dataBits: 8, parity: 'even', stopBits: 1 })).toBe(1750);
  });
});
