/** Where the firmware's bytes go: an in-process link, a socat pty pair it owns, or an existing tty. */
import { openSerialPort } from '@mqtt-edge/serial-protocol/node';
import type { SerialPortStream } from '@serialport/stream';
import type { LinkPair } from './link.ts';
import { createSocatPair, type SocatPair } from './pty.ts';

export interface TransportEvents {
  onData?: (bytes: Uint8Array) => void;
  /** `reopened`: the port closed under the device (a write that found no room) and was opened again. */
  onState?: (state: 'plugged' | 'unplugged' | 'reopened', detail?: Record<string, unknown>) => void;
  onError?: (error: Error) => void;
  /**
   * Bytes the port took (written to the tty, not just queued in the stream): a write parked for
   * room in the tty reports nothing until it finishes.
   */
  onWritten?: (bytes: number) => void;
}

export interface Transport {
  readonly description: string;
  /** True while bytes can flow. */
  readonly plugged: boolean;
  /** Writes if plugged; returns false when the bytes went nowhere. */
  write(bytes: Uint8Array): boolean;
  /** Unplug now, plug back after `ms`; resolves once plugged back (or closed meanwhile). */
  unplug(ms: number): Promise<void>;
  close(): Promise<void>;
  setEvents(events: TransportEvents): void;
}

/**
 * A transport that also hands every byte the device receives to `tap`: what a test, or the
 * demo, uses to see the ACKs a device was sent.
 */
export class TappedTransport implements Transport {
  constructor(
    private readonly inner: Transport,
    private readonly tap: (bytes: Uint8Array) => void,
    /** Also told of every write the port took (`TransportEvents.onWritten`). */
    private readonly tapWritten?: (bytes: number) => void,
  ) {}
  get description(): string {
    return this.inner.description;
  }
  get plugged(): boolean {
    return this.inner.plugged;
  }
  write(bytes: Uint8Array): boolean {
    return this.inner.write(bytes);
  }
  unplug(ms: number): Promise<void> {
    return this.inner.unplug(ms);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  setEvents(events: TransportEvents): void {
    this.inner.setEvents({
      ...events,
      onData: (b) => {
        this.tap(b);
        events.onData?.(b);
      },
      onWritten: (n) => {
        this.tapWritten?.(n);
        events.onWritten?.(n);
      },
    });
  }
}

function waitOrClosed(ms: number, closed: Promise<void>): Promise<void> {
  // The unplug duration is the fault being simulated, not a wait for something to happen.
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    void closed.then(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

export class InProcessTransport implements Transport {
  readonly description = 'in-process link';
  private events: TransportEvents = {};
  private closing!: () => void;
  private readonly closed = new Promise<void>((r) => {
    this.closing = r;
  });

  constructor(private readonly pair: LinkPair) {
    pair.device.on('data', (b: Buffer) => this.events.onData?.(b));
    pair.device.on('error', (e: Error) => this.events.onError?.(e));
  }
  get plugged(): boolean {
    return this.pair.connected;
  }
  setEvents(events: TransportEvents): void {
    this.events = events;
  }
  write(bytes: Uint8Array): boolean {
    if (!this.pair.connected || this.pair.device.destroyed) return false;
    const n = bytes.length;
    this.pair.device.write(bytes, (err) => {
      if (!err) this.events.onWritten?.(n);
    });
    return true;
  }
  async unplug(ms: number): Promise<void> {
    this.pair.connected = false;
    this.events.onState?.('unplugged', { forMs: ms });
    await waitOrClosed(ms, this.closed);
    this.pair.connected = true;
    this.events.onState?.('plugged');
  }
  async close(): Promise<void> {
    this.closing();
    this.pair.device.end();
  }
}

/** How the device opens its end of the line. */
export interface DevicePortOptions {
  /**
   * A write that finds no room in the tty for this long fails and the port is opened again
   * (default: the binding's, 5000 ms).
   */
  writeTimeoutMs?: number;
}

function portOptions(o: DevicePortOptions): { writeTimeoutMs?: number } {
  return o.writeTimeoutMs === undefined ? {} : { writeTimeoutMs: o.writeTimeoutMs };
}

/** Writes to an open port, telling `events` once the tty took the bytes; false if not open. */
function writePort(port: SerialPortStream | undefined, bytes: Uint8Array, events: TransportEvents): boolean {
  if (port === undefined || !port.isOpen) return false;
  const n = bytes.length;
  port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), (err) => {
    if (!err) events.onWritten?.(n);
  });
  return true;
}

function closePort(port: SerialPortStream | undefined): Promise<void> {
  if (port === undefined || !port.isOpen) return Promise.resolve();
  return new Promise((resolve) => port.close(() => resolve()));
}

/**
 * Owns a socat pair: the firmware opens `devicePath`, the agent opens `agentPath`. Unplug kills
 * socat, so both links vanish and the agent's open port hangs up, then recreates the pair at the
 * same paths (new /dev/pts numbers, as a re-enumerated USB adapter would get).
 */
export class PtyTransport implements Transport {
  private events: TransportEvents = {};
  private pair: SocatPair | undefined;
  private port: SerialPortStream | undefined;
  private isClosed = false;
  private closing!: () => void;
  private readonly closed = new Promise<void>((r) => {
    this.closing = r;
  });

