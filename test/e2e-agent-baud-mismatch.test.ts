/**
 * A baud mismatch on a real pty: a device's valid frames, as a UART at the wrong rate reads them
 * (9600 sent, 115200 read; 115200 sent, 57600 read; 57600 sent, 115200 read), plus line noise
 * heavy in 0x00 and 0x80, fed into the agent (a child process). The agent counts framing errors,
 * logs them at most once per 5 s with the "check baud rate and framing" hint once nothing valid
 * has been seen, does not crash, and reads the same device correctly once the rates match.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AgentStatus } from '@mqtt-edge/agent';
import { createSocatPair, hasSocat } from '@mqtt-edge/firmware-sim';
import { type DataFrame, encodeFrame, type Frame, FrameDecoder } from '@mqtt-edge/serial-protocol';
import { openSerialPort } from '@mqtt-edge/serial-protocol/node';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentProcess, Recorder, startBrokerLite, until, writeJson } from './helpers/processes.ts';
import { misclock } from './helpers/uart.ts';

const socat = hasSocat();
if (!socat) console.warn('e2e-agent-baud-mismatch: socat missing, skipped (apt-get install socat)');

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const BOOT = 0x0b0d;
const HINT = 'no valid frame yet: check baud rate and framing';

function hello(seq: number): Uint8Array {
  return encodeFrame({
    type: 'hello',
    seq,
    deviceId: 'uart-dev',
    firmware: 'test-1',
    bootId: BOOT,
    sensors: [{ name: 'temp', unit: 'Cel' }, { name: 'hum' }],
  });
}

function data(seq: number): Uint8Array {
  const f: DataFrame = {
    type: 'data',
    seq,
    bootId: BOOT,
    readings: [
      { sensor: 'temp', value: 20 + seq / 10, unit: 'Cel' },
      { sensor: 'hum', value: 40 + seq },
    ],
  };
  return encodeFrame(f);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Noise typical of a mismatch: mostly 0x00 and 0x80 (a slow line read fast), some others. */
function noise(n: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const r = (x >>> 0) % 10;
    out[i] = r < 4 ? 0x00 : r < 8 ? 0x80 : (x >>> 8) & 0xff;
  }
  return out;
}

