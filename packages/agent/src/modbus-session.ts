/**
 * A `protocol: modbus-rtu` port (issue 20): the agent is the line's master and polls its devices.
 * Readings take the way every other reading takes (the mapper, the durable queue, the same topics
 * and payloads, message ids `device:runId:poll:index`); availability is per device (online at its
 * first answer, offline after `offlineAfter` polls in a row without one, back at the next answer);
 * writable registers are downlink commands whose replies say what was written or why not. An
 * exception response (illegal address, busy) is an answer: an error reply and a counter, and the
 * device stays online. Nothing a device sends can throw out of here.
 *
 * Polls are scheduled by due time; groups due together go least recently polled first, so the
 * devices on one line take turns. Commands go before polls. Missed poll times are skipped, not
 * made up in a burst (counted as `pollsLate`).
 */
import type { OutboxMessage } from '@mqtt-edge/client';
import {
  exceptionName,
  type ModbusClock,
  type ModbusOutcome,
  type ResultFrame,
  RtuMaster,
  type RtuMasterCounters,
  type Value,
} from '@mqtt-edge/serial-protocol';
import type { SerialPortConfig } from './config.ts';
import {
  type DeviceCounters,
  newSessionCounters,
  type SessionCounters,
  type SessionHost,
} from './device-session.ts';
import type { DeviceDescription } from './homeassistant.ts';
import type { Mapper } from './mapper.ts';
import type { ModbusDeviceConfig, ModbusPortConfig } from './modbus-config.ts';
import { describe, type PollGroup, pollGroups, registerValue, writeRequest } from './modbus-poll.ts';

/** What a native port's session has of its host, and the description Home Assistant is told. */
export interface ModbusSessionHost
  extends Pick<SessionHost, 'store' | 'write' | 'onDevice' | 'onResult' | 'deviceCounters' | 'log'> {
  /** A device answered for the first time since the port opened. */
  onDescribe?(description: DeviceDescription): void;
}

export interface ModbusSessionOptions {
  config: SerialPortConfig & { modbus: ModbusPortConfig };
  mapper: Mapper;
  /** The message ids' second part: one per agent run (as text framings' boot id). */
  runId: number;
  host: ModbusSessionHost;
  clock?: ModbusClock;
}

/** The port's counters: the session counters every port has, and the poller's own. */
export interface ModbusSessionCounters extends SessionCounters {
  polls: number;
  /** Polls that got no answer (after retries). */
  pollsFailed: number;
  /** Polls that started more than one interval after they were due (the line is too busy). */
  pollsLate: number;
  /** Polls answered with an exception. */
  pollExceptions: number;
  writes: number;
  /** Writes answered with an exception, or not at all. */
  writeErrors: number;
  /** Non-finite float32 values (NaN, infinity): not published. */
  invalidValues: number;
}

export interface ModbusDeviceState {
  config: ModbusDeviceConfig;
  /** undefined until it first answered or was given up. */
  online: boolean | undefined;
  /** Polls in a row without an answer. */
  missed: number;
  /** Polls that brought readings (the message ids' third part). */
  seq: number;
  lastError: string | undefined;
  counters: DeviceCounters | undefined;
}

interface Group extends PollGroup {
  state: ModbusDeviceState;
  dueAt: number;
  /** Order of the last poll (ties go to the least recently polled). */
  polledAt: number;
  /** The exception code it last got, so a persistent one is logged once. */
  exception: number | undefined;
}

const LOG_EVERY_MS = 5000;

export class ModbusSession {
  readonly counters: ModbusSessionCounters = {
    ...newSessionCounters(),
    polls: 0,
    pollsFailed: 0,
    pollsLate: 0,
    pollExceptions: 0,
    writes: 0,
    writeErrors: 0,
    invalidValues: 0,
  };
  readonly framingErrorsByKind: Partial<Record<string, number>> = {};
  readonly master: RtuMaster;
  readonly devices: ModbusDeviceState[];
  private readonly groups: Group[] = [];
  private readonly byId = new Map<string, ModbusDeviceState>();
  private open = false;
  private polling = false;
  private timer: unknown;
  private pollOrder = 0;
  private storing = 0;
  private readonly clock: ModbusClock;
  private lastErrorLog = Number.NEGATIVE_INFINITY;
  private errorsSinceLog = 0;
  private lastStoreErrorLog = Number.NEGATIVE_INFINITY;

