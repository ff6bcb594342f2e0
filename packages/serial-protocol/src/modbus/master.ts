/**
 * A Modbus RTU master on one line (issue 20): one request on the wire at a time, the 3.5-character
 * silence kept before every request, a response timeout, retries, and every failed attempt
 * counted by kind. No I/O of its own: the owner hands it the line's bytes (`push`) and a write
 * function, and tells it when the port closes (`reset`). Timers are the platform's (or a clock
 * passed in).
 *
 * Timing on the line:
 * - A request goes out only after the line has been quiet for `frameGapMs` (3.5 characters): after
 *   the last byte heard, after the end of our own last request, and after any noise.
 * - The response timeout runs from when the request has left the wire (the write plus its length
 *   in characters at the baud rate), not from the write() call.
 * - A response is complete at the length its request implies; no silence is waited for. A response
 *   that stops short (or bytes that hold none) is given up `interruptedAfterMs` after its last byte
 *   rather than at the full timeout: USB adapters deliver a frame in bursts up to their latency
 *   timer apart (16 ms on FTDI's default), so this is well above the 1.5-character rule.
 */
import {
  type CharFormat,
  encodeRequest,
  expectedResponseLength,
  type ModbusFrameErrorKind,
  type ModbusRequest,
  type ModbusResponse,
  modbusCharTimeUs,
  modbusFrameGapUs,
  RtuResponseReader,
} from './rtu.ts';

/** Why a request got no usable response. */
export type ModbusFailureKind =
  | ModbusFrameErrorKind
  /** The port was closed or not writable. */
  | 'port'
  /** Too many requests waiting for the line. */
  | 'queue-full';

export type ModbusOutcome =
  /** A response: normal, or the device's exception (`response.type === 'exception'`). */
  | { ok: true; response: ModbusResponse; attempts: number }
  | { ok: false; kind: ModbusFailureKind; error: string; attempts: number };

export interface ModbusClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

const realClock: ModbusClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

export interface RtuMasterOptions {
  /** Writes a frame to the line; false when it could not (port closed or backed up). */
  write(bytes: Uint8Array): boolean;
  baud: number;
  format: CharFormat;
  /** Silence before each request, ms; default 3.5 characters (1.75 ms above 19200 baud). */
  frameGapMs?: number;
  /**
   * How long a response may take to begin once the request has left the wire, ms (the response
   * then has its own length on the wire to arrive in).
   */
  responseTimeoutMs: number;
  /** Attempts after the first for a request that got no valid response (exceptions are not retried). */
  retries: number;
  /** A partial or unreadable response is given up after this much silence, ms (default gap + 50). */
  interruptedAfterMs?: number;
  /** Requests waiting for the line at most (default 64); past it a request fails at once. */
  maxQueued?: number;
  clock?: ModbusClock;
  /** Each attempt that failed (for the owner's log); `willRetry` when another follows. */
  onAttemptFailed?(request: ModbusRequest, kind: ModbusFailureKind, error: string, willRetry: boolean): void;
}

export interface RtuMasterCounters {
  /** Requests asked of the master (each counted once, whatever its retries). */
  requests: number;
  /** Frames written (attempts). */
  transmitted: number;
  /** Valid responses, exceptions included. */
  responses: number;
  exceptions: number;
  /** Attempts repeated after a failure. */
  retries: number;
  /** Requests that got no valid response after all attempts. */
  failed: number;
  /** Failed attempts by kind (timeout, crc, unit, truncated, ...). */
  errors: Partial<Record<ModbusFailureKind, number>>;
  /** Bytes heard while no request was waiting (another master, noise, a late response). */
  unsolicitedBytes: number;
  /** Noise bytes skipped before a valid response. */
  skippedBytes: number;
  /** Requests sent without the silence before them: the line was not quiet for a response timeout. */
  noisyLine: number;
}

interface Job {
  request: ModbusRequest;
  frame: Uint8Array;
  attempts: number;
  /** Since when the current attempt waits for a quiet line. */
  waitingSince: number;
  resolve(o: ModbusOutcome): void;
}

export class RtuMaster {
  readonly counters: RtuMasterCounters = {
    requests: 0,
    transmitted: 0,
    responses: 0,
    exceptions: 0,
    retries: 0,
    failed: 0,
    errors: {},
    unsolicitedBytes: 0,
    skippedBytes: 0,
    noisyLine: 0,
  };
  private readonly queue: Job[] = [];
  private current: Job | undefined;
  private reader: RtuResponseReader | undefined;
  /** When the line was last busy: a byte heard, or the end of our last frame on the wire. */
  private busyUntil = Number.NEGATIVE_INFINITY;
  private timer: unknown;
  /** The attempt on the wire fails at this time: its request and its response on the wire, plus the timeout. */
  private deadline = 0;
  private readonly clock: ModbusClock;
  private readonly charMs: number;
  private frameGapMs: number;
  private interruptedAfterMs: number;

  constructor(private readonly o: RtuMasterOptions) {
    this.clock = o.clock ?? realClock;
    this.charMs = modbusCharTimeUs(o.baud, o.format) / 1000;
    this.frameGapMs = o.frameGapMs ?? modbusFrameGapUs(o.baud, o.format) / 1000;
    this.interruptedAfterMs = o.interruptedAfterMs ?? this.frameGapMs + 50;
  }

  /** Requests waiting for the line, the one on it included. */
  get pending(): number {
    return this.queue.length + (this.current === undefined ? 0 : 1);
  }

  /** The silence kept before each request, ms. */
  get gapMs(): number {
    return this.frameGapMs;
  }

