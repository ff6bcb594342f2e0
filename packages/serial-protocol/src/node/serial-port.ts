/**
 * Opening a serial port so that a vanished device is reported, not spun on, and a port waits
 * for reading and writing at the same time.
 *
 * serialport 13 on Linux (bindings-cpp unix-read.js) retries a read that returns 0 bytes at once
 * and for ever: `if (bytesRead === 0) return unixRead(...)`. A tty read returns 0 when the other
 * side is gone (a pty whose master closed, a USB adapter pulled out), so instead of a 'close'
 * event the process spins at full CPU on a dead descriptor; whether the poller's POLLERR or the
 * read wins the race decides which. In raw mode with O_NONBLOCK a live tty never reads 0 bytes
 * (no data is EAGAIN), so here a 0-byte read is a disconnect: the stream closes with a
 * DisconnectedError like any other unplug, and its owner can reopen it.
 *
 * Its poller (bindings-cpp src/poller.cpp) hands `uv_poll_start` only the event just asked
 * for, and uv_poll_start replaces what the descriptor is watched for: a read that parks while a
 * write waits for room takes the write's EPOLLOUT away, and a write that parks takes the read's
 * EPOLLIN (issue 19; docs/serialport-upstream.md). The write then waits until some byte happens
 * to arrive, which on a quiet line is never. So reads and writes here wait through one
 * `PollInterest` that always asks for both directions while both wait, and a write that makes
 * no progress for `writeTimeoutMs` fails as a disconnect: the port closes and its owner reopens it.
 */

import { read as fsRead, write as fsWrite } from 'node:fs';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import {
  BindingsError,
  LinuxBinding,
  type LinuxOpenOptions,
  type LinuxPortBinding,
  type LinuxSetOptions,
} from '@serialport/bindings-cpp';
import { SerialPortStream } from '@serialport/stream';
import type { SerialPort } from 'serialport';

// @serialport/bindings-interface ships types its package exports do not point at: name them from the binding.
type UpdateOptions = Parameters<LinuxPortBinding['update']>[0];
type Poller = LinuxPortBinding['poller'];

const readAsync = promisify(fsRead);
const writeAsync = promisify(fsWrite);

/** bindings-cpp's poller flags (its EVENTS). */
const READABLE = 0b01;
const WRITABLE = 0b10;

/** How long a write may wait for room before it fails (`writeTimeoutMs`' default). */
export const DEFAULT_WRITE_TIMEOUT_MS = 5000;

/** The longest `writeTimeoutMs`: what setTimeout holds (beyond it, a timer fires at once). */
const MAX_WRITE_TIMEOUT_MS = 2 ** 31 - 1;

function checkWriteTimeout(ms: number): void {
  if (!Number.isInteger(ms) || ms < 1 || ms > MAX_WRITE_TIMEOUT_MS)
    throw new RangeError(`writeTimeoutMs must be an integer 1..${MAX_WRITE_TIMEOUT_MS} ms; got ${ms}`);
}

/**
 * A 0-byte read on the tty. `disconnect: true` is what @serialport/stream looks for to close the
 * port as disconnected (`close` with `{ disconnected: true }`) instead of emitting a read error.
 */
export class SerialEofError extends Error {
  readonly code = 'EOF';
  readonly disconnect = true;
  constructor() {
    super('end of file on the tty: the other side is gone');
    this.name = 'SerialEofError';
  }
}

/**
 * A write found no room in the tty for `ms`: nobody drains the line (a wedged adapter, a pty whose
 * reader stopped). A disconnect, so the stream closes and its owner reopens the port.
 */
export class SerialWriteTimeoutError extends Error {
  readonly code = 'ETIMEDOUT';
  readonly disconnect = true;
  constructor(readonly ms: number) {
    super(`write made no progress for ${ms} ms: nothing drains the line`);
    this.name = 'SerialWriteTimeoutError';
  }
}

const isRetry = (code: string | undefined) => code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR';

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

/**
 * What one descriptor waits for, asked of the poller as a whole: readable while a read waits,
 * writable while a write waits, both while both do. The native poller re-arms whatever it
 * remembers before it calls back; the listeners here run after that, inside the same callback,
 * and set the interest again from who is waiting, so theirs is what the next epoll_wait sees.
 */
export class PollInterest {
  private readers: Waiter[] = [];
  private writers: Waiter[] = [];
  private armed = -1;
  /** Set once the poller was stopped (the port closed) or failed: every wait fails with it. */
  private ended: Error | undefined;

