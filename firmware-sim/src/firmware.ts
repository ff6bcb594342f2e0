/**
 * The simulated firmware as a sans-IO state machine: bytes in, time in, bytes out. No timers
 * and no I/O here, so tests drive it with exact times and the runner (sim.ts) wires it to a
 * port. It behaves like a small MCU: a boot id from its RNG at every reset, a 16-bit seq from
 * 0 per boot, a fixed ring of unacknowledged DATA retransmitted on a timeout.
 */
import {
  type CmdFrame,
  type CommandInfo,
  encodeFrame,
  type Frame,
  FrameDecoder,
  type FrameDecoderStats,
  formatTextLine,
  type HelloFrame,
  type Reading,
  type ResultFrame,
  type Value,
} from '@mqtt-edge/serial-protocol';
import { dueAt, PendingRing } from './ring.ts';
import type { Rng } from './rng.ts';
import { DEFAULT_SENSORS, Sensor, type SensorSpec } from './sensors.ts';

export type SimMode = 'native' | 'json-lines' | 'key-value';

export const MIN_INTERVAL_MS = 10;
export const MAX_INTERVAL_MS = 3_600_000;
export const MODES = ['eco', 'normal', 'boost'] as const;
export type Mode = (typeof MODES)[number];

/**
 * The commands the simulator describes in its HELLO (`c`), for user interfaces such as Home
 * Assistant; `hello` and `status` are left out (nothing to offer a user).
 */
export const SIM_COMMANDS: CommandInfo[] = [
  { name: 'ping', kind: 'button' },
  { name: 'reboot', kind: 'button' },
  {
    name: 'set-interval',
    kind: 'number',
    arg: 'ms',
    min: MIN_INTERVAL_MS,
    max: MAX_INTERVAL_MS,
    step: 10,
    unit: 'ms',
  },
  { name: 'set-led', kind: 'switch' },
  { name: 'relay', kind: 'switch' },
  { name: 'set-mode', kind: 'select', options: [...MODES] },
];

export interface FirmwareOptions {
  deviceId: string;
  firmware?: string;
  /** Model in HELLO (default `firmware-sim`). */
  model?: string;
  /** Describe the commands in HELLO (default true; false: a HELLO as firmware before issue 14 sent it). */
  describeCommands?: boolean;
  sensors?: readonly SensorSpec[];
  /** Reporting interval in ms (default 1000); `set-interval` changes it. */
  intervalMs?: number;
  mode?: SimMode;
  /** Unacknowledged DATA kept for retransmission (default 32). */
  ringSize?: number;
  /** Time after a send before an unacknowledged DATA is sent again (default 1000 ms). */
  retransmitMs?: number;
  /** Retransmissions per poll, so a long outage does not flood the line when it ends (default 8). */
  maxRetransmitsPerPoll?: number;
  /** Put `ts` (uptime ms) in readings (default true). */
  timestamps?: boolean;
  /** Send a lone 0x00 before the HELLO after a reset, ending any half frame (default true). */
  leadingDelimiter?: boolean;
  /** Say the reporting interval in HELLO (`p`; default true; false: a HELLO as before issue 19). */
  announceInterval?: boolean;
  /**
   * Native mode: when no frame has been heard for this long, send HELLO again, and again every
   * `watchdogMs` while nothing is heard (issue 19). Default 3 intervals, at least 3000 ms; 0: off.
   */
  watchdogMs?: number;
  /**
   * Understands HELD (issue 18.4; default true): HELLO says `h` (the ring size), and a HELD puts
   * off its entry's next send. false: firmware before it (no `h`; a HELD is an unknown type).
   */
  understandsHeld?: boolean;
  /** The longest hold a HELD can ask for, ms (default 600,000): an agent that died holding frames costs at most this. */
  maxHoldMs?: number;
  rng: Rng;
}

/** The watchdog's default: three missed ACKs' worth of intervals, never under 3 s. */
export function defaultWatchdogMs(intervalMs: number): number {
  return Math.max(3 * intervalMs, 3000);
}

