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

  it('a path that is not there is an open error, not a hang', async () => {
    await expect(within(openSerialPort(join(dir, 'no-such-tty')), 5000, 'open')).rejects.toThrow(
      /ENOENT|No such file/,
    );
  });
});
