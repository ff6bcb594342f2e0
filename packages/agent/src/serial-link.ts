/**
 * One configured serial port, kept open: opens it (by path, or by USB ids through
 * SerialPort.list()), hands bytes up, and when it vanishes (unplugged adapter, socat gone, a
 * read error) reopens it with backoff, for as long as the agent runs. Never throws upward.
 */
import type { Duplex } from 'node:stream';
import { EofAwareLinuxBinding as EofAwareBinding } from '@mqtt-edge/serial-protocol/node';
import { SerialPortStream } from '@serialport/stream';
import { SerialPort } from 'serialport';
import type { SerialPortConfig, UsbMatch } from './config.ts';
import type { Logger } from './log.ts';

export type LinkState = 'opening' | 'open' | 'waiting' | 'stopped';

/** Opens a byte stream for a port; the default uses serialport. Tests and the bench pass their own. */
export type PortOpener = (port: SerialPortConfig) => Promise<Duplex>;

export interface LinkCounters {
  opens: number;
  openFailures: number;
  /** The open port closed or failed under us. */
  disconnects: number;
  bytesIn: number;
  bytesOut: number;
  /** Writes dropped: port not open, or its write buffer over the bound. */
  writeDrops: number;
}

export interface SerialLinkOptions {
  config: SerialPortConfig;
  log: Logger;
  opener?: PortOpener;
  onData(chunk: Uint8Array): void;
  onOpen(): void;
  onClose(): void;
  /** Reopen backoff: first delay and cap, ms. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Bytes allowed to wait in a port's write buffer; beyond it writes are dropped (ACKs repeat). */
const MAX_WRITE_BACKLOG = 64 << 10;

/** Finds the device path of a USB serial adapter. Needs udevadm; never lists ptys. */
export async function findUsbPort(match: UsbMatch): Promise<string | undefined> {
  const ports = await SerialPort.list();
  const norm = (s: string | undefined) => s?.replace(/^0x/i, '').toLowerCase().padStart(4, '0');
  const hit = ports.find(
    (p) =>
      (match.vendorId === undefined || norm(p.vendorId) === match.vendorId) &&
      (match.productId === undefined || norm(p.productId) === match.productId) &&
      (match.serialNumber === undefined || p.serialNumber === match.serialNumber),
  );
  return hit?.path;
}

export const serialportOpener: PortOpener = async (c) => {
  const path = c.path ?? (c.usb ? await findUsbPort(c.usb) : undefined);
  if (path === undefined) throw new Error(`no USB serial device matches ${JSON.stringify(c.usb)}`);
  const options = { path, baudRate: c.baud, autoOpen: false, highWaterMark: 64 * 1024 };
  const port =
    process.platform === 'linux'
      ? new SerialPortStream({ ...options, binding: EofAwareBinding })
      : new SerialPort(options);
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  return port;
};

export class SerialLink {
  readonly counters: LinkCounters = {
    opens: 0,
    openFailures: 0,
    disconnects: 0,
    bytesIn: 0,
    bytesOut: 0,
    writeDrops: 0,
  };
  state: LinkState = 'waiting';
  lastError: string | undefined;
  /** Since when the port is in its current state (ms since the epoch). */
  since = Date.now();
  private stream: Duplex | undefined;
  private attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly opener: PortOpener;

  constructor(private readonly o: SerialLinkOptions) {
    this.opener = o.opener ?? serialportOpener;
  }

  get name(): string {
    return this.o.config.name;
  }

  start(): void {
    this.stopped = false;
    void this.open();
  }

  write(bytes: Uint8Array): boolean {
    const s = this.stream;
    if (this.state !== 'open' || s === undefined || s.destroyed || s.writableLength > MAX_WRITE_BACKLOG) {
      this.counters.writeDrops++;
      return false;
    }
    try {
      s.write(bytes);
    } catch {
      this.counters.writeDrops++;
      return false;
    }
    this.counters.bytesOut += bytes.length;
    return true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const s = this.stream;
    this.stream = undefined;
    this.setState('stopped');
    if (s !== undefined && !s.destroyed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        s.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        if (s instanceof SerialPortStream) {
          if (s.isOpen) s.close(() => undefined);
          else s.destroy();
        } else s.destroy();
      });
    }
  }

  private setState(state: LinkState): void {
    if (this.state === state) return;
    this.state = state;
    this.since = Date.now();
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    this.setState('opening');
    let stream: Duplex;
    try {
      stream = await this.opener(this.o.config);
    } catch (e) {
      this.counters.openFailures++;
      const msg = (e as Error).message;
      // The first failure, then one line per change of reason: a missing adapter is not news every 5 s.
      if (this.lastError !== msg) this.o.log.log('warn', 'port-open-failed', { port: this.name, error: msg });
      this.lastError = msg;
      this.retry();
      return;
    }
    if (this.stopped) {
      stream.destroy();
      return;
    }
    this.stream = stream;
    this.attempts = 0;
    this.lastError = undefined;
    this.counters.opens++;
    this.setState('open');
    let gone = false;
    const lost = (why: string) => {
      if (gone) return;
      gone = true;
      if (this.stream === stream) this.stream = undefined;
      if (!stream.destroyed) stream.destroy();
      if (this.stopped) return;
      this.counters.disconnects++;
      this.o.log.log('warn', 'port-lost', { port: this.name, reason: why });
      this.o.onClose();
      this.retry();
    };
    stream.on('data', (chunk: Uint8Array) => {
      this.counters.bytesIn += chunk.length;
      try {
        this.o.onData(chunk);
      } catch (e) {
        // A bug in frame handling must not leave the port half-dead: log it loudly and go on.
        this.o.log.log('error', 'port-data-handler-failed', { port: this.name, error: (e as Error).stack });
      }
    });
    stream.on('error', (e: Error) => {
      this.lastError = e.message;
      lost(`error: ${e.message}`);
    });
    stream.on('close', () => lost('closed'));
    stream.on('end', () => lost('end of stream'));
    this.o.log.log('info', 'port-open', {
      port: this.name,
      path: this.o.config.path,
      baud: this.o.config.baud,
    });
    this.o.onOpen();
  }

  private retry(): void {
    if (this.stopped) return;
    this.setState('waiting');
    const min = this.o.minBackoffMs ?? 100;
    const max = this.o.maxBackoffMs ?? 5000;
    const cap = Math.min(max, min * 2 ** Math.min(this.attempts++, 16));
    // Half fixed, half jitter: prompt after a short unplug, no lockstep among many ports.
    const delay = cap / 2 + Math.random() * (cap / 2);
    this.timer = setTimeout(() => void this.open(), delay);
  }
}