export interface FirmwareStats {
  boots: number;
  framesSent: number;
  dataSent: number;
  readings: number;
  retransmits: number;
  /** DATA overwritten in the full ring before it was acknowledged: readings lost on the device. */
  ringOverwrites: number;
  acked: number;
  /** ACKs for a seq not in the ring (already acknowledged, or overwritten). */
  acksUnknown: number;
  /** ACKs carrying another boot's id. */
  acksWrongBoot: number;
  commands: number;
  commandErrors: number;
  /** A CMD id seen again: answered from the cache, not run twice. */
  commandRepeats: number;
  /** HELLOs sent because nothing was heard for the watchdog's time. */
  watchdogHellos: number;
  /** HELDs that put off an entry's next send (issue 18.4). */
  held: number;
  /** HELDs for another boot or a seq not in the ring: ignored. */
  heldUnknown: number;
  /** HELDs received by firmware that does not understand them (understandsHeld false): skipped as unknown. */
  heldIgnored: number;
}

export interface FirmwareEvent {
  event: string;
  [k: string]: unknown;
}

const RESULT_CACHE = 8;

export class Firmware {
  readonly deviceId: string;
  readonly firmwareVersion: string;
  readonly mode: SimMode;
  readonly stats: FirmwareStats = {
    boots: 0,
    framesSent: 0,
    dataSent: 0,
    readings: 0,
    retransmits: 0,
    ringOverwrites: 0,
    acked: 0,
    acksUnknown: 0,
    acksWrongBoot: 0,
    commands: 0,
    commandErrors: 0,
    commandRepeats: 0,
    watchdogHellos: 0,
    held: 0,
    heldUnknown: 0,
    heldIgnored: 0,
  };
  /** Settable actuators, as real boards expose them. */
  led = false;
  relay = false;
  /** The power mode `set-mode` chooses (shown by `status`). */
  powerMode: Mode = 'normal';
  intervalMs: number;
  readonly model: string;
  private readonly describeCommands: boolean;

  private readonly rng: Rng;
  private readonly sensors: Sensor[];
  private readonly ring: PendingRing;
  private readonly retransmitMs: number;
  private readonly maxRetransmits: number;
  private readonly timestamps: boolean;
  private readonly leadingDelimiter: boolean;
  private readonly announceInterval: boolean;
  private readonly understandsHeld: boolean;
  private readonly maxHoldMs: number;
  /** undefined: the default, which follows the interval. */
  private readonly watchdogOption: number | undefined;
  private decoder: FrameDecoder;
  private out: Uint8Array[] = [];
  private events: FirmwareEvent[] = [];
  private results: ResultFrame[] = [];
  private bootIdValue = 0;
  private bootAt = 0;
  private seq = 0;
  private nextSampleAt = 0;
  private pendingReboot = false;
  /** When a frame was last heard (or the boot); the watchdog counts from here. */
  private lastHeardAt = 0;
  private nextWatchdogAt = Number.POSITIVE_INFINITY;
  /** Watchdog HELLOs since something was last heard (0: not in a quiet spell). */
  private quietHellos = 0;

  constructor(options: FirmwareOptions, now: number) {
    this.deviceId = options.deviceId;
    this.firmwareVersion = options.firmware ?? 'sim-1.0.0';
    this.model = options.model ?? 'firmware-sim';
    this.describeCommands = options.describeCommands ?? true;
    this.mode = options.mode ?? 'native';
    this.rng = options.rng;
    this.sensors = (options.sensors ?? DEFAULT_SENSORS).map((s) => new Sensor(s, options.rng));
    this.intervalMs = checkInterval(options.intervalMs ?? 1000);
    this.ring = new PendingRing(options.ringSize ?? 32);
    this.retransmitMs = options.retransmitMs ?? 1000;
    this.maxRetransmits = options.maxRetransmitsPerPoll ?? 8;
    this.timestamps = options.timestamps ?? true;
    this.leadingDelimiter = options.leadingDelimiter ?? true;
    this.announceInterval = options.announceInterval ?? true;
    this.understandsHeld = options.understandsHeld ?? true;
    this.maxHoldMs = options.maxHoldMs ?? 600_000;
    this.watchdogOption = options.watchdogMs;
    this.decoder = new FrameDecoder();
    this.boot(now);
  }

