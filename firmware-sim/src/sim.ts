/**
 * Runs a Firmware on a Transport: timers for sampling and retransmission, faults on the bytes
 * written, and the scheduled faults (reset mid-frame, bursts, unplug).
 */
import { FaultInjector, type FaultRates } from './faults.ts';
import { Firmware, type FirmwareOptions } from './firmware.ts';
import { type Logger, silentLogger } from './log.ts';
import { Rng } from './rng.ts';
import type { Transport } from './transport.ts';

export interface FirmwareSimOptions extends Omit<FirmwareOptions, 'rng'> {
  /** Seed for readings, boot ids and faults (default: random). */
  seed?: number;
  faults?: FaultRates;
  /** Every N ms, write half of a DATA frame and reset (new boot id). */
  resetEveryMs?: number;
  /** Every N ms, `burstSize` readings at once. */
  burstEveryMs?: number;
  burstSize?: number;
  /** Every N ms, unplug for `unplugForMs`. */
  unplugEveryMs?: number;
  unplugForMs?: number;
  log?: Logger;
  now?: () => number;
}

/** Firmware events worth more than debug: readings lost, and the watchdog's quiet spells. */
const EVENT_LEVEL: Record<string, 'warn' | 'info'> = {
  'ring-overwrite': 'warn',
  'watchdog-hello': 'warn',
  'heard-again': 'info',
};

export interface SimStats {
  bytesWritten: number;
  /** Bytes the firmware wrote while unplugged: gone, as on a real UART with no one listening. */
  bytesLostUnplugged: number;
  resetsMidFrame: number;
  bursts: number;
  unplugs: number;
}

export class FirmwareSim {
  readonly firmware: Firmware;
  readonly faults: FaultInjector;
  readonly stats: SimStats = {
    bytesWritten: 0,
    bytesLostUnplugged: 0,
    resetsMidFrame: 0,
    bursts: 0,
    unplugs: 0,
  };
  readonly seed: number;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly options: FirmwareSimOptions;
  private timer: NodeJS.Timeout | undefined;
  private readonly periodic: NodeJS.Timeout[] = [];
  private running = false;
  private hung = false;
  private unplugging: Promise<void> | undefined;

  constructor(
    readonly transport: Transport,
    options: FirmwareSimOptions,
  ) {
    this.options = options;
    this.seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
    const rng = new Rng(this.seed);
    this.now = options.now ?? Date.now;
    this.log = options.log ?? silentLogger;
    this.firmware = new Firmware({ ...options, rng }, this.now());
    // Faults draw from their own stream so enabling one does not change the readings.
    this.faults = new FaultInjector(new Rng(this.seed ^ 0x5eed), options.faults);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.transport.setEvents({
      onData: (b) => this.onData(b),
      onState: (state, detail) => this.log.log('info', state, { device: this.firmware.deviceId, ...detail }),
      onError: (e) =>
        this.log.log('warn', 'transport-error', { device: this.firmware.deviceId, error: e.message }),
    });
    const o = this.options;
    this.log.log('info', 'start', {
      device: this.firmware.deviceId,
      transport: this.transport.description,
      mode: this.firmware.mode,
      interval: this.firmware.intervalMs,
      seed: this.seed,
      bootId: this.firmware.bootId,
    });
    if (o.resetEveryMs) this.every(o.resetEveryMs, () => this.resetMidFrame());
    if (o.burstEveryMs) this.every(o.burstEveryMs, () => this.burst(o.burstSize ?? 20));
    if (o.unplugEveryMs) {
      this.every(o.unplugEveryMs, () => {
        if (this.unplugging === undefined) void this.unplug(o.unplugForMs ?? 2000);
      });
    }
    this.flush();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    for (const t of this.periodic) clearInterval(t);
    await this.transport.close();
    await this.unplugging;
  }

  /** Writes the first half of the next DATA frame, then resets: that frame is never finished. */
  resetMidFrame(): void {
    const wire = this.firmware.takeNextDataFrame(this.now());
    this.send(wire.subarray(0, Math.max(1, wire.length >> 1)));
    this.stats.resetsMidFrame++;
    const oldBoot = this.firmware.bootId;
    this.firmware.boot(this.now());
    this.log.log('info', 'reset-mid-frame', {
      device: this.firmware.deviceId,
      oldBoot,
      bootId: this.firmware.bootId,
    });
    this.flush();
    this.schedule();
  }

  burst(n: number): void {
    this.stats.bursts++;
    this.firmware.burst(n, this.now());
    this.log.log('info', 'burst', { device: this.firmware.deviceId, readings: n });
    this.flush();
    this.schedule();
  }

  /**
   * The firmware hangs (a stuck MCU: it neither writes nor reads; what arrives is lost, as
   * in a UART overrun) until `resume()`. The port stays open: the agent sees a silent line.
   */
  hang(): void {
    if (this.hung || !this.running) return;
    this.hung = true;
    clearTimeout(this.timer);
    this.log.log('info', 'hang', { device: this.firmware.deviceId });
  }

  /** Ends a `hang()`: missed samples are skipped, what timed out is sent again. */
  resume(): void {
    if (!this.hung) return;
    this.hung = false;
    this.log.log('info', 'resume', { device: this.firmware.deviceId });
    this.tick();
  }

  /** Unplugs for `ms`; the firmware keeps running (and its ring fills) meanwhile. */
  unplug(ms: number): Promise<void> {
    if (this.unplugging !== undefined) return this.unplugging;
    this.stats.unplugs++;
    this.unplugging = this.transport
      .unplug(ms)
      .catch((e: Error) =>
        this.log.log('error', 'replug-failed', { device: this.firmware.deviceId, error: e.message }),
      )
      .finally(() => {
        this.unplugging = undefined;
      });
    return this.unplugging;
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref?.();
    this.periodic.push(t);
  }

  private onData(bytes: Uint8Array): void {
    if (!this.running || this.hung) return;
    this.firmware.receive(bytes, this.now());
    this.flush();
    this.schedule();
  }

  private tick(): void {
    if (!this.running || this.hung) return;
    this.firmware.poll(this.now());
    this.flush();
    this.schedule();
  }

  private schedule(): void {
    if (!this.running || this.hung) return;
    clearTimeout(this.timer);
    const wait = Math.max(0, this.firmware.nextDeadline() - this.now());
    this.timer = setTimeout(() => this.tick(), wait);
  }

  private flush(): void {
    for (const e of this.firmware.takeEvents()) {
      const { event, ...rest } = e;
      this.log.log(EVENT_LEVEL[event] ?? 'debug', event, { device: this.firmware.deviceId, ...rest });
    }
    for (const chunk of this.firmware.takeOutput()) {
      for (const part of this.faults.apply(chunk)) this.send(part);
    }
  }

  private send(bytes: Uint8Array): void {
    if (this.transport.write(bytes)) this.stats.bytesWritten += bytes.length;
    else this.stats.bytesLostUnplugged += bytes.length;
  }
}
