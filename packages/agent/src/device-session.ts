/**
 * One serial port's protocol state: frames in, readings stored, ACKs out. No I/O of its own:
 * the host stores messages, writes bytes and hears about devices and results.
 *
 * The rule it exists for: a DATA frame is acknowledged only when every reading in it has been
 * put() into the durable queue and the put resolved. A reading the queue refused (reject-new
 * bound) leaves the frame unacknowledged, so the device keeps it and sends it again; the
 * readings of that frame that were stored are remembered, so the retransmission stores only
 * the rest and nothing is duplicated. Duplicates (a retransmission after a lost ACK) are
 * recognised by (boot id, seq) and acknowledged again without storing.
 */
import type { OutboxMessage } from '@mqtt-edge/client';
import {
  type DataFrame,
  encodeFrame,
  FrameDecoder,
  type FrameErrorKind,
  FrameType,
  type HelloFrame,
  MAX_SENSORS,
  type Reading,
  type ResultFrame,
  type SensorInfo,
  type SerialFrameError,
  TextLineDecoder,
  type Value,
} from '@mqtt-edge/serial-protocol';
import { newCommandId } from './commands.ts';
import type { Framing } from './config.ts';
import { SeqWindow } from './dedupe.ts';
import { type SilenceCounters, SilenceWatch } from './liveness.ts';
import type { Logger } from './log.ts';
import type { Mapper } from './mapper.ts';

export interface SessionHost {
  /** Durable put; resolves when the message is as durable as the queue promises. */
  store(message: OutboxMessage): Promise<number>;
  /** Bytes to the device; false when they could not be written (port closed or backed up). */
  write(bytes: Uint8Array): boolean;
  /** A device appeared on this port (HELLO, or first DATA of a new boot) or left it. */
  onDevice(event: DeviceEvent): void;
  onResult(device: string, result: ResultFrame): void;
  /** Every HELLO (a repeat included: the agent asks for one whenever the port opens). */
  onHello?(hello: HelloFrame): void;
  /**
   * Text framings have no HELLO: the sensors their lines have carried so far (with the first unit
   * seen), each time a new one appears.
   */
  onSensors?(device: string, sensors: SensorInfo[]): void;
  /** Where this device's counters go (for the metrics): one object per device, whatever its port. */
  deviceCounters?(device: string): DeviceCounters;
  /**
   * Commit what the queue holds now, without waiting for its window (issue 18.4): a device's
   * held frames reached half its ring.
   */
  commitNow?(): void;
  /** Close the port and open it again: it stayed silent (issue 19.2). */
  reopen?(): void;
  /** The silence deadline moved earlier (a HELLO said a shorter interval): re-arm the timer. */
  rearmSilence?(): void;
  now(): number;
  log: Logger;
}

export type DeviceEvent =
  | { type: 'online'; device: string; bootId: number; firmware?: string; sensors?: SensorInfo[] }
  | { type: 'offline'; device: string };

/** Per device, kept by the host across ports and reconnects. */
export interface DeviceCounters {
  /** Readings in new DATA frames or text lines (duplicates not counted). */
  readings: number;
  /** Bad frames or lines on the device's port while it was the port's device. */
  framingErrors: number;
  /** Wall clock ms of its last reading; 0 before the first. */
  lastReadingAt: number;
}

export interface SessionCounters extends SilenceCounters {
  bytes: number;
  frames: number;
  dataFrames: number;
  readings: number;
  stored: number;
  /** Frames seen again after they were stored (a lost ACK): acknowledged again, not stored. */
  duplicates: number;
  /** Frames seen again while their readings were still being stored: ignored. */
  duplicatesInFlight: number;
  acksSent: number;
  /**
   * HELD frames written (issue 18.4): a DATA taken, not yet durable, from a device that said it
   * understands HELD; it waits for the commit instead of resending.
   */
  heldSent: number;
  /** Commits asked for before the window's end: a device's held frames reached half its ring. */
  earlyCommits: number;
  /** ACKs not written (port closed or its write buffer full): the device will retransmit. */
  acksDropped: number;
  /** Readings the queue refused (full, reject-new): their frame was not acknowledged. */
  rejected: number;
  /** Readings whose put failed for another reason (disk error). */
  storeErrors: number;
  /** DATA before any HELLO (device unknown): not acknowledged; a HELLO was asked for. */
  unknownDevice: number;
  helloRequests: number;
  /** Frames dropped because too many were being stored at once. */
  overload: number;
  /** Bad frames or lines (CRC, COBS, size, body, syntax): see the decoder stats for the kind. */
  framingErrors: number;
  /**
   * Intact DATA frames (CRC good) whose body can never be accepted (a non-finite value, a bad
   * sensor name): acknowledged without storing, so the device stops resending them and its ring
   * does not fill with them. Counted and logged: these readings are dropped on purpose.
   */
  invalidRetired: number;
  boots: number;
  results: number;
  unexpectedFrames: number;
}

