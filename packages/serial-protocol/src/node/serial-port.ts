/**
 * Opening a serial port so that a vanished device is reported, not spun on.
 *
 * serialport 13 on Linux (bindings-cpp unix-read.js) retries a read that returns 0 bytes at once
 * and for ever: `if (bytesRead === 0) return unixRead(...)`. A tty read returns 0 when the other
 * side is gone (a pty whose master closed, a USB adapter pulled out), so instead of a 'close'
 * event the process spins at full CPU on a dead descriptor; whether the poller's POLLERR or the
 * read wins the race decides which. In raw mode with O_NONBLOCK a live tty never reads 0 bytes
 * (no data is EAGAIN), so here a 0-byte read is a disconnect: the stream closes with a
 * DisconnectedError like any other unplug, and its owner can reopen it.
 */

import { read as fsRead } from 'node:fs';
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

const readAsync = promisify(fsRead);

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

/** A Linux port binding whose read reports end of file instead of retrying it. */
export class EofAwarePortBinding {
  constructor(private readonly inner: LinuxPortBinding) {}
  get openOptions() {
    return this.inner.openOptions;
  }
  get isOpen(): boolean {
    return this.inner.isOpen;
  }
  close() {
    return this.inner.close();
  }
  write(buffer: Buffer) {
    return this.inner.write(buffer);
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
  drain() {
    return this.inner.drain();
  }

  async read(buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }> {
    for (;;) {
      const fd = this.inner.fd;
      if (!this.inner.isOpen || fd === null) throw new BindingsError('Port is not open', { canceled: true });
      let bytesRead: number;
      try {
        ({ bytesRead } = await readAsync(fd, buffer, offset, length, null));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw e;
        if (!this.inner.isOpen) throw new BindingsError('Port is not open', { canceled: true });
        // Park until the fd is readable; close() stops the poller, which wakes this with a
        // canceled error, so a read never outlives its port.
        await new Promise<void>((resolve, reject) =>
          this.inner.poller.once('readable', (err?: Error | null) => (err ? reject(err) : resolve())),
        );
        continue;
      }
      if (bytesRead === 0) throw new SerialEofError();
      return { buffer, bytesRead };
    }
  }
}

/** serialport's Linux binding with the EOF-aware read; pass it as `binding` to SerialPortStream. */
export const EofAwareLinuxBinding: {
  list: typeof LinuxBinding.list;
  open(options: LinuxOpenOptions): Promise<EofAwarePortBinding>;
} = {
  list: () => LinuxBinding.list(),
  async open(options: LinuxOpenOptions) {
    return new EofAwarePortBinding(await LinuxBinding.open(options));
  },
};

export interface SerialPortOptions {
  /** Default 115200. */
  baudRate?: number;
  /** Bytes the stream buffers before pausing reads; serialport's default (64 KiB) if absent. */
  highWaterMark?: number;
}

/** A serial port stream, not yet open; on Linux one that closes when the device goes away. */
export function createSerialPort(path: string, options: SerialPortOptions = {}): SerialPortStream {
  const base = { path, baudRate: options.baudRate ?? 115200, autoOpen: false };
  const opts = options.highWaterMark === undefined ? base : { ...base, highWaterMark: options.highWaterMark };
  if (process.platform === 'linux') return new SerialPortStream({ ...opts, binding: EofAwareLinuxBinding });
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
