/**
 * A Modbus RTU line at a given baud rate, emulated at the far end of a pty, with its devices
 * (issue 20's bench). A pty moves bytes at once whatever its baud rate, so this end keeps the
 * line's clock: a request that arrives at t was on the wire from t for its length in characters;
 * the device answers after the 3.5-character silence that ends a frame, and its response takes its
 * own length on the wire, so its last byte reaches the master at
 *   t + (request + response) x character + gap
 * and it is delivered then, whole (the master reads the frame complete at its last byte anyway).
 * Delays are kept with a timer and a short spin at the end, so the emulator's own timer slack is
 * not charged to the master. Every unit answers reads of holding or input registers with
 * changing values.
 *
 * Usage: node --conditions=mqtt-edge-source --import tsx bench/modbus-line.ts PATH BAUD PARITY
 * It prints {"ready":true} when open; each line on stdin is answered with its counters as JSON.
 */
import { createInterface } from 'node:readline';
import {
  encodeResponse,
  type ModbusRequest,
  modbusCharTimeUs,
  modbusFrameGapUs,
  parseRequestFrame,
  requestFrameLength,
} from '@mqtt-edge/serial-protocol';
import { openSerialPort } from '@mqtt-edge/serial-protocol/node';

const [path, baudArg, parityArg] = process.argv.slice(2);
const baud = Number(baudArg);
const format = { dataBits: 8, parity: parityArg as 'none' | 'even' | 'odd', stopBits: 1 } as const;
const charMs = modbusCharTimeUs(baud, format) / 1000;
const gapMs = modbusFrameGapUs(baud, format) / 1000;

const port = await openSerialPort(path, { baudRate: baud });
const stats = { requests: 0, responses: 0, bad: 0, overlapped: 0, turnaroundMs: 0, turnarounds: 0 };
/** When the last response went out: the master's turnaround is from there to its next request. */
let respondedAt = -1;
let buf = Buffer.alloc(0);
let busy = false;
let tick = 0;

function respond(request: ModbusRequest, frameLength: number, arrivedAt: number): void {
  if (request.fn !== 3 && request.fn !== 4) {
    stats.bad++;
    return;
  }
  tick++;
  const values = Array.from({ length: request.quantity }, (_, i) => (tick + i) & 0xffff);
  const response = encodeResponse(request, { type: 'registers', values });
  const dueAt = arrivedAt + (frameLength + response.length) * charMs + gapMs;
  busy = true;
  const deliver = () => {
    const left = dueAt - performance.now();
    if (left > 2) {
      setTimeout(deliver, left - 2);
      return;
    }
    if (left > 0) {
      setImmediate(deliver);
      return;
    }
    port.write(Buffer.from(response));
    respondedAt = performance.now();
    stats.responses++;
    busy = false;
  };
  deliver();
}

port.on('data', (chunk: Buffer) => {
  const at = performance.now();
  buf = Buffer.concat([buf, chunk]);
  for (;;) {
    const length = requestFrameLength(buf);
    if (length < 0 || buf.length > 300) {
      stats.bad++;
      buf = Buffer.alloc(0);
      return;
    }
    if (length === 0 || buf.length < length) return;
    const frame = buf.subarray(0, length);
    buf = buf.subarray(length);
    stats.requests++;
    if (respondedAt >= 0 && !busy) {
      stats.turnaroundMs += at - respondedAt;
      stats.turnarounds++;
    }
    if (busy) {
      // A master that does not wait for the response: a real line would garble both.
      stats.overlapped++;
      continue;
    }
    const parsed = parseRequestFrame(frame);
    if (!parsed.ok) stats.bad++;
    else respond(parsed.request, length, at);
  }
});

console.log(JSON.stringify({ ready: true }));
createInterface({ input: process.stdin }).on('line', () => console.log(JSON.stringify(stats)));
process.stdin.on('end', () => port.close(() => process.exit(0)));