export interface PortSessionOptions {
  port: string;
  framing: Framing;
  /** Text framings: the device id (required). Native: the id expected in HELLO (optional). */
  device?: string;
  mapper: Mapper;
  host: SessionHost;
  /** Id used as the boot id of text-mode readings (one per agent run). */
  textBootId: number;
  /**
   * The interval the device is expected to report at when its HELLO does not say (`p`), ms;
   * 0: the port is not watched for silence at all; absent: watched only if a HELLO says.
   */
  expectedIntervalMs?: number;
  /**
   * HELD's `t` (issue 18.4), ms: how long a device that understands HELD should wait for the ACK
   * of a frame taken (the commit window plus a margin). 0 or absent: no HELD (ACKs come soon).
   */
  holdMs?: number;
}

/** Zeroed session counters (a Modbus port's session has them too). */
export function newSessionCounters(): SessionCounters {
  return {
    bytes: 0,
    frames: 0,
    dataFrames: 0,
    readings: 0,
    stored: 0,
    duplicates: 0,
    duplicatesInFlight: 0,
    acksSent: 0,
    heldSent: 0,
    earlyCommits: 0,
    acksDropped: 0,
    rejected: 0,
    storeErrors: 0,
    unknownDevice: 0,
    helloRequests: 0,
    overload: 0,
    framingErrors: 0,
    invalidRetired: 0,
    boots: 0,
    results: 0,
    unexpectedFrames: 0,
    silences: 0,
    silenceProbes: 0,
    silenceReopens: 0,
  };
}

/** Frames being stored at once per port; more than a device's ring can hold means trouble. */
const MAX_STORING = 4096;
/** Partly stored frames remembered (their stored indices) across a queue-full spell. */
const MAX_PARTIAL = 4096;
const HELLO_REQUEST_EVERY_MS = 1000;
const ERROR_LOG_EVERY_MS = 5000;

export class PortSession {
  readonly counters: SessionCounters = newSessionCounters();
  deviceId: string | undefined;
  bootId: number | undefined;
  firmware: string | undefined;
  sensors: SensorInfo[] | undefined;
  /** A DATA frame or valid line arrived since the port opened (wall clock ms). */
  lastFrameAt = 0;
  /** Framing errors by kind (crc, cobs, body, line-syntax, ...), since the session began. */
  readonly framingErrorsByKind: Partial<Record<FrameErrorKind, number>> = {};
  private device: DeviceCounters | undefined;
  /** Text framings: the sensors seen in lines so far (at most MAX_SENSORS). */
  private textSensors: SensorInfo[] | undefined;

  private decoder: FrameDecoder | undefined;
  private text: TextLineDecoder | undefined;
  private readonly window = new SeqWindow();
  private readonly storing = new Set<number>();
  private readonly partial = new Map<number, boolean[]>();
  private epoch = 0;
  private txSeq = 0;
  private textSeq = 0;
  private lastHelloRequest = Number.NEGATIVE_INFINITY;
  private lastErrorLog = Number.NEGATIVE_INFINITY;
  private errorsSinceLog = 0;
  private lastStoreErrorLog = Number.NEGATIVE_INFINITY;
  private online = false;
  /**
   * The ring size the HELLO of the current boot said (`h`): the device understands HELD. Undefined:
   * it did not say (older firmware), or its boot changed without a HELLO since.
   */
  private ringSize: number | undefined;
  /** The interval the device's last HELLO said (`p`). */
  private helloIntervalMs: number | undefined;
  private readonly silence: SilenceWatch;