  constructor(private readonly poller: Poller) {
    // Not `once`: Poller.once would poll for that one flag alone, the bug this class is for.
    poller.on('readable', (err?: Error | null) => this.fire('r', err));
    poller.on('writable', (err?: Error | null) => this.fire('w', err));
  }

  /** Until the descriptor is readable (`'r'`) or writable (`'w'`). */
  wait(direction: 'r' | 'w'): Promise<void> {
    if (this.ended !== undefined) return Promise.reject(this.ended);
    return new Promise<void>((resolve, reject) => {
      (direction === 'r' ? this.readers : this.writers).push({ resolve, reject });
      this.arm();
    });
  }

  /** `wait('w')`, failing with a SerialWriteTimeoutError after `ms`. */
  waitWritable(ms: number): Promise<void> {
    if (this.ended !== undefined) return Promise.reject(this.ended);
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.writers.indexOf(w);
        if (i >= 0) this.writers.splice(i, 1);
        this.arm();
        reject(new SerialWriteTimeoutError(ms));
      }, ms);
      this.writers.push(w);
      this.arm();
    });
  }

  private fire(direction: 'r' | 'w', err: Error | null | undefined): void {
    if (err) {
      // A canceled error is the port closing (Poller.stop/destroy); any other is libuv's poll
      // failing, after which the native side has stopped polling. Either way nothing more comes.
      this.ended ??= err;
      this.armed = 0;
      const all = [...this.readers, ...this.writers];
      this.readers = [];
      this.writers = [];
      for (const w of all) w.reject(err);
      return;
    }
    const list = direction === 'r' ? this.readers : this.writers;
    if (direction === 'r') this.readers = [];
    else this.writers = [];
    // The native side left its own guess armed: ours replaces it whether or not it changed.
    this.armed = -1;
    for (const w of list) w.resolve();
    this.arm();
  }

  private arm(): void {
    if (this.ended !== undefined) return;
    const flags = (this.readers.length > 0 ? READABLE : 0) | (this.writers.length > 0 ? WRITABLE : 0);
    if (flags === this.armed) return;
    this.armed = flags;
    // 0 stops watching (uv_poll_start with no events is uv_poll_stop).
    this.poller.poll(flags);
  }
}

/**
 * A Linux port binding whose read reports end of file instead of retrying it, whose reads and
 * writes wait through one `PollInterest`, and whose writes give up after `writeTimeoutMs`
 * without progress.
 */
export class EofAwarePortBinding {
  private readonly interest: PollInterest;
  private writing: Promise<void> | undefined;

  constructor(
    private readonly inner: LinuxPortBinding,
    readonly writeTimeoutMs = DEFAULT_WRITE_TIMEOUT_MS,
  ) {
    checkWriteTimeout(writeTimeoutMs);
    this.interest = new PollInterest(inner.poller);
  }
  get openOptions() {
    return this.inner.openOptions;
  }
  get isOpen(): boolean {
    return this.inner.isOpen;
  }
  /** The tty's descriptor (null once closed). */
  get fd(): number | null {
    return this.inner.fd;
  }
  close() {
    return this.inner.close();
  }
  update(options: UpdateOptions) {
    return this.inner.update(options);
  }
  set(options: LinuxSetOptions) {
    return this.inner.set(options);
  }
  get() {
    return this.inner.get();
  }
  getBaudRate() {
    return this.inner.getBaudRate();
  }
  flush() {
    return this.inner.flush();
  }
  async drain(): Promise<void> {
    await this.writing;
    // The inner binding has no write of its own in flight: this is tcdrain(2).
    return this.inner.drain();
  }

  write(buffer: Buffer): Promise<void> {
    if (!Buffer.isBuffer(buffer)) return Promise.reject(new TypeError('"buffer" is not a Buffer'));
    if (!this.inner.isOpen) return Promise.reject(new Error('Port is not open'));
    const op = this.writeAll(buffer).finally(() => {
      if (this.writing === op) this.writing = undefined;
    });
    this.writing = op;
    return op;
  }

