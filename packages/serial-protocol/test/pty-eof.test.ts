/**
 * The bug the node subpath exists for, on a real pseudo-terminal: socat holds both masters; when
 * it dies, the slave reads 0 bytes, and the port must close as disconnected (stock serialport 13
 * retries that read for ever instead).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SerialPortStream } from '@serialport/stream';
import { afterAll, describe, expect, it } from 'vitest';
import { openSerialPort } from '../src/node/index.ts';
import { closePort as close, hasSocat, linux, socatPair, within } from './pty-helpers.ts';

if (!hasSocat)
  console.warn('serial-protocol pty tests skipped: socat is not installed (apt-get install socat)');
if (!linux) console.warn('serial-protocol pty tests skipped: the EOF-aware binding is Linux only');

const dir = mkdtempSync(join(tmpdir(), 'sp-pty-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasSocat || !linux)('openSerialPort on a real pty (socat)', () => {
  it('bytes flow both ways; when the other side vanishes the port closes as disconnected', async () => {
    const a = join(dir, 'ttyA');
    const b = join(dir, 'ttyB');
    const { child, exited } = await socatPair(a, b);
    const ports: SerialPortStream[] = [];
    try {
      const pa = await openSerialPort(a);
      const pb = await openSerialPort(b, { baudRate: 9600, highWaterMark: 1024 });
      ports.push(pa, pb);
      // A write racing the hang-up may fail with EBADF/EIO: expected here, not a test error.
      pa.on('error', () => {});
      pb.on('error', () => {});

      const got = new Promise<string>((resolve) => {
        let s = '';
        pb.on('data', (d: Buffer) => {
          s += d.toString('latin1');
          if (s.length >= 5) resolve(s);
        });
      });
      pa.write('hello');
      expect(await within(got, 5000, 'data through the pty')).toBe('hello');

      const closed = new Promise<boolean>((resolve) =>
        pb.once('close', (e: { disconnected?: boolean } | null) => resolve(e?.disconnected === true)),
      );
      child.kill('SIGKILL'); // no goodbye: the masters just close, as a pulled adapter would
      await within(exited, 5000, 'socat exit');
      expect(await within(closed, 5000, 'port closed after the pty vanished')).toBe(true);
      expect(pb.isOpen).toBe(false);
    } finally {
      child.kill('SIGKILL');
      for (const p of ports) await close(p);
    }
  });

  it('issue 19: writes racing the hang-up: every round, the port still closes as disconnected (after a bare close when a write failed first)', async () => {
    // @serialport/stream answers a failed write (EIO, EBADF on the vanished tty) twice: it closes
    // the port as disconnected and fails the write, and the failed write makes Node destroy the
    // stream, which emits a bare 'close' first. Whoever waits for the disconnect must look past
    // it (docs/serialport-upstream.md, section 2): here, that the disconnect always comes.
    const rounds = 10;
    let bareFirst = 0;
    for (let i = 0; i < rounds; i++) {
      const a = join(dir, `ttyW${i}`);
      const { child, exited } = await socatPair(a, join(dir, `ttyW${i}b`));
      const port = await openSerialPort(a);
      const closes: Array<boolean> = [];
      try {
        port.on('error', () => {});
        const disconnected = new Promise<void>((resolve) =>
          port.on('close', (e: { disconnected?: boolean } | null) => {
            closes.push(e?.disconnected === true);
            if (e?.disconnected === true) resolve();
          }),
        );
        port.on('data', () => {});
        const writer = setInterval(() => {
          if (port.isOpen) port.write(Buffer.alloc(16));
        }, 1);
        try {
          // A few writes go through first; then the masters close under them.
          await new Promise<void>((resolve) => port.write(Buffer.alloc(16), () => resolve()));
          child.kill('SIGKILL');
          await within(exited, 5000, 'socat exit');
          await within(disconnected, 5000, `round ${i}: the port closing as disconnected`);
        } finally {
          clearInterval(writer);
        }
        expect(port.isOpen).toBe(false);
        if (closes[0] === false) bareFirst++;
      } finally {
        child.kill('SIGKILL');
        await close(port);
      }
    }
    console.log(`pty-eof: ${bareFirst} of ${rounds} rounds had a bare close before the disconnect`);
  });

  it('a path that is not there is an open error, not a hang', async () => {
    await expect(within(openSerialPort(join(dir, 'no-such-tty')), 5000, 'open')).rejects.toThrow(
      /ENOENT|No such file/,
    );
  });
});