  constructor(private readonly o: PortSessionOptions) {
    this.silence = new SilenceWatch(this.counters, o.framing === 'native');
    if (o.framing !== 'native') {
      if (o.device === undefined) throw new Error(`port ${o.port}: framing ${o.framing} needs a device id`);
      this.setDevice(o.device);
      this.bootId = o.textBootId;
    }
    this.reset();
  }

  get framing(): Framing {
    return this.o.framing;
  }

  /** The device said who it is (or sent readings) and its port has not closed since. */
  get isOnline(): boolean {
    return this.online;
  }

  private setDevice(id: string): void {
    this.deviceId = id;
    this.device = this.o.host.deviceCounters?.(id);
  }

  /** The device id this port is pinned to (text framings: always set). */
  get pinnedDevice(): string | undefined {
    return this.o.device;
  }

  /** A reload changed topics or payloads: readings from now on map with `mapper`. */
  setMapper(mapper: Mapper): void {
    this.o.mapper = mapper;
  }

  get storingFrames(): number {
    return this.storing.size;
  }

  // ---- liveness (issue 19.2) -------------------------------------------------------------

  /** The interval this port's device should report at, ms (0: not watched for silence). */
  get expectedIntervalMs(): number {
    const configured = this.o.expectedIntervalMs;
    if (configured === 0) return 0;
    return this.helloIntervalMs ?? configured ?? 0;
  }

  /** A reload changed the port's interval setting (undefined: none; 0: not watched). */
  setExpectedInterval(ms: number | undefined): void {
    if (ms === undefined) delete this.o.expectedIntervalMs;
    else this.o.expectedIntervalMs = ms;
    this.o.host.rearmSilence?.();
  }

  /** When the silent spell under way began (the last frame heard), if one is. */
  get silentSince(): number | undefined {
    return this.silence.episode?.since;
  }

  /** When `checkSilence` next has something to do (Infinity: nothing watched). */
  silenceDeadline(): number {
    return this.silence.deadline(this.expectedIntervalMs);
  }

  /**
   * The agent's timer, at or after `silenceDeadline()`: asks a silent device for HELLO, or has
   * its port reopened. One warning per silent spell, one line when it ends. Returns the next
   * deadline.
   */
  checkSilence(now: number): number {
    const interval = this.expectedIntervalMs;
    const step = this.silence.step(now, interval);
    if (step !== undefined) {
      const fields = {
        port: this.o.port,
        device: this.deviceId,
        silentMs: step.silentMs,
        expectedIntervalMs: interval,
        next: step.action === 'probe' ? 'hello' : 'reopen',
      };
      if (step.first) this.o.host.log.log('warn', 'port-silent', fields);
      else this.o.host.log.log('debug', 'port-silent-still', fields);
      if (step.action === 'probe') this.requestHello(true);
      else this.o.host.reopen?.();
    }
    return this.silenceDeadline();
  }

  /** A valid frame or line arrived. */
  private heard(): void {
    const now = this.o.host.now();
    const ended = this.silence.heard(now);
    if (ended !== undefined)
      this.o.host.log.log('info', 'port-alive', {
        port: this.o.port,
        device: this.deviceId,
        silentMs: now - ended.since,
        probes: ended.probes,
        reopens: ended.reopens,
      });
  }

  /** Decoder counters (by error kind). */
  decoderStats(): Record<string, number> {
    return { ...(this.decoder?.stats ?? this.text?.stats ?? {}) } as unknown as Record<string, number>;
  }

  /** The port (re)opened: whatever half frame the old decoder held is gone. */
  reset(): void {
    const onError = (e: SerialFrameError) => this.framingError(e);
    if (this.o.framing === 'native') this.decoder = new FrameDecoder({ onError });
    else this.text = new TextLineDecoder({ mode: this.o.framing, onError });
  }

