/**
 * The RTU master's timing and retries (issue 20.1/20.3) on a manual clock: the 3.5-character
 * silence before every request, the response timeout from the end of the request on the wire,
 * retries, and failed attempts counted by kind. The real line is in test/modbus-pymodbus.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  encodeResponse,
  type ModbusClock,
  type ModbusOutcome,
  type ModbusRequest,
  parseRequestFrame,
  RtuMaster,
} from '../src/index.ts';

class ManualClock implements ModbusClock {
  t = 0;
  private tasks: Array<{ at: number; fn: () => void; id: number }> = [];
  private next = 1;
  now = () => this.t;
  setTimeout = (fn: () => void, ms: number) => {
    const id = this.next++;
    this.tasks.push({ at: this.t + ms, fn, id });
    return id;
  };
  clearTimeout = (id: unknown) => {
    this.tasks = this.tasks.filter((x) => x.id !== id);
  };
  /** Runs what falls due within `ms`, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.tasks.sort((a, b) => a.at - b.at);
      const task = this.tasks[0];
      if (task === undefined || task.at > end) break;
      this.tasks.shift();
      this.t = Math.max(this.t, task.at);
      task.fn();
    }
    this.t = end;
  }
}

const READ: ModbusRequest = { unit: 1, fn: 3, address: 0, quantity: 2 };

function setup(options: { retries?: number; write?: () => boolean } = {}) {
  const clock = new ManualClock();
  const sent: Array<{ at: number; request: ModbusRequest }> = [];
  const failed: string[] = [];
  const master = new RtuMaster({
    write: (bytes) => {
      const parsed = parseRequestFrame(bytes);
      if (!parsed.ok) throw new Error(parsed.error);
      sent.push({ at: clock.t, request: parsed.request });
      return options.write?.() ?? true;
    },
    baud: 9600,
    format: { dataBits: 8, parity: 'even', stopBits: 1 },
    responseTimeoutMs: 100,
    retries: options.retries ?? 1,
    clock,
    onAttemptFailed: (_r, kind, _e, retry) => failed.push(`${kind}${retry ? ' (retry)' : ''}`),
  });
  const outcomes: ModbusOutcome[] = [];
  const ask = (r: ModbusRequest, urgent = false) =>
    void master.request(r, urgent).then((o) => outcomes.push(o));
  return { clock, sent, failed, master, outcomes, ask };
}

/** Microtasks (promise callbacks) run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('issue 20.1: the master keeps the line timing', () => {
  it('issue 20.1: the next request waits 3.5 characters after the response (4.01 ms at 9600 8E1)', async () => {
    const { clock, sent, master, outcomes, ask } = setup();
    ask(READ);
    ask({ ...READ, unit: 2 });
    expect(sent.length).toBe(1); // the line was quiet since forever: at once
    clock.advance(20);
    master.push(encodeResponse(READ, { type: 'registers', values: [1, 2] }));
    const answeredAt = clock.t;
    await settle();
    expect(outcomes[0]).toEqual({ ok: true, response: { type: 'registers', values: [1, 2] }, attempts: 1 });
    expect(sent.length).toBe(1);
    clock.advance(4);
    expect(sent.length).toBe(1); // 4 ms < 3.5 characters
    clock.advance(1.1);
    expect(sent.length).toBe(2);
    // Never before the gap; timers count whole milliseconds, so within 1 ms after it.
    expect(sent[1].at - answeredAt).toBeGreaterThanOrEqual(4.0104);
    expect(sent[1].at - answeredAt).toBeLessThan(5.0104);
    expect(sent[1].request.unit).toBe(2);
    expect(master.gapMs).toBeCloseTo(4.0104, 3);
  });

  it('issue 20.1: bytes nobody asked for restart the silence and are counted', async () => {
    const { clock, sent, master, ask } = setup();
    ask(READ);
    clock.advance(10);
    master.push(encodeResponse(READ, { type: 'registers', values: [1, 2] }));
    await settle();
    ask(READ);
    clock.advance(3);
    master.push(new Uint8Array([0x00, 0xff])); // noise 3 ms into the gap
    clock.advance(3);
    expect(sent.length).toBe(1); // 6 ms after the response, 3 after the noise
    clock.advance(2.1);
    expect(sent.length).toBe(2);
    expect(sent[1].at - 13).toBeGreaterThanOrEqual(4.0104);
    expect(master.counters.unsolicitedBytes).toBe(2);
  });

  it('issue 20.1: the response timeout runs from the end of the request on the wire', async () => {
    const { clock, failed, master, outcomes, ask } = setup({ retries: 0 });
    ask(READ);
    // 8 bytes of request + 9 of response at 1.146 ms each, then 100 ms.
    clock.advance(8 * 1.1458 + 9 * 1.1458 + 99);
    await settle();
    expect(outcomes.length).toBe(0);
    clock.advance(1.5);
    await settle();
    expect(outcomes[0]).toMatchObject({ ok: false, kind: 'timeout', attempts: 1 });
    expect(failed).toEqual(['timeout']);
    expect(master.counters).toMatchObject({ requests: 1, transmitted: 1, failed: 1, errors: { timeout: 1 } });
  });
});

describe('issue 20.3: failed attempts are retried and counted, never thrown', () => {
  it('issue 20.3: a silent unit is asked 1 + retries times, then the request fails as timeout', async () => {
    const { clock, sent, master, outcomes, ask } = setup({ retries: 2 });
    ask(READ);
    clock.advance(1000);
    await settle();
    expect(sent.length).toBe(3);
    expect(outcomes[0]).toMatchObject({ ok: false, kind: 'timeout', attempts: 3 });
    expect(master.counters).toMatchObject({ retries: 2, failed: 1, errors: { timeout: 3 } });
  });

  it('issue 20.3: CRC garbage is given up after a short silence and the retry reads the response', async () => {
    const { clock, sent, failed, master, outcomes, ask } = setup();
    ask(READ);
    clock.advance(15);
    const bad = encodeResponse(READ, { type: 'registers', values: [7, 8] });
    bad[4] ^= 0x40;
    master.push(bad);
    clock.advance(54); // gap 4 ms + 50 ms of silence after the last byte
    expect(sent.length).toBe(1);
    clock.advance(1);
    expect(failed).toEqual(['crc (retry)']);
    clock.advance(5); // the retry waits its own gap
    expect(sent.length).toBe(2);
    clock.advance(15);
    master.push(encodeResponse(READ, { type: 'registers', values: [7, 8] }));
    await settle();
    expect(outcomes[0]).toEqual({ ok: true, response: { type: 'registers', values: [7, 8] }, attempts: 2 });
    expect(master.counters).toMatchObject({ responses: 1, retries: 1, failed: 0, errors: { crc: 1 } });
  });

  it('issue 20.3: an exception response is an answer (not retried); a wrong unit, an oversize frame are retried', async () => {
    const { clock, master, outcomes, ask, sent } = setup({ retries: 1 });
    ask(READ);
    clock.advance(10);
    master.push(encodeResponse(READ, { type: 'exception', code: 6 }));
    await settle();
    expect(outcomes[0]).toEqual({ ok: true, response: { type: 'exception', code: 6 }, attempts: 1 });
    expect(master.counters.exceptions).toBe(1);
    ask(READ);
    clock.advance(10);
    master.push(encodeResponse({ ...READ, unit: 5 } as ModbusRequest, { type: 'registers', values: [1, 1] }));
    clock.advance(10);
    expect(sent.length).toBe(3);
    master.push(Uint8Array.from([...encodeResponse(READ, { type: 'registers', values: [1, 1] }), 0]));
    await settle();
    expect(outcomes[1]).toMatchObject({ ok: false, kind: 'oversize', attempts: 2 });
    expect(master.counters.errors).toMatchObject({ unit: 1, oversize: 1 });
  });

  it('issue 20.3: a closed port fails what waits; an unwritable port is not retried; the queue is bounded', async () => {
    const { master, outcomes, ask } = setup();
    ask(READ);
    ask(READ);
    master.reset();
    await settle();
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.kind))).toEqual(['port', 'port']);
    const down = setup({ write: () => false });
    down.ask(READ);
    await settle();
    expect(down.outcomes[0]).toMatchObject({ ok: false, kind: 'port', attempts: 1 });
    const full = setup();
    for (let i = 0; i < 70; i++) full.ask(READ);
    await settle();
    expect(full.outcomes.length).toBe(5);
    expect(full.outcomes.every((o) => !o.ok && o.kind === 'queue-full')).toBe(true);
  });

  it('issue 20.3: an urgent request (a command) goes before the queued polls', () => {
    const { clock, sent, master, ask } = setup();
    ask(READ);
    ask({ ...READ, unit: 2 });
    ask({ unit: 3, fn: 6, address: 1, value: 5 }, true);
    clock.advance(10);
    master.push(encodeResponse(READ, { type: 'registers', values: [0, 0] }));
    clock.advance(10);
    expect(sent.map((s) => s.request.unit)).toEqual([1, 3]);
  });
});

describe('issue 20.3: a line that never goes quiet', () => {
  it('issue 20.3: a babbling line holds a request one response timeout at most, then it goes out (counted) and fails like any other', async () => {
    const { clock, sent, master, outcomes, ask } = setup({ retries: 0 });
    ask(READ);
    clock.advance(50);
    master.push(Uint8Array.from([1, 3, 4])); // a partial response...
    ask(READ);
    // ...then noise every millisecond, for ever.
    for (let t = 0; t < 1000 && outcomes.length < 2; t++) {
      clock.advance(1);
      master.push(Uint8Array.from([0x55]));
      await settle();
    }
    expect(sent.length).toBe(2);
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.kind))).toEqual(['crc', 'garbage']);
    expect(master.counters.noisyLine).toBe(1);
    // Bounded: the second request went out a response timeout (100 ms) after its turn came.
    expect(sent[1].at - sent[0].at).toBeLessThan(400);
  });
});
