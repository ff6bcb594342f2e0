import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LinuxPortBinding } from '@serialport/bindings-cpp';
import { afterAll, describe, expect, it } from 'vitest';
import { createSerialPort, EofAwarePortBinding, SerialEofError } from '../src/node/index.ts';

// A FIFO gives the two read outcomes of a tty without needing one: EAGAIN while the writer is
// there and silent, 0 bytes (EOF) once the writer is gone.
const dir = mkdtempSync(join(tmpdir(), 'fwsim-eof-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fakeInner(fd: number) {
  const poller = new EventEmitter();
  const inner = { fd, isOpen: true, poller };
  return { inner, poller, port: new EofAwarePortBinding(inner as unknown as LinuxPortBinding) };
}

describe('EofAwarePortBinding.read', () => {
  it('returns data, and on EAGAIN waits for the poller instead of retrying', async () => {
    const fifo = join(dir, 'f1');
    execFileSync('mkfifo', [fifo]);
    // Non-blocking like a serial port: no data is EAGAIN. O_RDWR keeps a writer, so never EOF.
    const rfd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const { port, poller } = fakeInner(rfd);
    const buf = Buffer.alloc(16);
    writeSync(rfd, 'hi');
    expect((await port.read(buf, 0, 16)).bytesRead).toBe(2);

    // Nothing to read: the read parks on the poller instead of spinning.
    const parked = new Promise<void>((resolve) =>
      poller.on('newListener', (event: string) => {
        if (event === 'readable') resolve();
      }),
    );
    const pending = port.read(buf, 0, 16);
    await parked;
    writeSync(rfd, 'ok');
    poller.emit('readable');
    expect((await pending).bytesRead).toBe(2);
    closeSync(rfd);
  });

  it('EOF is a disconnect error, not an endless retry', async () => {
    const fifo = join(dir, 'f2');
    execFileSync('mkfifo', [fifo]);
    const rfd = openSync(fifo, 'r+');
    const wfd = openSync(fifo, 'w');
    const { port } = fakeInner(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
    closeSync(rfd);
    writeSync(wfd, 'x');
    closeSync(wfd); // no writer left: after the byte, reads return 0
    const buf = Buffer.alloc(16);
    expect((await port.read(buf, 0, 16)).bytesRead).toBe(1);
    const eof = await port.read(buf, 0, 16).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(eof).toBeInstanceOf(SerialEofError);
    expect(eof).toMatchObject({ disconnect: true, code: 'EOF' });
  });

  it('a closed port is a canceled read', async () => {
    const { port, inner } = fakeInner(-1);
    inner.isOpen = false;
    await expect(port.read(Buffer.alloc(1), 0, 1)).rejects.toMatchObject({ canceled: true });
  });

  it('a port closed while a read is parked: the poller wakes it with its error, no retry', async () => {
    const fifo = join(dir, 'f3');
    execFileSync('mkfifo', [fifo]);
    const rfd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const { port, poller, inner } = fakeInner(rfd);
    const parked = new Promise<void>((resolve) =>
      poller.on('newListener', (event: string) => {
        if (event === 'readable') resolve();
      }),
    );
    const pending = port.read(Buffer.alloc(4), 0, 4);
    await parked;
    // What bindings-cpp's close() does: stop the poller, which emits a canceled 'readable'.
    inner.isOpen = false;
    poller.emit('readable', Object.assign(new Error('Canceled'), { canceled: true }));
    await expect(pending).rejects.toMatchObject({ canceled: true });
    expect(poller.listenerCount('readable')).toBe(0);
    closeSync(rfd);
  });

  it('EAGAIN after the port closed under the read is a canceled read, not a wait for ever', async () => {
    const fifo = join(dir, 'f4');
    execFileSync('mkfifo', [fifo]);
    const rfd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const { port, poller, inner } = fakeInner(rfd);
    // isOpen turns false between the descriptor check and the EAGAIN (close racing the read).
    let checks = 0;
    Object.defineProperty(inner, 'isOpen', { get: () => checks++ === 0 });
    await expect(port.read(Buffer.alloc(4), 0, 4)).rejects.toMatchObject({ canceled: true });
    expect(poller.listenerCount('readable')).toBe(0);
    closeSync(rfd);
  });

  it('any other read error (a descriptor gone: EBADF) is thrown as is, not retried', async () => {
    // Far above any descriptor this process holds (a just-closed one could be reused meanwhile).
    const { port, poller } = fakeInner(0x3fff_ffff);
    await expect(port.read(Buffer.alloc(4), 0, 4)).rejects.toMatchObject({ code: 'EBADF' });
    expect(poller.listenerCount('readable')).toBe(0);
  });
});

describe('createSerialPort', () => {
  it('off Linux it loads serialport on demand and returns its SerialPort, not yet open', async () => {
    const platform = Object.getOwnPropertyDescriptor(process, 'platform')!;
    Object.defineProperty(process, 'platform', { ...platform, value: 'darwin' });
    try {
      const port = createSerialPort(join(dir, 'no-such-tty'), { baudRate: 9600 });
      const { SerialPort } = await import('serialport');
      expect(port).toBeInstanceOf(SerialPort);
      expect(port.isOpen).toBe(false);
      expect(port.baudRate).toBe(9600);
    } finally {
      Object.defineProperty(process, 'platform', platform);
    }
  });

  it.skipIf(process.platform !== 'linux')(
    'on Linux it is a SerialPortStream over the EOF-aware binding',
    async () => {
      const { SerialPortStream } = await import('@serialport/stream');
      const port = createSerialPort(join(dir, 'no-such-tty'));
      expect(port).toBeInstanceOf(SerialPortStream);
      expect(port.isOpen).toBe(false);
    },
  );
});