  /** The port opened: ask the device who it is (native), so status is right without a reboot. */
  opened(): void {
    this.silence.opened(this.o.host.now());
    if (this.o.framing === 'native') this.requestHello(true);
    else this.goOnline();
  }

  /** The port closed or vanished. */
  closed(): void {
    this.silence.closed();
    if (this.online && this.deviceId !== undefined) {
      this.online = false;
      this.o.host.onDevice({ type: 'offline', device: this.deviceId });
    }
  }

  push(chunk: Uint8Array): void {
    this.counters.bytes += chunk.length;
    if (this.decoder !== undefined) {
      const frames = this.decoder.push(chunk);
      if (frames.length > 0) this.heard();
      for (let i = 0; i < frames.length; i++) {
        this.counters.frames++;
        const f = frames[i];
        switch (f.type) {
          case 'hello':
            this.hello(f);
            break;
          case 'data':
            this.data(f);
            break;
          case 'result':
            this.counters.results++;
            if (this.deviceId !== undefined) this.o.host.onResult(this.deviceId, f);
            break;
          default:
            // ACK and CMD flow agent -> device; one arriving here is a loopback or a confused device.
            this.counters.unexpectedFrames++;
        }
      }
      return;
    }
    const records = this.text!.push(chunk);
    if (records.length > 0) this.heard();
    for (const rec of records) this.textReadings(rec.readings);
  }

  /** Sends a command; false when it could not be written. */
  sendCommand(id: number, name: string, args: Value | undefined): boolean {
    if (this.o.framing !== 'native') return false;
    const frame = encodeFrame(
      args === undefined
        ? { type: 'cmd', seq: this.nextTxSeq(), id, name }
        : { type: 'cmd', seq: this.nextTxSeq(), id, name, args },
    );
    return this.o.host.write(frame);
  }

  // ---- native --------------------------------------------------------------------------

  private hello(f: HelloFrame): void {
    if (this.o.device !== undefined && f.deviceId !== this.o.device) {
      this.o.host.log.log('warn', 'device-id-mismatch', {
        port: this.o.port,
        expected: this.o.device,
        hello: f.deviceId,
      });
    }
    const changedDevice = this.deviceId !== undefined && this.deviceId !== f.deviceId;
    if (changedDevice) this.closed();
    const newBoot = changedDevice || this.bootId !== f.bootId;
    if (this.deviceId !== f.deviceId) this.setDevice(f.deviceId);
    this.firmware = f.firmware;
    this.sensors = f.sensors;
    const interval = this.expectedIntervalMs;
    this.helloIntervalMs = f.intervalMs;
    if (this.expectedIntervalMs !== interval) this.o.host.rearmSilence?.();
    if (newBoot) this.newBoot(f.bootId, 'hello');
    this.ringSize = f.ringSize;
    if (newBoot || !this.online) this.goOnline();
    this.o.host.onHello?.(f);
  }

  private newBoot(bootId: number, via: string): void {
    const old = this.bootId;
    this.bootId = bootId;
    // what the device understands is said per boot (a reflash may have changed it)
    this.ringSize = undefined;
    this.window.clear();
    this.partial.clear();
    // Stores of the old boot still running finish, but must not ACK into the new boot.
    this.storing.clear();
    this.epoch++;
    this.counters.boots++;
    this.o.host.log.log('info', 'device-boot', {
      port: this.o.port,
      device: this.deviceId,
      bootId,
      previousBootId: old,
      via,
    });
  }

  private goOnline(): void {
    if (this.deviceId === undefined || this.online) return;
    this.online = true;
    const e: DeviceEvent = { type: 'online', device: this.deviceId, bootId: this.bootId ?? 0 };
    if (this.firmware !== undefined) e.firmware = this.firmware;
    if (this.sensors !== undefined) e.sensors = this.sensors;
    this.o.host.onDevice(e);
  }

  private requestHello(force = false): void {
    const now = this.o.host.now();
    if (!force && now - this.lastHelloRequest < HELLO_REQUEST_EVERY_MS) return;
    this.lastHelloRequest = now;
    this.counters.helloRequests++;
    // A fresh id each time: a device answers a repeated id from its cache, without the HELLO.
    this.o.host.write(encodeFrame({ type: 'cmd', seq: this.nextTxSeq(), id: newCommandId(), name: 'hello' }));
  }