  private constructor(
    readonly agentPath: string,
    readonly devicePath: string,
    private readonly portOptions: DevicePortOptions,
  ) {}

  get description(): string {
    return `pty ${this.agentPath} (device end ${this.devicePath})`;
  }
  get plugged(): boolean {
    return this.port?.isOpen === true;
  }
  /** The device end's open port (undefined while unplugged), for tests that look at its state. */
  get devicePort(): SerialPortStream | undefined {
    return this.port;
  }
  /** socat's pid right now (-1 while unplugged). */
  get socatPid(): number {
    return this.pair?.pid ?? -1;
  }
  /** The /dev/pts names behind the links right now. */
  get ptys(): readonly string[] {
    return this.pair?.ptys ?? [];
  }

  static async create(
    agentPath: string,
    devicePath = `${agentPath}.device`,
    options: DevicePortOptions = {},
  ): Promise<PtyTransport> {
    const t = new PtyTransport(agentPath, devicePath, options);
    await t.plug();
    return t;
  }

  setEvents(events: TransportEvents): void {
    this.events = events;
  }

  private async plug(): Promise<void> {
    const pair = await createSocatPair(this.devicePath, this.agentPath);
    this.pair = pair;
    try {
      await this.openDevice(pair);
    } catch (e) {
      await pair.close();
      throw e;
    }
    void pair.exited.then(() => {
      if (this.pair === pair && !this.isClosed) void this.recover();
    });
    this.events.onState?.('plugged', { path: this.agentPath, ptys: pair.ptys });
  }

  private async openDevice(pair: SocatPair): Promise<void> {
    const port = await openSerialPort(pair.devicePath, portOptions(this.portOptions));
    this.port = port;
    port.on('data', (b: Buffer) => this.events.onData?.(b));
    port.on('error', (e: Error) => this.events.onError?.(e));
    port.on('close', () => {
      // Closed under the device while its pair lives (a write that found no room for
      // writeTimeoutMs: nothing drained the line): open the device end again, as firmware
      // would reset its UART. A pair that died is recover()'s, a close of ours unplugNow()'s.
      if (this.port !== port || this.pair !== pair || this.isClosed) return;
      this.port = undefined;
      void this.reopenDevice(pair);
    });
  }

