/**
 * Opening a serial port so that a vanished device is reported, not spun on.
 *
 * serialport 13 on Linux (bindings-cpp unix-read.js) retries a read that returns 0 bytes at once
 * and forever: `if (bytesRead === 0) return unixRead(...)`. A tty read returns 0 when the other
 * side is gone (a pty whose master closed, a USB adapter pulled out), so instead of a 'close'
 * event the process spins at full CPU on a dead descriptor, whether the poller's POLLERR or the
 * read wins the race decides which. In raw mode with O_NONBLOCK a live tty never reads 0 bytes
 * (no data is EAGAIN), so here a 0-byte read is a disconnect, and the stream closes with a
 * DisconnectedError like any other unplug.
 */

import { read as fsRead } from 'node:fs';
import { promisify } from 'node:util';
import {
  BindingsError,
  LinuxBinding,
  type LinuxOpenOptions,
  type LinuxPortBinding,
  type LinuxSetOptions,
} from '@serialport/bindings-cpp';

// @serialport/bindings-interface ships types its package exports do not point at: name them from the binding.
type UpdateOptions = Parameters<LinuxPortBinding['update']>[0];

import { SerialPortStream } from '@serialport/stream';
import { SerialPort } from 'serialport';

const readAsync = promisify(fsRead);

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
      try {
        const { bytesRead } = await readAsync(fd, buffer, offset, length, null);
        if (bytesRead === 0) {
          throw Object.assign(new Error('end of file on the tty: the other side is gone'), {
            code: 'EOF',
            disconnect: true,
          });
        }
        return { buffer, bytesRead };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw e;
        if (!this.inner.isOpen) throw new BindingsError('Port is not open', { canceled: true });
        await new Promise<void>((resolve, reject) =>
          this.inner.poller.once('readable', (err?: Error | null) => (err ? reject(err) : resolve())),
        );
      }
    }
  }
}

export const EofAwareLinuxBinding: {
  list: typeof LinuxBinding.list;
  open(options: LinuxOpenOptions): Promise<EofAwarePortBinding>;
} = {
  list: () => LinuxBinding.list(),
  async open(options: LinuxOpenOptions) {
    return new EofAwarePortBinding(await LinuxBinding.open(options));
  },
};

/** A serial port stream (not yet open); on Linux one that closes when the device goes away. */
export function createSerialPort(path: string, baudRate = 115200): SerialPortStream {
  if (process.platform === 'linux') {
    return new SerialPortStream({ binding: EofAwareLinuxBinding, path, baudRate, autoOpen: false });
  }
  return new SerialPort({ path, baudRate, autoOpen: false });
}
