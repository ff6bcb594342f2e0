import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LinuxPortBinding } from '@serialport/bindings-cpp';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createSerialPort,
  EofAwareLinuxBinding,
  EofAwarePortBinding,
  PollInterest,
  SerialEofError,
  SerialWriteTimeoutError,
} from '../src/node/index.ts';

// A FIFO gives the two read outcomes of a tty without needing one: EAGAIN while the writer is
// there and silent, 0 bytes (EOF) once the writer is gone.
const dir = mkdtempSync(join(tmpdir(), 'fwsim-eof-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * bindings-cpp's poller as far as the binding uses it: events, and `poll(flags)`, the interest
 * asked for (1 readable, 2 writable; each call replaces the last, as uv_poll_start does).
 */
class FakePoller extends EventEmitter {
  readonly polls: number[] = [];
  private waiting: Array<{ flags: number; resolve(): void }> = [];
  get interest(): number {
    return this.polls.at(-1) ?? 0;
  }
  poll(flags: number): void {
    this.polls.push(flags);
    const met = this.waiting.filter((w) => (w.flags & flags) === w.flags);
    this.waiting = this.waiting.filter((w) => !met.includes(w));
    for (const w of met) w.resolve();
  }
  /** Until the interest includes `flags`. */
  armed(flags: number): Promise<void> {
    if ((this.interest & flags) === flags) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push({ flags, resolve }));
  }
}

function fakeInner(fd: number, writeTimeoutMs?: number) {
  const poller = new FakePoller();
  const inner = { fd, isOpen: true, poller };
  return {
    inner,
    poller,
    port: new EofAwarePortBinding(inner as unknown as LinuxPortBinding, writeTimeoutMs),
  };
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
    const pending = port.read(buf, 0, 16);
    await poller.armed(1);
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
    const pending = port.read(Buffer.alloc(4), 0, 4);
    await poller.armed(1);
    // What bindings-cpp's close() does: stop the poller, which emits a canceled 'readable'.
    inner.isOpen = false;
    poller.emit('readable', Object.assign(new Error('Canceled'), { canceled: true }));
    await expect(pending).rejects.toMatchObject({ canceled: true });
    // Nothing asked of the poller after it was stopped, and a later wait fails at once.
    const polls = poller.polls.length;
    await expect(port.read(Buffer.alloc(4), 0, 4)).rejects.toMatchObject({ canceled: true });
    expect(poller.polls.length).toBe(polls);
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
    expect(poller.polls).toEqual([]);
    closeSync(rfd);
  });

  it('any other read error (a descriptor gone: EBADF) is thrown as is, not retried', async () => {
    // Far above any descriptor this process holds (a just-closed one could be reused meanwhile).
    const { port, poller } = fakeInner(0x3fff_ffff);
    await expect(port.read(Buffer.alloc(4), 0, 4)).rejects.toMatchObject({ code: 'EBADF' });
    expect(poller.polls).toEqual([]);
  });
});