  private async writeAll(buffer: Buffer): Promise<void> {
    let offset = 0;
    while (offset < buffer.length) {
      const fd = this.inner.fd;
      if (!this.inner.isOpen || fd === null) throw new BindingsError('Port is not open', { canceled: true });
      try {
        const { bytesWritten } = await writeAsync(fd, buffer, offset, buffer.length - offset);
        offset += bytesWritten;
        continue;
      } catch (e) {
        const err = e as NodeJS.ErrnoException & { disconnect?: boolean };
        if (!isRetry(err.code)) {
          // As bindings-cpp: a descriptor gone (EBADF), a device gone (ENXIO, EIO) is an unplug.
          if (err.code === 'EBADF' || err.code === 'ENXIO' || err.code === 'EIO' || err.errno === -1)
            err.disconnect = true;
          throw err;
        }
        if (err.code === 'EINTR') continue;
      }
      if (!this.inner.isOpen) throw new BindingsError('Port is not open', { canceled: true });
      // The clock restarts with every byte written: a slow line is fine, a stuck one is not.
      await this.interest.waitWritable(this.writeTimeoutMs);
    }
  }

  async read(buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }> {
    for (;;) {
      const fd = this.inner.fd;
      if (!this.inner.isOpen || fd === null) throw new BindingsError('Port is not open', { canceled: true });
      let bytesRead: number;
      try {
        ({ bytesRead } = await readAsync(fd, buffer, offset, length, null));
      } catch (e) {
        if (!isRetry((e as NodeJS.ErrnoException).code)) throw e;
        if (!this.inner.isOpen) throw new BindingsError('Port is not open', { canceled: true });
        // Park until the fd is readable; close() stops the poller, which wakes this with a
        // canceled error, so a read never outlives its port.
        await this.interest.wait('r');
        continue;
      }
      if (bytesRead === 0) throw new SerialEofError();
      return { buffer, bytesRead };
    }
  }
}

/** Open options of the EOF-aware binding: bindings-cpp's, and the write bound. */
export interface EofAwareOpenOptions extends LinuxOpenOptions {
  /** A write that finds no room for this long fails as a disconnect (default 5000 ms; 1..2^31-1). */
  writeTimeoutMs?: number;
}

/** serialport's Linux binding with the EOF-aware port; pass it as `binding` to SerialPortStream. */
export const EofAwareLinuxBinding: {
  list: typeof LinuxBinding.list;
  open(options: EofAwareOpenOptions): Promise<EofAwarePortBinding>;
} = {
  list: () => LinuxBinding.list(),
  async open(options: EofAwareOpenOptions) {
    const { writeTimeoutMs, ...linux } = options;
    // Refused before the tty is opened, so no descriptor is left behind.
    if (writeTimeoutMs !== undefined) checkWriteTimeout(writeTimeoutMs);
    return new EofAwarePortBinding(await LinuxBinding.open(linux), writeTimeoutMs);
  },
};

export interface SerialPortOptions {
  /** Default 115200. */
  baudRate?: number;
  /** Character format (issue 20: Modbus RTU lines are often 8E1 or 8N2); default 8, none, 1. */
  dataBits?: 5 | 6 | 7 | 8;
  parity?: 'none' | 'even' | 'odd';
  stopBits?: 1 | 2;
  /** Bytes the stream buffers before pausing reads; serialport's default (64 KiB) if absent. */
  highWaterMark?: number;
  /**
   * Linux: a write that finds no room in the tty for this long (no byte accepted) fails with a
   * SerialWriteTimeoutError and the port closes as disconnected. Default 5000 ms.
   */
  writeTimeoutMs?: number;
}

/** A serial port stream, not yet open; on Linux one that closes when the device goes away. */
export function createSerialPort(path: string, options: SerialPortOptions = {}): SerialPortStream {
  const base = {
    path,
    baudRate: options.baudRate ?? 115200,
    dataBits: options.dataBits ?? 8,
    parity: options.parity ?? 'none',
    stopBits: options.stopBits ?? 1,
    autoOpen: false,
  };
  const opts = options.highWaterMark === undefined ? base : { ...base, highWaterMark: options.highWaterMark };
  if (process.platform === 'linux') {
    const linux =
      options.writeTimeoutMs === undefined ? opts : { ...opts, writeTimeoutMs: options.writeTimeoutMs };
    return new SerialPortStream({ ...linux, binding: EofAwareLinuxBinding });
  }
  // Loaded here, not imported above: the umbrella package (its parsers and autodetect) costs
  // 3-5 MB of RSS that Linux, the platform this runs on, never needs.
  const { SerialPort: Port } = createRequire(import.meta.url)('serialport') as {
    SerialPort: typeof SerialPort;
  };
  return new Port(opts);
}

/** `createSerialPort`, opened: rejects with the open error (no such path, permission, busy). */
export async function openSerialPort(
  path: string,
  options: SerialPortOptions = {},
): Promise<SerialPortStream> {
  const port = createSerialPort(path, options);
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  return port;
}
