import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeFrame } from '@mqtt-edge/serial-protocol';
import { createSerialPort } from '@mqtt-edge/serial-protocol/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSocatPair,
  FirmwareSim,
  hasSocat,
  type Logger,
  PortTransport,
  PtyTransport,
} from '../src/index.ts';
import { HostReader, isData, within } from './helpers.ts';

const socat = hasSocat();
if (!socat) console.warn('firmware-sim pty tests skipped: socat is not installed (apt-get install socat)');

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fwsim-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Port = ReturnType<typeof createSerialPort>;

/** The agent's side, opened the way an agent should: EOF on the tty is a disconnect. */
function open(path: string): Promise<Port> {
  return new Promise((resolve, reject) => {
    const p = createSerialPort(path);
    // A write racing the hang-up fails with EBADF: expected during unplug tests, not a test error.
    p.on('error', () => {});
    p.open((e) => (e ? reject(e) : resolve(p)));
  });
}

/** Logger that lets a test await a logged event (the sim reports unplug/plug through it). */
function eventLog(): Logger & { next(event: string, timeoutMs?: number): Promise<Record<string, unknown>> } {
  const waiters: Array<{ event: string; resolve: (f: Record<string, unknown>) => void }> = [];
  return {
    log(_level, event, fields = {}) {
      for (const w of waiters.filter((x) => x.event === event)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(fields);
      }
    },
    next(event, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          event,
          resolve: (f) => {
            clearTimeout(t);
            resolve(f);
          },
        });
      });
    },
  };
}

/**
 * Resolves (true) once the port closed as a disconnect. Not at the first 'close': an ACK written
 * as the pty hangs up fails (EIO, EBADF), and @serialport/stream then both closes the port as
 * disconnected and fails the write, so Node destroys the stream and emits a bare 'close' before
 * the port's own, which carries the DisconnectedError (docs/serialport-upstream.md, section 2;
 * 1 run in 30 of this file, "socat killed from outside" in CI). A port closed otherwise (by us)
 * never resolves, and `within` fails.
 */
function closedByDisconnect(port: Port): Promise<boolean> {
  return new Promise((resolve) =>
    port.on('close', (e: { disconnected?: boolean } | null) => {
      if (e?.disconnected === true) resolve(true);
    }),
  );
}

function attach(port: Port): HostReader {
  const host = new HostReader();
  port.on('data', (b: Buffer) => {
    const before = host.frames.length;
    host.feed(b);
    for (const f of host.frames.slice(before)) {
      if (f.type === 'data' && port.isOpen)
        port.write(encodeFrame({ type: 'ack', seq: f.seq, bootId: f.bootId }));
    }
  });
  return host;
}