describe('issue 19.1: PollInterest and the bounded write', () => {
  it('issue 19.1: a read and a write waiting at once are asked for together; each wake-up leaves the other armed', async () => {
    const poller = new FakePoller();
    const interest = new PollInterest(poller as unknown as LinuxPortBinding['poller']);
    const read = interest.wait('r');
    expect(poller.interest).toBe(1);
    const write = interest.waitWritable(10_000);
    expect(poller.interest).toBe(3);
    // The native poller re-arms its own guess before it calls back; the listener sets it again.
    poller.emit('readable', null);
    await read;
    expect(poller.interest).toBe(2);
    const read2 = interest.wait('r');
    expect(poller.interest).toBe(3);
    poller.emit('writable', null);
    await write;
    expect(poller.interest).toBe(1);
    poller.emit('readable', null);
    await read2;
    // Nobody waits: nothing is watched (a tty is almost always writable; watching it would spin).
    expect(poller.interest).toBe(0);
  });

  it('issue 19.1: a poller error fails every waiter and every later wait', async () => {
    const poller = new FakePoller();
    const interest = new PollInterest(poller as unknown as LinuxPortBinding['poller']);
    const r = interest.wait('r');
    const w = interest.waitWritable(10_000);
    const boom = new Error('EBADF');
    poller.emit('readable', boom);
    await expect(r).rejects.toBe(boom);
    await expect(w).rejects.toBe(boom);
    await expect(interest.wait('r')).rejects.toBe(boom);
  });

  it('issue 19.1: a write parks on a full descriptor and finishes as room appears, however long it takes while it makes progress', async () => {
    const fifo = join(dir, 'w1');
    execFileSync('mkfifo', [fifo]);
    // O_RDWR: this descriptor is its own reader, so the pipe's 64 KiB fill and drain from here.
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const { port, poller } = fakeInner(fd, 500);
    const big = Buffer.alloc(1024 * 1024, 7);
    const t0 = Date.now();
    let done = false;
    const writing = port.write(big).then(() => {
      done = true;
    });
    const sink = Buffer.alloc(64 * 1024);
    let drained = 0;
    // Room every 60 ms (a slow line): about a second in all, twice the 500 ms bound, each wait
    // far under it.
    while (!done) {
      await Promise.race([poller.armed(2), writing]);
      if (done) break;
      await new Promise((r) => setTimeout(r, 60));
      drained += readSync(fd, sink, 0, sink.length, null);
      poller.emit('writable', null);
    }
    expect(Date.now() - t0).toBeGreaterThan(500);
    await writing;
    // What the last drain left in the pipe.
    for (;;) {
      try {
        drained += readSync(fd, sink, 0, sink.length, null);
      } catch {
        break;
      }
    }
    expect(drained).toBe(big.length);
    expect(poller.interest).toBe(0);
    closeSync(fd);
  });

  it('issue 19.1: a write that finds no room for writeTimeoutMs fails with a disconnect, and stops being watched', async () => {
    const fifo = join(dir, 'w2');
    execFileSync('mkfifo', [fifo]);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const { port, poller } = fakeInner(fd, 100);
    const t0 = Date.now();
    const err = await port.write(Buffer.alloc(256 * 1024)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(err).toBeInstanceOf(SerialWriteTimeoutError);
    expect(err).toMatchObject({ code: 'ETIMEDOUT', disconnect: true, ms: 100 });
    expect(poller.interest).toBe(0);
    closeSync(fd);
  });

  it('issue 19.1: a writeTimeoutMs a timer cannot hold (or not a positive integer) is refused at open, before the tty is opened', async () => {
    // bindings-interface's OpenOptions (path, baudRate) do not resolve for the type checker.
    const options = (writeTimeoutMs: number) =>
      ({ path: join(dir, 'no-such-tty'), baudRate: 9600, writeTimeoutMs }) as unknown as Parameters<
        typeof EofAwareLinuxBinding.open
      >[0];
    // setTimeout fires at once past 2^31-1 ms: every write that waited would fail at once.
    for (const ms of [2 ** 31, 0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(EofAwareLinuxBinding.open(options(ms)), `writeTimeoutMs ${ms}`).rejects.toThrow(
        /writeTimeoutMs must be an integer 1\.\.2147483647 ms/,
      );
    }
    // Within the bound, the open itself is what fails here (no such path).
    await expect(EofAwareLinuxBinding.open(options(2 ** 31 - 1))).rejects.toThrow(/no-such-tty|No such file/);
    expect(() => new EofAwarePortBinding({} as LinuxPortBinding, 2 ** 31)).toThrow(RangeError);
  });

  it('issue 19.1: drain waits for the write in flight', async () => {
    const fifo = join(dir, 'w3');
    execFileSync('mkfifo', [fifo]);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const { port, poller, inner } = fakeInner(fd, 10_000);
    const order: string[] = [];
    (inner as unknown as { drain(): Promise<void> }).drain = async () => {
      order.push('tcdrain');
    };
    const writing = port.write(Buffer.alloc(128 * 1024)).then(() => order.push('written'));
    await poller.armed(2);
    const draining = port.drain();
    readSync(fd, Buffer.alloc(128 * 1024), 0, 128 * 1024, null);
    poller.emit('writable', null);
    await Promise.all([writing, draining]);
    expect(order).toEqual(['written', 'tcdrain']);
    closeSync(fd);
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