  constructor(private readonly o: ModbusSessionOptions) {
    const c = o.config;
    this.master = new RtuMaster({
      write: (b) => o.host.write(b),
      baud: c.baud,
      format: { dataBits: c.dataBits ?? 8, parity: c.parity ?? 'even', stopBits: c.stopBits ?? 1 },
      ...(c.modbus.frameGapMs === undefined ? {} : { frameGapMs: c.modbus.frameGapMs }),
      responseTimeoutMs: c.modbus.responseTimeoutMs,
      retries: c.modbus.retries,
      ...(o.clock === undefined ? {} : { clock: o.clock }),
      onAttemptFailed: (request, kind, error) => this.lineError(request.unit, kind, error),
    });
    this.clock = o.clock ?? {
      now: () => performance.now(),
      setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
      clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
    };
    this.devices = c.modbus.devices.map((d) => ({
      config: d,
      online: undefined,
      missed: 0,
      seq: 0,
      lastError: undefined,
      counters: o.host.deviceCounters?.(d.id),
    }));
    for (const state of this.devices) {
      this.byId.set(state.config.id, state);
      for (const g of pollGroups(state.config))
        this.groups.push({ ...g, state, dueAt: 0, polledAt: 0, exception: undefined });
    }
  }

  // ---- what the agent reads of every port session ------------------------------------------