  private data(f: DataFrame): void {
    this.counters.dataFrames++;
    this.lastFrameAt = this.o.host.now();
    if (this.deviceId === undefined) {
      // Without a HELLO there is no device id to publish under. Not acknowledged: the device
      // keeps the reading and sends it again once it has said who it is.
      if (this.o.device === undefined) {
        this.counters.unknownDevice++;
        this.requestHello();
        return;
      }
      this.setDevice(this.o.device);
    }
    if (f.bootId !== this.bootId) {
      // Its HELLO was lost (garbled, or sent while the port was closed).
      this.newBoot(f.bootId, 'data');
      this.requestHello(true);
    }
    if (!this.online) this.goOnline();
    const seq = f.seq;
    if (this.window.has(seq)) {
      this.counters.duplicates++;
      this.ack(seq);
      return;
    }
    if (this.storing.has(seq)) {
      this.counters.duplicatesInFlight++;
      // its commit is taking longer than the hold said: hold it again
      this.hold(seq);
      return;
    }
    if (this.storing.size >= MAX_STORING) {
      this.counters.overload++;
      return;
    }
    const n = f.readings.length;
    let done = this.partial.get(seq);
    if (done !== undefined && done.length !== n) done = undefined;
    const device = this.deviceId!;
    const bootId = f.bootId;
    const receivedAt = Date.now();
    const puts: Promise<number>[] = [];
    const which: number[] = [];
    for (let i = 0; i < n; i++) {
      if (done?.[i]) continue;
      const message = this.o.mapper.map({
        device,
        bootId,
        seq,
        index: i,
        reading: f.readings[i],
        receivedAt,
      });
      puts.push(this.o.host.store(message));
      which.push(i);
    }
    this.counters.readings += n;
    if (this.device !== undefined) {
      this.device.readings += n;
      this.device.lastReadingAt = receivedAt;
    }
    this.storing.add(seq);
    if (this.hold(seq) && this.storing.size >= Math.max(1, this.ringSize! >> 1)) {
      this.counters.earlyCommits++;
      this.o.host.commitNow?.();
    }
    const epoch = this.epoch;
    void Promise.allSettled(puts).then((results) => {
      if (epoch !== this.epoch) {
        // A new boot: this seq is the old boot's, never ACKed; but what was stored is in the
        // queue and will be published, so the counters still say so.
        for (const r of results) {
          if (r.status === 'fulfilled') this.counters.stored++;
          else this.storeFailed(r.reason);
        }
        return;
      }
      this.storing.delete(seq);
      let ok = true;
      for (let k = 0; k < results.length; k++) {
        const r = results[k];
        if (r.status === 'fulfilled') {
          this.counters.stored++;
          if (done === undefined) done = new Array<boolean>(n).fill(false);
          done[which[k]] = true;
          continue;
        }
        ok = false;
        this.storeFailed(r.reason);
      }
      if (ok) {
        this.partial.delete(seq);
        this.window.add(seq);
        this.ack(seq);
        return;
      }
      if (done !== undefined) {
        if (this.partial.size >= MAX_PARTIAL && !this.partial.has(seq)) {
          const oldest = this.partial.keys().next().value;
          if (oldest !== undefined) this.partial.delete(oldest);
        }
        this.partial.set(seq, done);
      }
    });
  }

  /**
   * HELD (issue 18.4) for a frame being stored, to a device that said it understands it, when the
   * ACK may come later than its retransmission timeout (a long commit window). True when the
   * device is held: the caller then commits at once, whatever the window, once the frames held
   * for it reach half its ring, so that it never has to overwrite an entry.
   */
  private hold(seq: number): boolean {
    const holdMs = this.o.holdMs ?? 0;
    if (holdMs <= 0 || this.ringSize === undefined) return false;
    if (this.o.host.write(encodeFrame({ type: 'held', seq, bootId: this.bootId ?? 0, holdMs })))
      this.counters.heldSent++;
    return true;
  }

