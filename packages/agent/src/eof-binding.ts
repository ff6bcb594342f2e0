/**
 * serialport 13 on Linux retries a 0-byte read at once and for ever (bindings-cpp unix-read:
 * `if (bytesRead === 0) return unixRead(...)`). A tty reads 0 bytes when its other side is gone
 * (a USB adapter pulled out, a pty whose master closed), so an unplug can leave the agent
 * spinning on a dead descriptor instead of seeing 'close'. In raw mode with O_NONBLOCK a live
 * tty never reads 0 (no data is EAGAIN), so this binding turns a 0-byte read into a disconnect;
 * the stream then closes like any other unplug and the link reopens it with backoff.
 * (firmware-sim has the same fix for its ports; one shared module is asked for in the report.)
 */
import { read } from 'node:fs';
import { promisify } from 'node:util';
import {
  BindingsError,
  LinuxBinding,
  type LinuxOpenOptions,
  type LinuxPortBinding,
} from '@serialport/bindings-cpp';

const readAsync = promisify(read);

function wrap(inner: LinuxPortBinding): LinuxPortBinding {
  const eofAware = async (buffer: Buffer, offset: number, length: number) => {
    for (;;) {
      const fd = inner.fd;
      if (!inner.isOpen || fd === null) throw new BindingsError('Port is not open', { canceled: true });
      try {
        const { bytesRead } = await readAsync(fd, buffer, offset, length, null);
        if (bytesRead === 0)
          throw Object.assign(new Error('end of file on the tty: the device is gone'), { disconnect: true });
        return { buffer, bytesRead };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') throw e;
        if (!inner.isOpen) throw new BindingsError('Port is not open', { canceled: true });
        await new Promise<void>((resolve, reject) =>
          inner.poller.once('readable', (err?: Error | null) => (err ? reject(err) : resolve())),
        );
      }
    }
  };
  // Everything else is the binding's own: a proxy keeps its getters (isOpen, fd) live.
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'read') return eofAware;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

export const EofAwareBinding = {
  list: () => LinuxBinding.list(),
  async open(options: LinuxOpenOptions): Promise<LinuxPortBinding> {
    return wrap(await LinuxBinding.open(options));
  },
};