  get bootId(): number {
    return this.bootIdValue;
  }
  get nextSeq(): number {
    return this.seq;
  }
  get unacked(): number {
    return this.ring.size;
  }
  /** Seqs of the DATA frames waiting for an ACK, oldest first. */
  unackedSeqs(): number[] {
    return Array.from(this.ring.entries(), (p) => p.seq);
  }
  get decoderStats(): FrameDecoderStats {
    return this.decoder.stats;
  }

  /** A reset: RAM is gone (ring, seq, partial input), a new boot id, HELLO. */
  boot(now: number): void {
    this.stats.boots++;
    this.bootIdValue = this.rng.uint32();
    this.bootAt = now;
    this.seq = 0;
    this.ring.clear();
    this.decoder = new FrameDecoder();
    this.results = [];
    this.nextSampleAt = now + this.intervalMs;
    this.pendingReboot = false;
    this.lastHeardAt = now;
    this.quietHellos = 0;
    this.armWatchdog();
    this.emit({ event: 'boot', bootId: this.bootIdValue });
    if (this.mode !== 'native') {
      this.write(textBytes(`# ${this.deviceId} ${this.firmwareVersion} boot ${this.bootIdValue}\n`));
      return;
    }
    if (this.leadingDelimiter) this.out.push(new Uint8Array(1));
    this.sendHello();
  }

  /** The watchdog's time in ms (0: off): the option, else 3 intervals, at least 3 s. */
  get watchdogMs(): number {
    if (this.mode !== 'native') return 0;
    return this.watchdogOption ?? defaultWatchdogMs(this.intervalMs);
  }

  /** Takes a sample if due and retransmits what timed out. Call at `nextDeadline()` or later. */
  poll(now: number): void {
    // Old data first: the agent then mostly sees seqs in order.
    this.retransmit(now);
    if (now >= this.nextSampleAt) {
      this.report(now);
      this.nextSampleAt += this.intervalMs;
      // Missed slots are skipped, not caught up in a burst, as an MCU's periodic timer does.
      if (this.nextSampleAt <= now) this.nextSampleAt = now + this.intervalMs;
    }
    if (now >= this.nextWatchdogAt) this.watchdog(now);
  }

  /**
   * Nothing heard for the watchdog's time: the agent may have restarted and missed the HELLO,
   * or the line may be stuck. Real firmware says HELLO again; so does this, every watchdogMs
   * until a frame comes in. Same boot: not a reset.
   */
  private watchdog(now: number): void {
    if (this.quietHellos === 0)
      this.emit({ event: 'watchdog-hello', quietMs: now - this.lastHeardAt, bootId: this.bootIdValue });
    this.quietHellos++;
    this.stats.watchdogHellos++;
    this.sendHello();
    this.nextWatchdogAt = now + this.watchdogMs;
  }

  private armWatchdog(): void {
    const ms = this.watchdogMs;
    this.nextWatchdogAt = ms > 0 ? this.lastHeardAt + ms : Number.POSITIVE_INFINITY;
  }

  /** When `poll` next has work to do. */
  nextDeadline(): number {
    let t = Math.min(this.nextSampleAt, this.nextWatchdogAt);
    for (const p of this.ring.entries()) t = Math.min(t, dueAt(p, this.retransmitMs));
    return t;
  }

  /** `n` samples at once (a device flushing a buffer after a busy spell). */
  burst(n: number, now: number): void {
    for (let i = 0; i < n; i++) this.report(now);
  }

  /** Builds the next DATA without sending it (for a reset in the middle of this frame). */
  takeNextDataFrame(now: number): Uint8Array {
    const frame = this.makeData(now);
    return encodeFrame(frame);
  }

  receive(bytes: Uint8Array, now: number): void {
    if (this.mode !== 'native') return; // text-mode boards only talk
    const frames = this.decoder.push(bytes);
    if (frames.length > 0) this.heard(now);
    for (const f of frames) this.handle(f, now);
    if (this.pendingReboot) this.boot(now);
  }