  get framing(): 'modbus-rtu' {
    return 'modbus-rtu';
  }
  /** A bus has many devices: none is "the" device of the port. */
  get deviceId(): undefined {
    return undefined;
  }
  get bootId(): undefined {
    return undefined;
  }
  get isOnline(): boolean {
    return this.devices.some((d) => d.online === true);
  }
  get storingFrames(): number {
    return this.storing;
  }
  /** Not watched for silence: it asks, so silence is a device's missed polls (availability). */
  get expectedIntervalMs(): number {
    return 0;
  }
  get silentSince(): undefined {
    return undefined;
  }
  silenceDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }
  checkSilence(): number {
    return Number.POSITIVE_INFINITY;
  }
  setExpectedInterval(): void {}
  setMapper(mapper: Mapper): void {
    this.o.mapper = mapper;
  }
  /** The devices on this port and whether each answers. */
  devicesOnPort(): Array<{ id: string; online: boolean }> {
    return this.devices.map((d) => ({ id: d.config.id, online: d.online === true }));
  }
  /** The device's state, if it is on this port. */
  device(id: string): ModbusDeviceState | undefined {
    return this.byId.get(id);
  }

  reset(): void {}

  /** The port opened: every group is due now. */
  opened(): void {
    this.open = true;
    const now = this.clock.now();
    for (const g of this.groups) g.dueAt = now;
    this.next();
  }

  /** The port closed: requests waiting fail, and the devices are offline until they answer again. */
  closed(): void {
    this.open = false;
    this.clearTimer();
    this.master.reset();
    for (const d of this.devices) {
      if (d.online === true) this.o.host.onDevice({ type: 'offline', device: d.config.id });
      d.online = undefined;
      d.missed = 0;
    }
  }

  push(chunk: Uint8Array): void {
    this.counters.bytes += chunk.length;
    this.master.push(chunk);
  }

  // ---- polling -----------------------------------------------------------------------------

  /** Starts the next poll when the line is free and one is due; else waits for the first due. */
  private next(): void {
    this.clearTimer();
    if (!this.open || this.polling || this.groups.length === 0) return;
    let best: Group | undefined;
    for (const g of this.groups)
      if (
        best === undefined ||
        g.dueAt < best.dueAt ||
        (g.dueAt === best.dueAt && g.polledAt < best.polledAt)
      )
        best = g;
    const group = best as Group;
    const now = this.clock.now();
    if (group.dueAt > now) {
      this.timer = this.clock.setTimeout(() => this.next(), group.dueAt - now);
      return;
    }
    if (now - group.dueAt > group.intervalMs) this.counters.pollsLate++;
    group.dueAt = Math.max(group.dueAt + group.intervalMs, now);
    group.polledAt = ++this.pollOrder;
    this.polling = true;
    this.counters.polls++;
    void this.master.request(group.request).then((outcome) => {
      this.polling = false;
      try {
        this.polled(group, outcome);
      } catch (err) {
        // A bug here must not stop the line: say so loudly and poll on.
        this.o.host.log.log('error', 'modbus-poll-failed', {
          port: this.o.config.name,
          device: group.device.id,
          error: (err as Error).stack,
        });
      }
      this.next();
    });
  }

  private polled(group: Group, outcome: ModbusOutcome): void {
    const d = group.state;
    if (!this.open) return;
    if (!outcome.ok) {
      if (outcome.kind === 'port' || outcome.kind === 'queue-full') return;
      this.counters.pollsFailed++;
      this.missed(d, `${outcome.kind}: ${outcome.error}`);
      return;
    }
    this.counters.frames++;
    this.answered(d);
    const response = outcome.response;
    if (response.type === 'exception') {
      this.counters.pollExceptions++;
      if (group.exception !== response.code) {
        group.exception = response.code;
        const r = group.request;
        this.o.host.log.log('warn', 'modbus-exception', {
          port: this.o.config.name,
          device: d.config.id,
          unit: d.config.unit,
          table: group.table,
          address: r.address,
          quantity: r.quantity,
          exception: response.code,
          name: exceptionName(response.code),
          hint:
            response.code === 2
              ? 'the device has no such register: check the map (addresses are 0-based, as on the wire)'
              : undefined,
        });
      }
      return;
    }
    if (group.exception !== undefined) {
      this.o.host.log.log('info', 'modbus-exception-over', {
        port: this.o.config.name,
        device: d.config.id,
        table: group.table,
        address: group.request.address,
      });
      group.exception = undefined;
    }
    if (response.type !== 'registers' && response.type !== 'bits') return;
    this.counters.dataFrames++;
    const seq = d.seq++;
    const receivedAt = Date.now();
    let index = 0;
    for (const e of group.entries) {
      const value = registerValue(e.register, e.at, response.values);
      if (!Number.isFinite(value)) {
        this.counters.invalidValues++;
        continue;
      }
      const reading =
        e.register.unit === undefined
          ? { sensor: e.register.name, value }
          : { sensor: e.register.name, value, unit: e.register.unit };
      const message = this.o.mapper.map({
        device: d.config.id,
        bootId: this.o.runId,
        seq,
        index: index++,
        reading,
        receivedAt,
      });
      this.store(message, d);
    }
    this.counters.readings += index;
    if (d.counters !== undefined) {
      d.counters.readings += index;
      d.counters.lastReadingAt = receivedAt;
    }
  }

  private store(message: OutboxMessage, d: ModbusDeviceState): void {
    this.storing++;
    this.o.host.store(message).then(
      () => {
        this.storing--;
        this.counters.stored++;
      },
      (err: unknown) => {
        this.storing--;
        const full = (err as { code?: string } | null)?.code === 'OUTBOX_FULL';
        if (full) this.counters.rejected++;
        else this.counters.storeErrors++;
        const now = Date.now();
        if (now - this.lastStoreErrorLog < LOG_EVERY_MS) return;
        this.lastStoreErrorLog = now;
        this.o.host.log.log(full ? 'warn' : 'error', full ? 'queue-full' : 'store-failed', {
          port: this.o.config.name,
          device: d.config.id,
          rejected: this.counters.rejected,
          storeErrors: this.counters.storeErrors,
          error: full ? undefined : String((err as Error)?.message ?? err),
          note: 'a polled reading is not asked for again: it is lost',
        });
      },
    );
  }

  private answered(d: ModbusDeviceState): void {
    d.missed = 0;
    d.lastError = undefined;
    if (d.online === true) return;
    d.online = true;
    const { sensors, commands } = describe(d.config);
    this.o.host.onDevice({ type: 'online', device: d.config.id, bootId: this.o.runId, sensors });
    const description: DeviceDescription = { id: d.config.id, sensors, commands };
    if (d.config.model !== undefined) description.model = d.config.model;
    this.o.host.onDescribe?.(description);
  }

  private missed(d: ModbusDeviceState, error: string): void {
    d.missed++;
    d.lastError = error;
    if (d.missed < this.o.config.modbus.offlineAfter || d.online === false) return;
    const was = d.online;
    d.online = false;
    this.o.host.log.log('warn', 'modbus-no-answer', {
      port: this.o.config.name,
      device: d.config.id,
      unit: d.config.unit,
      missedPolls: d.missed,
      lastError: error,
    });
    // Never heard in this run: its retained status may still say online from the last one.
    if (was === true || was === undefined) this.o.host.onDevice({ type: 'offline', device: d.config.id });
  }

  /** A failed attempt on the line (every one is counted; the log has one line every few seconds). */
  private lineError(unit: number, kind: string, error: string): void {
    if (kind === 'port' || kind === 'queue-full') return;
    this.framingErrorsByKind[kind] = (this.framingErrorsByKind[kind] ?? 0) + 1;
    if (kind === 'timeout') return;
    this.counters.framingErrors++;
    const d = this.devices.find((x) => x.config.unit === unit);
    if (d?.counters !== undefined) d.counters.framingErrors++;
    this.errorsSinceLog++;
    const now = Date.now();
    if (now - this.lastErrorLog < LOG_EVERY_MS) return;
    this.lastErrorLog = now;
    this.o.host.log.log('warn', 'modbus-line-errors', {
      port: this.o.config.name,
      unit,
      kind,
      last: error,
      count: this.errorsSinceLog,
      total: this.counters.framingErrors,
      hint:
        this.master.counters.responses === 0 && this.counters.framingErrors > 5
          ? 'no valid response yet: check baud, parity (the default is even; many devices use none) and stop bits'
          : undefined,
    });
    this.errorsSinceLog = 0;
  }

  // ---- commands ----------------------------------------------------------------------------

  /** The command target of one device on this port (the agent's command router asks for it). */
  target(
    device: string,
  ): { sendCommand(id: number, name: string, args: Value | undefined): boolean | string } | undefined {
    const d = this.byId.get(device);
    if (d === undefined) return undefined;
    return { sendCommand: (id, name, args) => this.write(d, id, name, args) };
  }

  private write(d: ModbusDeviceState, id: number, name: string, args: Value | undefined): true | string {
    const register = d.config.registers.find((r) => r.name === name && r.writable);
    if (register === undefined) {
      const writable = d.config.registers.filter((r) => r.writable).map((r) => r.name);
      return `${d.config.id} has no writable register ${name}${writable.length > 0 ? ` (writable: ${writable.join(', ')})` : ''}`;
    }
    if (!this.open) return 'serial port not open';
    const arg =
      typeof args === 'object' && args !== null && !Array.isArray(args) && !(args instanceof Uint8Array)
        ? args.value
        : args;
    const w = writeRequest(d.config.unit, register, arg);
    if ('error' in w) return w.error;
    this.counters.writes++;
    void this.master.request(w.request, true).then((outcome) => {
      const result: ResultFrame = { type: 'result', seq: 0, id, ok: false };
      if (outcome.ok && outcome.response.type === 'written') {
        result.ok = true;
        result.value = w.written;
        this.answered(d);
        // The reading shows the new value at once, not an interval later.
        for (const g of this.groups)
          if (g.state === d && g.entries.some((e) => e.register === register)) g.dueAt = 0;
        if (!this.polling) this.next();
      } else {
        this.counters.writeErrors++;
        if (outcome.ok && outcome.response.type === 'exception') {
          this.answered(d);
          result.error = `modbus exception ${outcome.response.code} (${exceptionName(outcome.response.code)})`;
        } else if (!outcome.ok)
          result.error = `no valid answer from unit ${d.config.unit}: ${outcome.kind}: ${outcome.error}`;
        else result.error = 'unexpected response';
      }
      this.o.host.onResult(d.config.id, result);
    });
    return true;
  }

  /** Counters of the line (the master's), for status and metrics. */
  get lineCounters(): RtuMasterCounters {
    return this.master.counters;
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
