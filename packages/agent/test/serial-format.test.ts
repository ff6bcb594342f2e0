/**
 * Issue 20.1: the character format a port's config asks for (data bits, parity, stop bits) is
 * what the tty is set to: read back with stty from a real socat pty, as one would by hand. Linux's
 * pty driver keeps a pty at 8 bits without parity whatever it is asked (a pty carries bytes, not
 * bits), so on a pty stty can show the baud rate and the stop bits; the data bits and parity are
 * checked as the binding was asked for them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSocatPair, hasSocat } from '@mqtt-edge/firmware-sim';
import type { SerialPortStream } from '@serialport/stream';
import { describe, expect, it } from 'vitest';
import type { SerialPortConfig } from '../src/config.ts';
import { serialportOpener } from '../src/serial-link.ts';

const ready = hasSocat() && process.platform === 'linux';
if (!ready) console.warn('serial-format: socat missing (or not Linux), skipped (apt-get install socat)');

describe.skipIf(!ready)('issue 20.1: a port opens with its configured character format', () => {
  it('issue 20.1: 7 data bits, even parity, 2 stop bits at 9600 baud are what stty reads on the tty', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fmt-'));
    const pair = await createSocatPair(path.join(dir, 'far'), path.join(dir, 'tty'));
    try {
      const config: SerialPortConfig = {
        name: 'p',
        path: pair.agentPath,
        baud: 9600,
        framing: 'native',
        writeTimeoutMs: 5000,
        dataBits: 7,
        parity: 'even',
        stopBits: 2,
      };
      const port = (await serialportOpener(config)) as SerialPortStream;
      try {
        const stty = spawnSync('stty', ['-F', pair.agentPath, '-a'], { encoding: 'utf8' });
        expect(stty.status, stty.stderr).toBe(0);
        const flags = stty.stdout.split(/[\s;]+/);
        expect(flags).toContain('cstopb');
        expect(stty.stdout).toMatch(/speed 9600 baud/);
        expect(port.settings).toMatchObject({ baudRate: 9600, dataBits: 7, parity: 'even', stopBits: 2 });
      } finally {
        await new Promise<void>((resolve) => port.close(() => resolve()));
      }
    } finally {
      await pair.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