  private async reopenDevice(pair: SocatPair): Promise<void> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
      await waitOrClosed(delay, this.closed);
      if (this.isClosed || this.pair !== pair || this.port !== undefined) return;
      try {
        await this.openDevice(pair);
        this.events.onState?.('reopened', { path: this.agentPath, device: pair.devicePath });
        return;
      } catch (e) {
        this.events.onError?.(e as Error);
      }
    }
  }

  /** socat died on its own (killed from outside): behave like a replug, retrying with backoff. */
  private async recover(): Promise<void> {
    this.events.onError?.(new Error('socat exited unexpectedly; recreating the pty pair'));
    await this.unplugNow();
    this.events.onState?.('unplugged', { path: this.agentPath, reason: 'socat exited' });
    for (let delay = 250; !this.isClosed; delay = Math.min(delay * 2, 5000)) {
      await waitOrClosed(delay, this.closed);
      if (this.isClosed) return;
      try {
        await this.plug();
        return;
      } catch (e) {
        this.events.onError?.(e as Error);
      }
    }
  }

  private async unplugNow(): Promise<void> {
    const pair = this.pair;
    this.pair = undefined;
    await closePort(this.port);
    this.port = undefined;
    await pair?.close();
  }

  write(bytes: Uint8Array): boolean {
    return writePort(this.port, bytes, this.events);
  }

  async unplug(ms: number): Promise<void> {
    await this.unplugNow();
    this.events.onState?.('unplugged', { path: this.agentPath, forMs: ms });
    await waitOrClosed(ms, this.closed);
    if (!this.isClosed) await this.plug();
  }

  async close(): Promise<void> {
    this.isClosed = true;
    this.closing();
    await this.unplugNow();
  }
}

/** An existing tty (a real USB-serial adapter, or a pty made elsewhere). Unplug closes and reopens it. */
export class PortTransport implements Transport {
  private events: TransportEvents = {};
  private port: SerialPortStream | undefined;
  private isClosed = false;
  private closing!: () => void;
  private readonly closed = new Promise<void>((r) => {
    this.closing = r;
  });

  private constructor(
    readonly path: string,
    private readonly portOptions: DevicePortOptions,
  ) {}

  get description(): string {
    return `port ${this.path}`;
  }
  get plugged(): boolean {
    return this.port?.isOpen === true;
  }

  static async open(path: string, options: DevicePortOptions = {}): Promise<PortTransport> {
    const t = new PortTransport(path, options);
    await t.reopen();
    return t;
  }

  setEvents(events: TransportEvents): void {
    this.events = events;
  }

  private async reopen(): Promise<void> {
    const port = await openSerialPort(this.path, portOptions(this.portOptions));
    this.port = port;
    port.on('data', (b: Buffer) => this.events.onData?.(b));
    port.on('error', (e: Error) => this.events.onError?.(e));
    port.on('close', () => {
      if (this.port !== port || this.isClosed) return;
      this.port = undefined;
      this.events.onState?.('unplugged', { path: this.path, reason: 'port closed' });
      void this.reopenWithBackoff();
    });
    this.events.onState?.('plugged', { path: this.path });
  }

  /** The tty went away under us (the other end closed it): keep trying until it is back. */
  private async reopenWithBackoff(): Promise<void> {
    for (let delay = 250; !this.isClosed && this.port === undefined; delay = Math.min(delay * 2, 5000)) {
      await waitOrClosed(delay, this.closed);
      if (this.isClosed) return;
      try {
        await this.reopen();
      } catch (e) {
        this.events.onError?.(e as Error);
      }
    }
  }

  write(bytes: Uint8Array): boolean {
    return writePort(this.port, bytes, this.events);
  }

  async unplug(ms: number): Promise<void> {
    const port = this.port;
    this.port = undefined;
    await closePort(port);
    this.events.onState?.('unplugged', { path: this.path, forMs: ms });
    await waitOrClosed(ms, this.closed);
    if (!this.isClosed) await this.reopen();
  }

  async close(): Promise<void> {
    this.isClosed = true;
    this.closing();
    const port = this.port;
    this.port = undefined;
    await closePort(port);
  }
}