  private storeFailed(reason: unknown): void {
    const full = (reason as { code?: string } | null)?.code === 'OUTBOX_FULL';
    if (full) this.counters.rejected++;
    else this.counters.storeErrors++;
    const now = this.o.host.now();
    if (now - this.lastStoreErrorLog >= ERROR_LOG_EVERY_MS) {
      this.lastStoreErrorLog = now;
      this.o.host.log.log(full ? 'warn' : 'error', full ? 'queue-full' : 'store-failed', {
        port: this.o.port,
        device: this.deviceId,
        rejected: this.counters.rejected,
        storeErrors: this.counters.storeErrors,
        error: full ? undefined : String((reason as Error)?.message ?? reason),
        note: 'not acknowledged: the device keeps the reading and sends it again',
      });
    }
  }

  private ack(seq: number): void {
    if (this.o.host.write(encodeFrame({ type: 'ack', seq, bootId: this.bootId ?? 0 })))
      this.counters.acksSent++;
    else this.counters.acksDropped++;
  }

  private nextTxSeq(): number {
    const s = this.txSeq;
    this.txSeq = (this.txSeq + 1) & 0xffff;
    return s;
  }

  // ---- text ----------------------------------------------------------------------------

  private textReadings(readings: Reading[]): void {
    // No seq and no ACK in text modes: at most once from the board, then as durable as native.
    this.lastFrameAt = this.o.host.now();
    this.counters.dataFrames++;
    this.counters.readings += readings.length;
    const seq = this.textSeq++;
    const receivedAt = Date.now();
    if (this.device !== undefined) {
      this.device.readings += readings.length;
      this.device.lastReadingAt = receivedAt;
    }
    const device = this.deviceId!;
    if (this.o.host.onSensors !== undefined) this.noteTextSensors(device, readings);
    for (let i = 0; i < readings.length; i++) {
      const message = this.o.mapper.map({
        device,
        bootId: this.bootId!,
        seq,
        index: i,
        reading: readings[i],
        receivedAt,
      });
      this.o.host.store(message).then(
        () => {
          this.counters.stored++;
        },
        (e) => this.storeFailed(e),
      );
    }
  }

  private noteTextSensors(device: string, readings: Reading[]): void {
    const known = (this.textSensors ??= []);
    let added = false;
    for (const r of readings) {
      if (known.length >= MAX_SENSORS || known.some((k) => k.name === r.sensor)) continue;
      known.push(r.unit === undefined ? { name: r.sensor } : { name: r.sensor, unit: r.unit });
      added = true;
    }
    if (added) this.o.host.onSensors?.(device, known.slice());
  }

  private framingError(e: SerialFrameError): void {
    this.counters.framingErrors++;
    this.framingErrorsByKind[e.kind] = (this.framingErrorsByKind[e.kind] ?? 0) + 1;
    if (this.device !== undefined) this.device.framingErrors++;
    const h = e.header;
    if (
      e.kind === 'body' &&
      h !== undefined &&
      h.typeCode === FrameType.Data &&
      h.bootId !== undefined &&
      h.bootId === this.bootId &&
      this.deviceId !== undefined
    ) {
      this.counters.invalidRetired++;
      this.o.host.log.log('warn', 'invalid-data-retired', {
        port: this.o.port,
        device: this.deviceId,
        seq: h.seq,
        error: e.message,
        note: 'acknowledged without storing: the device would resend it for ever',
      });
      this.ack(h.seq);
    }
    this.errorsSinceLog++;
    const now = this.o.host.now();
    // A baud mismatch is a stream of errors: one line every few seconds, with the count.
    if (now - this.lastErrorLog < ERROR_LOG_EVERY_MS) return;
    this.lastErrorLog = now;
    const noFrames = this.counters.frames === 0 && this.counters.dataFrames === 0;
    this.o.host.log.log('warn', 'framing-errors', {
      port: this.o.port,
      kind: e.kind,
      last: e.message,
      count: this.errorsSinceLog,
      total: this.counters.framingErrors,
      hint:
        noFrames && this.counters.framingErrors > 20
          ? 'no valid frame yet: check baud rate and framing'
          : undefined,
    });
    this.errorsSinceLog = 0;
  }
}