describe.skipIf(!socat)('firmware-sim on a real pseudo-terminal (socat)', () => {
  it('DATA, ACK, CMD/RESULT over the pty; unplug makes the port vanish and come back', async () => {
    const link = join(dir, 'ttySIM0');
    const transport = await PtyTransport.create(link);
    expect(existsSync(link)).toBe(true);
    expect(existsSync(`${link}.device`)).toBe(true);
    expect(transport.ptys.every((p) => p.startsWith('/dev/pts/'))).toBe(true);
    const log = eventLog();
    const sim = new FirmwareSim(transport, {
      deviceId: 'pty-dev',
      seed: 3,
      intervalMs: 20,
      retransmitMs: 80,
      log,
    });
    sim.start();
    let port = await open(link);
    try {
      let host = attach(port);
      const d = await host.data((f) => f.seq >= 3);
      expect(d.bootId).toBe(sim.firmware.bootId);
      port.write(encodeFrame({ type: 'cmd', seq: 0, id: 11, name: 'status' }));
      const r = await host.result((f) => f.id === 11);
      expect(r).toMatchObject({ ok: true, value: { interval: 20, led: false } });
      expect(sim.firmware.stats.acked).toBeGreaterThanOrEqual(1);

      // Unplug: socat goes, both links with it, and the agent's port closes as disconnected.
      const closed = closedByDisconnect(port);
      const unplugged = log.next('unplugged');
      const replug = sim.unplug(300);
      await within(unplugged, 5000, 'unplugged');
      expect(existsSync(link)).toBe(false);
      expect(await within(closed, 5000, 'agent port closed by the unplug')).toBe(true);
      await within(replug, 5000, 'replug');
      expect(existsSync(link)).toBe(true);
      // What the device still holds (taken while unplugged, or whose ACK was cut off) must arrive.
      const want = new Set(sim.firmware.unackedSeqs());
      expect(want.size).toBeGreaterThanOrEqual(5);

      port = await open(link);
      host = attach(port);
      const deadline = Date.now() + 10_000;
      let idx = 0;
      while (Date.now() < deadline) {
        for (; idx < host.frames.length; idx++) {
          const f = host.frames[idx];
          if (f.type !== 'data') continue;
          want.delete(f.seq);
          expect(f.bootId).toBe(d.bootId);
        }
        if (want.size === 0) break;
        await host.next(isData, 5000, idx);
      }
      expect([...want]).toEqual([]);
      expect(sim.stats.unplugs).toBe(1);
      expect(sim.firmware.stats.boots).toBe(1);
    } finally {
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
      await sim.stop();
    }
    expect(existsSync(link)).toBe(false);
  });

  it('socat killed from outside: the pair is recreated at the same path and data flows again', async () => {
    const link = join(dir, 'ttySIM1');
    const transport = await PtyTransport.create(link);
    const log = eventLog();
    const sim = new FirmwareSim(transport, {
      deviceId: 'pty-kill',
      seed: 4,
      intervalMs: 20,
      retransmitMs: 80,
      log,
    });
    sim.start();
    let port = await open(link);
    try {
      let host = attach(port);
      await host.next(isData);
      const oldPid = transport.socatPid;
      // Never signal a pid we did not get from our own socat (kill(-1) would hit every process).
      expect(oldPid).toBeGreaterThan(1);
      const closed = closedByDisconnect(port);
      const unplugged = log.next('unplugged');
      const plugged = log.next('plugged');
      process.kill(oldPid, 'SIGKILL');
      const u = await within(unplugged, 5000, 'unplugged after socat SIGKILL');
      expect(u.reason).toBe('socat exited');
      expect(await within(closed, 5000, 'agent port closed after socat SIGKILL')).toBe(true);
      await within(plugged, 10_000, 'pty pair recreated');
      expect(transport.socatPid).not.toBe(oldPid);
      port = await within(open(link), 5000, 'reopen after recreate');
      host = attach(port);
      const d = await host.next(isData);
      expect(d.bootId).toBe(sim.firmware.bootId);
    } finally {
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
      await within(sim.stop(), 5000, 'sim.stop');
    }
  });

  it('issue 19.1: a device write that finds no room for writeTimeoutMs closes its end, which is opened again; data flows once the agent reads', async () => {
    const link = join(dir, 'ttySIM2');
    // Nobody opens the agent's end for now: the device's writes fill the ptys and park.
    const transport = await PtyTransport.create(link, `${link}.device`, { writeTimeoutMs: 300 });
    const log = eventLog();
    const sim = new FirmwareSim(transport, {
      deviceId: 'pty-stall',
      seed: 5,
      intervalMs: 10,
      retransmitMs: 20,
      ringSize: 256,
      log,
    });
    const reopened = log.next('reopened', 20_000);
    const stalled = log.next('transport-error', 20_000);
    sim.start();
    let port: Port | undefined;
    try {
      expect((await stalled).error).toMatch(/no progress for 300 ms/);
      const r = await within(reopened, 20_000, 'device end reopened');
      expect(r.device).toBe(`${link}.device`);
      expect(transport.plugged).toBe(true);
      port = await open(link);
      const host = attach(port);
      const d = await host.next(isData);
      expect(d.bootId).toBe(sim.firmware.bootId);
      // The pair lived throughout: a reopen of the device end, not an unplug.
      expect(sim.stats.unplugs).toBe(0);
    } finally {
      if (port?.isOpen) await new Promise<void>((r) => port?.close(() => r()));
      await within(sim.stop(), 5000, 'sim.stop');
    }
  });

  it('--port: opens an existing tty, and reopens it after the tty vanished and came back', async () => {
    const dev = join(dir, 'ttyEXT0.device');
    const agentPath = join(dir, 'ttyEXT0');
    let pair = await createSocatPair(dev, agentPath);
    const transport = await PortTransport.open(dev);
    const log = eventLog();
    const sim = new FirmwareSim(transport, {
      deviceId: 'ext-dev',
      seed: 6,
      intervalMs: 20,
      retransmitMs: 80,
      log,
    });
    sim.start();
    let port = await open(agentPath);
    try {
      let host = attach(port);
      await host.data();
      const unplugged = log.next('unplugged');
      const plugged = log.next('plugged');
      await pair.close();
      expect((await within(unplugged, 5000, 'sim saw its tty vanish')).reason).toBe('port closed');
      pair = await createSocatPair(dev, agentPath);
      await within(plugged, 10_000, 'sim reopened the tty');
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
      port = await open(agentPath);
      host = attach(port);
      expect((await host.data()).bootId).toBe(sim.firmware.bootId);
    } finally {
      if (port.isOpen) await new Promise<void>((r) => port.close(() => r()));
      await sim.stop();
      await pair.close();
    }
  });

  it('CLI: --link prints the path, the agent reads frames from it, SIGINT stops it cleanly', async () => {
    const link = join(dir, 'ttyCLI0');
    const bin = join(import.meta.dirname, '..', 'bin', 'firmware-sim.js');
    const child = spawn(
      process.execPath,
      [bin, '--link', link, '--interval', '30', '--device-id', 'cli-dev', '--seed', '5', '--json-logs'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const path = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (s: string) => {
          out += s;
          if (out.includes('\n')) resolve(out.split('\n')[0]);
        });
        child.once('exit', () => reject(new Error(`exited before printing the path: ${stderr}`)));
      });
      expect(path).toBe(link);
      const port = await open(path);
      const host = attach(port);
      port.write(encodeFrame({ type: 'cmd', seq: 0, id: 1, name: 'hello' }));
      const hello = await host.next((f) => f.type === 'hello', 10_000);
      expect(hello).toMatchObject({ deviceId: 'cli-dev' });
      await host.next(isData, 10_000);
      await new Promise<void>((r) => port.close(() => r()));
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    const lines = stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ msg: 'start', device: 'cli-dev', seed: 5 });
    expect(lines.at(-1)).toMatchObject({ msg: 'stop', device: 'cli-dev' });
    expect(existsSync(link)).toBe(false);
  });

  it('CLI: --help exits 0, a bad flag exits 2 naming it', async () => {
    const bin = join(import.meta.dirname, '..', 'bin', 'firmware-sim.js');
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const c = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        // A flag wrongly accepted starts the simulator, which runs until stopped.
        const t = setTimeout(() => c.kill('SIGINT'), 15_000);
        c.once('exit', () => clearTimeout(t));
        let out = '';
        let err = '';
        c.stdout.on('data', (b: Buffer) => {
          out += b;
        });
        c.stderr.on('data', (b: Buffer) => {
          err += b;
        });
        c.once('exit', (code) => resolve({ code, out, err }));
      });
    const [help, bad, both, watchdog, writeTimeout, longWatchdog, longWriteTimeout] = await Promise.all([
      run(['--help']),
      run(['--link', '/tmp/x', '--bitflip-rate', '2']),
      run(['--link', '/tmp/x', '--port', '/tmp/y']),
      run(['--link', '/tmp/x', '--watchdog', 'soon']),
      run(['--link', '/tmp/x', '--write-timeout', '0']),
      // Past what a timer holds (2^31-1 ms), a timer fires at once: refused, not a 1 ms loop.
      run(['--link', join(dir, 'cli-w1'), '--watchdog', '100000m']),
      run(['--link', join(dir, 'cli-w2'), '--write-timeout', '11m']),
    ]);
    expect(longWatchdog.code).toBe(2);
    expect(longWatchdog.err).toMatch(/--watchdog: at most 1440m/);
    expect(longWriteTimeout.code).toBe(2);
    expect(longWriteTimeout.err).toMatch(/--write-timeout: at most 10m/);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--unplug-every/);
    expect(help.out).toMatch(/--watchdog MS/);
    expect(help.out).toMatch(/--write-timeout MS/);
    // issue 19: the watchdog's and the write bound's flags are checked like the others.
    expect(watchdog.code).toBe(2);
    expect(watchdog.err).toMatch(/--watchdog/);
    expect(writeTimeout.code).toBe(2);
    expect(writeTimeout.err).toMatch(/--write-timeout/);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--bitflip-rate/);
    expect(both.code).toBe(2);
    expect(both.err).toMatch(/exactly one/);
  });
});