  /** A frame came in: the line works; the watchdog counts from now. */
  private heard(now: number): void {
    if (this.quietHellos > 0)
      this.emit({ event: 'heard-again', quietMs: now - this.lastHeardAt, watchdogHellos: this.quietHellos });
    this.quietHellos = 0;
    this.lastHeardAt = now;
    this.armWatchdog();
  }

  /** Bytes to write, oldest first; each element is one whole frame or line. */
  takeOutput(): Uint8Array[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  takeEvents(): FirmwareEvent[] {
    const e = this.events;
    this.events = [];
    return e;
  }

  private emit(e: FirmwareEvent): void {
    if (this.events.length < 1000) this.events.push(e);
  }

  private write(bytes: Uint8Array): void {
    this.out.push(bytes);
    this.stats.framesSent++;
  }

  private allocSeq(): number {
    const s = this.seq;
    this.seq = (this.seq + 1) & 0xffff;
    return s;
  }

  private sendHello(): void {
    const hello: HelloFrame = {
      type: 'hello',
      seq: this.allocSeq(),
      deviceId: this.deviceId,
      firmware: this.firmwareVersion,
      bootId: this.bootIdValue,
      sensors: this.sensors.map((s) =>
        s.spec.unit === undefined ? { name: s.spec.name } : { name: s.spec.name, unit: s.spec.unit },
      ),
    };
    if (this.describeCommands) {
      hello.model = this.model;
      hello.commands = SIM_COMMANDS;
    }
    if (this.announceInterval) hello.intervalMs = this.intervalMs;
    if (this.understandsHeld) hello.ringSize = this.ring.capacity;
    this.write(encodeFrame(hello));
  }

  private sample(now: number): Reading[] {
    const ts = Math.max(0, Math.round(now - this.bootAt));
    return this.sensors.map((s) => {
      const r: Reading = { sensor: s.spec.name, value: s.sample() };
      if (s.spec.unit !== undefined) r.unit = s.spec.unit;
      if (this.timestamps) r.ts = ts;
      return r;
    });
  }

  private makeData(now: number): Frame {
    return { type: 'data', seq: this.allocSeq(), bootId: this.bootIdValue, readings: this.sample(now) };
  }

  private report(now: number): void {
    if (this.mode !== 'native') {
      const readings = this.sample(now);
      this.stats.readings += readings.length;
      this.write(textBytes(formatTextLine(this.mode, readings)));
      return;
    }
    const frame = this.makeData(now);
    const wire = encodeFrame(frame);
    const lost = this.ring.push({ seq: frame.seq, wire, sentAt: now, sends: 1, heldUntil: 0 });
    if (lost !== undefined) {
      this.stats.ringOverwrites++;
      this.emit({ event: 'ring-overwrite', seq: lost.seq, sends: lost.sends });
    }
    this.stats.dataSent++;
    if (frame.type === 'data') this.stats.readings += frame.readings.length;
    this.write(wire);
  }

  private retransmit(now: number): void {
    let budget = this.maxRetransmits;
    for (const p of this.ring.entries()) {
      if (budget === 0) break;
      if (now < dueAt(p, this.retransmitMs)) continue;
      p.sentAt = now;
      p.heldUntil = 0;
      p.sends++;
      budget--;
      this.stats.retransmits++;
      this.write(p.wire);
    }
  }

  private handle(f: Frame, now: number): void {
    if (f.type === 'ack') {
      if (f.bootId !== this.bootIdValue) this.stats.acksWrongBoot++;
      else if (this.ring.ack(f.seq)) this.stats.acked++;
      else this.stats.acksUnknown++;
      return;
    }
    if (f.type === 'held') {
      this.held(f.seq, f.bootId, f.holdMs, now);
      return;
    }
    if (f.type === 'cmd') {
      this.command(f, now);
      return;
    }
    // HELLO/DATA/RESULT flow device -> agent; one arriving here is a wiring mistake (loopback).
    this.emit({ event: 'unexpected-frame', type: f.type, seq: f.seq });
  }

  /**
   * HELD (issue 18.4): the agent has the frame but it is not durable yet. The entry stays (only an
   * ACK retires it); its next send waits for the hold, capped, and is never brought earlier.
   */
  private held(seq: number, bootId: number, holdMs: number, now: number): void {
    if (!this.understandsHeld) {
      // what firmware before HELD does with type 0x06: count it as unknown and skip it
      this.stats.heldIgnored++;
      return;
    }
    const p = bootId === this.bootIdValue ? this.ring.find(seq) : undefined;
    if (p === undefined) {
      this.stats.heldUnknown++;
      return;
    }
    this.stats.held++;
    p.heldUntil = Math.max(p.heldUntil, now + Math.min(holdMs, this.maxHoldMs));
  }

  private command(c: CmdFrame, now: number): void {
    const cached = this.results.find((r) => r.id === c.id);
    if (cached !== undefined) {
      this.stats.commandRepeats++;
      this.write(encodeFrame({ ...cached, seq: this.allocSeq() }));
      return;
    }
    this.stats.commands++;
    const r = this.run(c, now);
    if (!r.ok) this.stats.commandErrors++;
    const result: ResultFrame = { type: 'result', seq: this.allocSeq(), id: c.id, ok: r.ok };
    if (r.ok && r.value !== undefined) result.value = r.value;
    if (!r.ok) result.error = r.error;
    this.results.push(result);
    if (this.results.length > RESULT_CACHE) this.results.shift();
    this.emit({ event: 'command', name: c.name, id: c.id, ok: r.ok });
    this.write(encodeFrame(result));
    // `hello` asks for one; a new interval is said in one, so the agent knows when to worry.
    if ((c.name === 'hello' || c.name === 'set-interval') && r.ok) this.sendHello();
  }

  private run(c: CmdFrame, now: number): { ok: true; value?: Value } | { ok: false; error: string } {
    switch (c.name) {
      case 'ping':
        return { ok: true, value: 'pong' };
      case 'hello':
        return { ok: true };
      case 'status':
        return {
          ok: true,
          value: {
            uptime: Math.round(now - this.bootAt),
            interval: this.intervalMs,
            led: this.led,
            relay: this.relay,
            mode: this.powerMode,
            unacked: this.ring.size,
          },
        };
      case 'set-interval': {
        const ms = typeof c.args === 'number' ? c.args : field(c.args, 'ms');
        if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) {
          return {
            ok: false,
            error: `interval must be an integer ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS} ms`,
          };
        }
        this.intervalMs = ms;
        this.nextSampleAt = now + ms;
        this.armWatchdog();
        return { ok: true, value: ms };
      }
      case 'set-led':
      case 'relay': {
        const on = typeof c.args === 'boolean' ? c.args : field(c.args, 'on');
        if (typeof on !== 'boolean') return { ok: false, error: 'args must be a boolean or {"on": boolean}' };
        if (c.name === 'set-led') this.led = on;
        else this.relay = on;
        return { ok: true, value: on };
      }
      case 'set-mode': {
        const m = typeof c.args === 'string' ? c.args : field(c.args, 'mode');
        if (typeof m !== 'string' || !(MODES as readonly string[]).includes(m))
          return { ok: false, error: `mode must be one of ${MODES.join(', ')}` };
        this.powerMode = m as Mode;
        return { ok: true, value: m };
      }
      case 'reboot':
        // Answer first, then reset once this input is handled: the RESULT goes out in the old boot.
        this.pendingReboot = true;
        return { ok: true };
      default:
        return { ok: false, error: `unknown command ${c.name}` };
    }
  }
}

function field(args: Value | undefined, key: string): Value | undefined {
  if (typeof args !== 'object' || args === null || Array.isArray(args) || args instanceof Uint8Array)
    return undefined;
  return Object.hasOwn(args, key) ? args[key] : undefined;
}

function checkInterval(ms: number): number {
  if (!Number.isInteger(ms) || ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) {
    throw new RangeError(`intervalMs must be an integer ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}`);
  }
  return ms;
}

const utf8 = new TextEncoder();
function textBytes(s: string): Uint8Array {
  return utf8.encode(s);
}
