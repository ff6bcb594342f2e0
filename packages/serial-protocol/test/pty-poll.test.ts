/**
 * Issue 19.1 on real pseudo-terminals: a port waits for "readable" and "writable" at the same
 * time. @serialport/bindings-cpp 13's poller hands uv_poll_start only the flag just asked for,
 * so a read that parks after a write parked takes the write's EPOLLOUT away (and the other way
 * round): the write then waits for ever although the other side has read everything. What the
 * epoll set watches is read from /proc, as in the field report.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LinuxBinding } from '@serialport/bindings-cpp';
import { SerialPortStream } from '@serialport/stream';
import { afterAll, describe, expect, it } from 'vitest';
import { openSerialPort, SerialWriteTimeoutError } from '../src/node/index.ts';
import {
  closePort,
  epollInterest,
  hasPython,
  hasSocat,
  linux,
  ptyWithFarEnd,
  socatPair,
  until,
  within,
} from './pty-helpers.ts';

if (!hasSocat) console.warn('serial-protocol pty poll tests skipped: socat is not installed');
if (!linux) console.warn('serial-protocol pty poll tests skipped: the binding is Linux only');
if (!hasPython) console.warn('issue 19.1 rounds test skipped: python3 (its pty module) is missing');

const dir = mkdtempSync(join(tmpdir(), 'sp-poll-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** More than the two ptys and socat buffer between them (about 32 KiB measured): the write parks. */
const BIG = 256 * 1024;
const ROUNDS = 20;

function fdOf(port: SerialPortStream): number {
  const fd = (port.port as unknown as { fd: number | null } | undefined)?.fd;
  if (typeof fd !== 'number') throw new Error('port has no descriptor');
  return fd;
}

const watched = (fd: number, want: { in: boolean; out: boolean }) => () => {
  const i = epollInterest(fd);
  return i !== undefined && i.in === want.in && i.out === want.out;
};

describe.skipIf(!hasSocat || !linux)('issue 19.1: the port binding on real ptys', () => {
  it.skipIf(!hasPython)(
    `issue 19.1: ${ROUNDS} rounds of a write parked for room while the read side parks again: both stay watched, the byte read meanwhile arrives, the write completes once the far end reads`,
    async () => {
      const far = await ptyWithFarEnd();
      let pa: SerialPortStream | undefined;
      try {
        pa = await openSerialPort(far.path);
        // On failure a parked write is canceled by the close below: not this test's error.
        pa.on('error', () => {});
        const fd = fdOf(pa);
        let fromFar = '';
        const onData = (d: Buffer) => {
          fromFar += d.toString('latin1');
        };
        for (let round = 0; round < ROUNDS; round++) {
          const port = pa;
          const written = new Promise<void>((resolve, reject) =>
            port.write(Buffer.alloc(BIG, round), (e) => (e ? reject(e) : resolve())),
          );
          // The write met a full pty and waits for room: the tty is watched for output.
          expect(
            await until(() => epollInterest(fd)?.out === true, 5000),
            `round ${round}: write parked`,
          ).toBe(true);
          if (round === 0) {
            // The read side starts now and parks (nothing to read).
            pa.on('data', onData);
          } else {
            // A byte from the far end wakes the parked read, which parks again.
            const before = fromFar.length;
            far.write(Buffer.from('x'));
            expect(
              await until(() => fromFar.length > before, 5000),
              `round ${round}: a byte arrives while the write waits`,
            ).toBe(true);
          }
          expect(
            await until(watched(fd, { in: true, out: true }), 5000),
            `round ${round}: read parked, write still waiting: watched for both`,
          ).toBe(true);
          // The far end reads: room appears, and the write must finish.
          const target = (round + 1) * BIG;
          far.reading(true);
          await within(written, 10_000, `round ${round}: the write after the far end read`);
          expect(await until(() => far.received >= target, 10_000), `round ${round}: every byte`).toBe(true);
          far.reading(false);
          expect(far.received).toBe(target);
        }
        expect(fromFar).toBe('x'.repeat(ROUNDS - 1));
      } finally {
        if (pa !== undefined) await closePort(pa);
        await far.close();
      }
    },
    120_000,
  );

  it('issue 19.1: a write that makes no progress for writeTimeoutMs fails (a disconnect), and the port closes', async () => {
    const a = join(dir, 'ttyC');
    const b = join(dir, 'ttyD');
    const { child } = await socatPair(a, b);
    const ports: SerialPortStream[] = [];
    try {
      const pa = await openSerialPort(a, { writeTimeoutMs: 300 });
      const pb = await openSerialPort(b, { highWaterMark: 1024 });
      ports.push(pa, pb);
      pb.pause(); // the other side never reads
      const errors: Error[] = [];
      pa.on('error', (e: Error) => errors.push(e));
      const disconnected = new Promise<void>((resolve) =>
        pa.on('close', (e: { disconnected?: boolean } | null) => {
          if (e?.disconnected === true) resolve();
        }),
      );
      const t0 = Date.now();
      const failed = new Promise<Error | null | undefined>((resolve) => pa.write(Buffer.alloc(BIG), resolve));
      const err = await within(failed, 5000, 'the stalled write failing');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
      expect(err).toBeInstanceOf(SerialWriteTimeoutError);
      expect(err).toMatchObject({ code: 'ETIMEDOUT', disconnect: true });
      await within(disconnected, 5000, 'the port closing as disconnected');
      expect(pa.isOpen).toBe(false);
    } finally {
      child.kill('SIGKILL');
      for (const p of ports) await closePort(p);
    }
  });

  // A canary: when this fails, bindings-cpp fixed its poller (docs/serialport-upstream.md) and
  // the project's own waiting can be reconsidered.
  it('issue 19.1 upstream: stock bindings-cpp 13 takes a parked write off epoll when a read parks', async () => {
    const a = join(dir, 'ttyE');
    const b = join(dir, 'ttyF');
    const { child } = await socatPair(a, b);
    const ports: SerialPortStream[] = [];
    try {
      const open = (path: string, highWaterMark?: number) =>
        new Promise<SerialPortStream>((resolve, reject) => {
          const p = new SerialPortStream({
            path,
            baudRate: 115200,
            binding: LinuxBinding,
            autoOpen: false,
            ...(highWaterMark === undefined ? {} : { highWaterMark }),
          });
          p.open((e) => (e ? reject(e) : resolve(p)));
        });
      const pa = await open(a);
      const pb = await open(b, 1024);
      ports.push(pa, pb);
      pa.on('error', () => {}); // the parked write is canceled by the close below
      pb.pause();
      const fd = fdOf(pa);
      pa.write(Buffer.alloc(BIG));
      expect(await until(() => epollInterest(fd)?.out === true, 5000)).toBe(true);
      pa.on('data', () => {});
      // The read parked and the write is still waiting, yet only input is watched.
      expect(await until(watched(fd, { in: true, out: false }), 5000)).toBe(true);
    } finally {
      child.kill('SIGKILL');
      for (const p of ports) await closePort(p);
    }
  });
});