  /**
   * Sends `request` when the line is free (first, with `urgent`: a command before the polls);
   * resolves with the response or why there is none. Never rejects.
   */
  request(request: ModbusRequest, urgent = false): Promise<ModbusOutcome> {
    this.counters.requests++;
    let frame: Uint8Array;
    try {
      frame = encodeRequest(request);
    } catch (e) {
      this.counters.failed++;
      return Promise.resolve({ ok: false, kind: 'port', error: (e as Error).message, attempts: 0 });
    }
    if (this.queue.length >= (this.o.maxQueued ?? 64)) {
      this.count('queue-full');
      this.counters.failed++;
      return Promise.resolve({
        ok: false,
        kind: 'queue-full',
        error: `${this.queue.length} requests already wait for the line`,
        attempts: 0,
      });
    }
    return new Promise((resolve) => {
      const job: Job = { request, frame, attempts: 0, waitingSince: this.clock.now(), resolve };
      if (urgent) this.queue.unshift(job);
      else this.queue.push(job);
      if (this.current === undefined) this.schedule();
    });
  }

  /** Bytes from the line. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.busyUntil = this.clock.now();
    const job = this.current;
    const reader = this.reader;
    if (job === undefined || reader === undefined) {
      // Nobody asked: noise, another master, or a response after its timeout. It delays the next
      // request by a gap (busyUntil moved), which the timer already waiting notices.
      this.counters.unsolicitedBytes += chunk.length;
      return;
    }
    const state = reader.push(chunk);
    if (state.status === 'done') {
      this.counters.responses++;
      this.counters.skippedBytes += state.skipped;
      if (state.response.type === 'exception') this.counters.exceptions++;
      this.finishJob({ ok: true, response: state.response, attempts: job.attempts });
      return;
    }
    if (state.status === 'error') {
      this.attemptFailed(state.error.kind, state.error.message);
      return;
    }
    // Incomplete: given up if the line stays quiet this long, or at the deadline if sooner.
    const giveUp = Math.min(this.interruptedAfterMs, this.deadline - this.busyUntil);
    this.setTimer(giveUp, () => this.attemptFailed(...this.why()));
  }

  /** The port closed: everything waiting fails now, and the next request waits a full gap. */
  reset(): void {
    this.clearTimer();
    const jobs = this.current === undefined ? this.queue.splice(0) : [this.current, ...this.queue.splice(0)];
    this.current = undefined;
    this.reader = undefined;
    this.busyUntil = this.clock.now();
    for (const j of jobs) {
      this.counters.failed++;
      j.resolve({ ok: false, kind: 'port', error: 'the port closed', attempts: j.attempts });
    }
  }

  private why(): [ModbusFailureKind, string] {
    const e = (this.reader as RtuResponseReader).finish();
    return [e.kind, e.message];
  }

  /** Starts the next job once the line has been quiet for a gap. */
  private schedule(): void {
    if (this.current !== undefined) return;
    const job = this.queue.shift();
    if (job === undefined) return;
    this.current = job;
    job.waitingSince = this.clock.now();
    this.transmit();
  }

  /**
   * Sends the current job once the line has been quiet for a gap. A line that never goes quiet
   * (a device babbling, noise on an unterminated bus) would hold the request for ever: after
   * waiting a response timeout it goes out anyway (counted as `noisyLine`), so it fails or
   * succeeds like any other and the devices' availability says what is going on.
   */
  private transmit(): void {
    const job = this.current as Job;
    const now = this.clock.now();
    const wait = this.busyUntil + this.frameGapMs - now;
    if (wait > 0) {
      const waited = now - job.waitingSince;
      if (waited < this.o.responseTimeoutMs) {
        // Timers count whole milliseconds: rounded up, the gap is waited in one round, not two.
        this.setTimer(Math.ceil(Math.min(wait, this.o.responseTimeoutMs - waited)), () => this.transmit());
        return;
      }
      this.counters.noisyLine++;
    }
    job.attempts++;
    this.counters.transmitted++;
    this.reader = new RtuResponseReader(job.request);
    if (!this.o.write(job.frame)) {
      this.attemptFailed('port', 'the port is not writable', true);
      return;
    }
    // The timeout runs to the response's first byte; the response then takes its own length.
    const onWire = (job.frame.length + expectedResponseLength(job.request)) * this.charMs;
    this.busyUntil = now + job.frame.length * this.charMs;
    this.deadline = now + onWire + this.o.responseTimeoutMs;
    this.setTimer(this.deadline - now, () => this.attemptFailed(...this.why()));
  }

  private attemptFailed(kind: ModbusFailureKind, error: string, final = false): void {
    const job = this.current;
    if (job === undefined) return;
    this.clearTimer();
    this.reader = undefined;
    this.count(kind);
    const retry = !final && job.attempts <= this.o.retries;
    this.o.onAttemptFailed?.(job.request, kind, error, retry);
    if (retry) {
      this.counters.retries++;
      job.waitingSince = this.clock.now();
      this.transmit();
      return;
    }
    this.counters.failed++;
    this.finishJob({ ok: false, kind, error, attempts: job.attempts });
  }

  private finishJob(outcome: ModbusOutcome): void {
    const job = this.current as Job;
    this.clearTimer();
    this.current = undefined;
    this.reader = undefined;
    job.resolve(outcome);
    this.schedule();
  }

  private count(kind: ModbusFailureKind): void {
    this.counters.errors[kind] = (this.counters.errors[kind] ?? 0) + 1;
  }

  private setTimer(ms: number, fn: () => void): void {
    this.clearTimer();
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      fn();
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