describe.skipIf(!socat)('agent: baud mismatch on a real pty', () => {
  it('the UART model: at the same rate it reads exactly what was sent', () => {
    const frames = concat([hello(0), data(1), data(2)]);
    expect(misclock(frames, 115200, 115200)).toEqual(frames);
    expect(misclock(frames, 9600, 9600)).toEqual(frames);
    // A mismatch reads something else, and is not a valid frame.
    const wrong = misclock(frames, 9600, 115200);
    expect(wrong).not.toEqual(frames);
    expect(new FrameDecoder().push(wrong)).toEqual([]);
    expect(new FrameDecoder().push(misclock(frames, 115200, 57600))).toEqual([]);
  });

  it('counted framing errors, one rate-limited warning with the hint, no crash; then the right rate reads fine', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-baud-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const broker = await startBrokerLite();
    cleanups.push(() => broker.stop());
    const rec = await Recorder.start(`mqtt://127.0.0.1:${broker.port}`, 'bm/#', 1, 'rec-baud');
    cleanups.push(() => rec.stop());

    const agentPath = path.join(dir, 'ttyB');
    const pair = await createSocatPair(path.join(dir, 'ttyB.device'), agentPath);
    cleanups.push(() => pair.close());
    const port = await openSerialPort(pair.devicePath);
    cleanups.push(() => new Promise<void>((r) => (port.isOpen ? port.close(() => r()) : r())));
    port.on('error', () => {});
    const fromAgent: Frame[] = [];
    const decoder = new FrameDecoder();
    port.on('data', (b: Buffer) => fromAgent.push(...decoder.push(b)));

    const stateDir = path.join(dir, 'state');
    const config = writeJson(path.join(dir, 'agent.json'), {
      agent: { id: 'baud', stateDir, healthInterval: 0, statusInterval: '200ms' },
      serial: [{ path: agentPath, name: 'uart', baud: 115200 }],
      mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
      topics: { prefix: 'bm' },
      queue: { fsync: 'never' },
    });
    const agent = new AgentProcess(config);
    await agent.start();
    cleanups.push(() => agent.kill());
    await agent.waitFor((l) => l.msg === 'port-open' && l.port === 'uart', 10_000);

    // The device talks at the wrong rate: its frames, as the agent's UART reads them.
    const sent: Uint8Array[] = [];
    for (let seq = 0; seq < 40; seq++) sent.push(seq % 8 === 0 ? hello(seq) : data(seq));
    const wire = concat(sent);
    const mangled = [
      misclock(wire, 9600, 115200),
      misclock(wire, 115200, 57600),
      misclock(wire, 57600, 115200),
      noise(4096, 7),
    ];
    // Paced like a serial line (~100 KB/s at most), until the agent has said it twice: the first
    // error is logged at once, the next only 5 s later, and that one carries the hint.
    let written = 0;
    let k = 0;
    const hinted = agent.waitFor((l) => l.msg === 'framing-errors' && l.hint === HINT, 12_000);
    let done = false;
    void hinted.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    while (!done) {
      const m = mangled[k % mangled.length];
      const chunk = m.subarray((k * 997) % Math.max(1, m.length - 512)).subarray(0, 512);
      port.write(Buffer.from(chunk));
      written += chunk.length;
      k++;
      await new Promise((r) => setTimeout(r, 20));
    }
    const hint = await hinted;
    const warnings = agent.events('framing-errors');
    expect(warnings.length).toBe(2);
    expect(warnings[0].hint).toBeUndefined();
    expect(warnings[0].count).toBe(1);
    expect(warnings[1]).toBe(hint);
    // Rate-limited: one line per 5 s however many errors, with the count since the last line.
    expect(Date.parse(warnings[1].time) - Date.parse(warnings[0].time)).toBeGreaterThanOrEqual(4990);
    expect(hint.count as number).toBeGreaterThan(20);
    expect(hint.total).toBe(1 + (hint.count as number));
    // Nothing was taken for a frame or a device; the agent asked for a HELLO and got none.
    expect(agent.events('device-online')).toEqual([]);
    expect(agent.events('device-boot')).toEqual([]);
    expect(fromAgent.filter((f) => f.type === 'ack')).toEqual([]);

    // The device at the right rate now: a delimiter ends the garbage run, then its frames.
    port.write(Buffer.from(concat([Uint8Array.of(0), hello(100), data(101), data(102), data(103)])));
    expect(
      await until(
        () => [101, 102, 103].every((s) => fromAgent.some((f) => f.type === 'ack' && f.seq === s)),
        10_000,
      ),
    ).toBe(true);
    for (const f of fromAgent) if (f.type === 'ack') expect(f.bootId).toBe(BOOT);
    await agent.waitFor((l) => l.msg === 'device-online' && l.device === 'uart-dev', 5000);
    const ids = [101, 102, 103].flatMap((s) => [0, 1].map((i) => `uart-dev:${BOOT}:${s}:${i}`));
    expect(await until(() => ids.every((id) => rec.has(id)), 10_000)).toBe(true);
    expect(rec.arrivals.map((a) => a.id).sort()).toEqual([...ids].sort());

    expect(agent.events('agent-start')).toHaveLength(1);
    expect(await agent.stop()).toBe(0);
    const s = JSON.parse(readFileSync(path.join(stateDir, 'status.json'), 'utf8')) as AgentStatus;
    const c = s.ports[0].counters;
    console.log(
      'e2e-agent-baud-mismatch:',
      JSON.stringify({
        written,
        framingErrors: c.framingErrors,
        frames: c.frames,
        warnings: warnings.length,
      }),
    );
    expect(c.framingErrors).toBeGreaterThanOrEqual(hint.total as number);
    expect(c.frames).toBe(4);
    expect(c.stored).toBe(6);
    expect(c.acksSent).toBe(3);
  }, 40_000);
});
