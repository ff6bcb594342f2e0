/**
 * One configured serial port, kept open: opens it (by path, or by USB ids through
 * SerialPort.list()), hands bytes up, and when it vanishes (unplugged adapter, socat gone, a
 * read error) reopens it with backoff, for as long as the agent runs. Never throws upward.
 */
import type { Duplex } from 'node:stream';
import { openSerialPort } from '@mqtt-edge/serial-protocol/node';
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
  /** Writes that found no room in the tty for `writeTimeout` (issue 19.1): the port was reopened. */
  writeTimeouts: number;
}

/** Zeroed link counters. */
export function newLinkCounters(): LinkCounters {
  return {
    opens: 0,
    openFailures: 0,
    disconnects: 0,
    bytesIn: 0,
    bytesOut: 0,
    writeDrops: 0,
    writeTimeouts: 0,
  };
}

/** The sum of two links' counters (a port whose link a reload replaced). */
export function addLinkCounters(a: LinkCounters, b: LinkCounters): LinkCounters {
  const sum = newLinkCounters();
  for (const k of Object.keys(sum) as Array<keyof LinkCounters>) sum[k] = a[k] + b[k];
  return sum;
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

/** One entry of `SerialPort.list()` (bindings-cpp's `PortInfo`), the fields matched on. */
export interface ListedPort {
  path: string;
  vendorId?: string | undefined;
  productId?: string | undefined;
  serialNumber?: string | undefined;
  manufacturer?: string | undefined;
  pnpId?: string | undefined;
}

/** Lists serial devices; the default asks the platform binding (udev on Linux). */
export type PortLister = () => Promise<ListedPort[]>;

/** Hex ids compare as 4 lower-case digits: udev says `0403`, other listers `0x403` or `0403`. */
function normId(s: string | undefined): string | undefined {
  return s?.replace(/^0x/i, '').toLowerCase().padStart(4, '0');
}

/** The listed ports a USB match selects (every given field must match; absent fields are free). */
export function matchUsbPorts(ports: readonly ListedPort[], match: UsbMatch): ListedPort[] {
  const vid = normId(match.vendorId);
  const pid = normId(match.productId);
  return ports.filter(
    (p) =>
      (vid === undefined || normId(p.vendorId) === vid) &&
      (pid === undefined || normId(p.productId) === pid) &&
      (match.serialNumber === undefined || p.serialNumber === match.serialNumber),
  );
}

/** The platform's port list, loaded on first use: a port given by path never needs it. */
export const listSerialPorts: PortLister = async () => {
  const { autoDetect } = await import('@serialport/bindings-cpp');
  return autoDetect().list();
};

/**
 * The device path of a configured port: its `path` as given (a `/dev/serial/by-id/...` link
 * is opened as is and follows the adapter to whatever ttyUSBn it gets), else the one listed
 * port its USB ids match. No match and several matches are errors that say what to change:
 * two adapters with the same ids must be told apart by serial number or by-id path, never by
 * enumeration order.
 */
export async function resolvePortPath(
  c: SerialPortConfig,
  list: PortLister = listSerialPorts,
): Promise<string> {
  if (c.path !== undefined) return c.path;
  if (c.usb === undefined) throw new Error(`port ${c.name}: neither a path nor USB ids`);
  const hits = matchUsbPorts(await list(), c.usb);
  if (hits.length === 0) throw new Error(`no USB serial device matches ${JSON.stringify(c.usb)}`);
  if (hits.length > 1) {
    const paths = hits.map((h) => `${h.path}${h.serialNumber ? ` (serial ${h.serialNumber})` : ''}`).sort();
    throw new Error(
      `${hits.length} USB serial devices match ${JSON.stringify(c.usb)}: ${paths.join(', ')}; add usb.serialNumber or give a /dev/serial/by-id path`,
    );
  }
  return hits[0].path;
}

/** Finds the device path of a USB serial adapter (undefined: none or several match). */
export async function findUsbPort(
  match: UsbMatch,
  list: PortLister = listSerialPorts,
): Promise<string | undefined> {
  const hits = matchUsbPorts(await list(), match);
  return hits.length === 1 ? hits[0].path : undefined;
}

export const serialportOpener: PortOpener = async (c) => {
  const path = await resolvePortPath(c);
  // The EOF-aware Linux binding: a vanished tty closes the stream instead of spinning, and a
  // write that finds no room for writeTimeout fails and closes it (issue 19.1).
  return openSerialPort(path, {
    baudRate: c.baud,
    // The character format (issue 20: Modbus lines are often 8E1 or 8N2).
    dataBits: c.dataBits ?? 8,
    parity: c.parity ?? 'none',
    stopBits: c.stopBits ?? 1,
    highWaterMark: 64 * 1024,
    writeTimeoutMs: c.writeTimeoutMs,
  });
};

export class SerialLink {
  readonly counters: LinkCounters = newLinkCounters();
  state: LinkState = 'waiting';
  lastError: string | undefined;
  /** Since when the port is in its current state (ms since the epoch). */
  since = Date.now();
  private stream: Duplex | undefined;
  private attempts = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly opener: PortOpener;
  private openedPath: string | undefined;
  /** The open port is being closed to be opened again at once (reopen()). */
  private reopening = false;

  constructor(private readonly o: SerialLinkOptions) {
    this.opener = o.opener ?? serialportOpener;
  }

  /**
   * The port as every log line names it: `port` its configured name, `path` its device path
   * (for a `usb:` port, the one it was last opened at).
   */
  get name(): string {
    return this.o.config.name;
  }

  get path(): string | undefined {
    return this.o.config.path ?? this.openedPath;
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

  /**
   * Closes the open port and opens it again at once: the device stayed silent (issue 19.2). Not
   * a disconnect: counted by the session, logged by it once per silent spell.
   */
  reopen(): void {
    const s = this.stream;
    if (this.stopped || this.state !== 'open' || s === undefined) return;
    this.reopening = true;
    closeStream(s);
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
        closeStream(s);
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
      // A reopen that could not open is an ordinary open failure from here on.
      this.reopening = false;
      this.counters.openFailures++;
      const msg = (e as Error).message;
      // The first failure, then one line per change of reason: a missing adapter is not news every 5 s.
      if (this.lastError !== msg)
        this.o.log.log('warn', 'port-open-failed', { port: this.name, path: this.path, error: msg });
      this.lastError = msg;
      this.retry();
      return;
    }
    if (this.stopped) {
      stream.destroy();
      return;
    }
    this.stream = stream;
    // serialport's stream knows the device a `usb:` match resolved to.
    const opened = (stream as { path?: unknown }).path;
    if (typeof opened === 'string') this.openedPath = opened;
    this.attempts = 0;
    this.lastError = undefined;
    this.counters.opens++;
    this.setState('open');
    const reopened = this.reopening;
    this.reopening = false;
    let gone = false;
    const lost = (why: 'error' | 'closed' | 'end of stream', error?: string) => {
      if (gone) return;
      gone = true;
      if (this.stream === stream) this.stream = undefined;
      if (!stream.destroyed) stream.destroy();
      if (this.stopped) return;
      if (this.reopening) {
        this.o.log.log('debug', 'port-reopen', { port: this.name, path: this.path });
      } else {
        this.counters.disconnects++;
        this.o.log.log('warn', 'port-lost', { port: this.name, path: this.path, reason: why, error });
      }
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
      if ((e as { code?: unknown }).code === 'ETIMEDOUT') this.counters.writeTimeouts++;
      lost('error', e.message);
    });
    stream.on('close', () => lost('closed'));
    stream.on('end', () => lost('end of stream'));
    // A reopen for silence is the session's news (logged once per spell), not this line's.
    this.o.log.log(reopened ? 'debug' : 'info', 'port-open', {
      port: this.name,
      path: this.path,
      baud: this.o.config.baud,
      ...(reopened ? { reopened: 'silent' } : {}),
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

/** A serialport stream closes its descriptor by close(); other duplexes by destroy(). */
function closeStream(s: Duplex): void {
  const port = s as Duplex & { isOpen?: boolean; close?: (cb: () => void) => void };
  if (port.isOpen === true && typeof port.close === 'function') port.close(() => undefined);
  else s.destroy();
}
