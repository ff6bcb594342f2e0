/**
 * Issue 18.4: the agent's `queue.commitWindow` end to end: the agent's bin with two firmware-sim
 * devices on real ptys, sending a frame each every 20 ms. With a 250 ms window the queue fsyncs
 * at most four times a second, the devices' ACKs come in that many bursts (an ACK leaves only
 * after the fsync that covers its frame), and, the window being well below the devices'
 * retransmission timeout (1 s), no frame is sent twice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AgentProcess,
  type LiteBroker,
  startBrokerLite,
  until,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';
import { parse, value } from './helpers/prom.ts';

const socat = hasSocat();
if (!socat)
  console.warn('e2e-agent-commit-window: socat missing, the pty test is skipped (apt-get install socat)');

describe.skipIf(!socat)('issue 18.4: queue.commitWindow through the agent bin', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-window-'));
  let broker: LiteBroker | undefined;
  let agent: AgentProcess | undefined;
  const devices: WatchedDevice[] = [];
  afterAll(async () => {
    await agent?.kill();
    await Promise.all(devices.map((d) => d.stop()));
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('issue 18.4: fsyncs and ACK bursts at most one per window, ACKs flowing, no retransmission', async () => {
    const windowMs = 250;
    broker = await startBrokerLite();
    for (let i = 0; i < 2; i++) {
      devices.push(
        await WatchedDevice.create(path.join(dir, `tty${i}`), {
          deviceId: `w${i}`,
          intervalMs: 20,
          seed: 40 + i,
        }),
      );
    }
    const file = writeJson(path.join(dir, 'agent.json'), {
      agent: { id: 'gw', stateDir: path.join(dir, 'state'), healthInterval: 0 },
      serial: devices.map((d, i) => ({ path: d.agentPath, name: `tty${i}` })),
      mqtt: { url: `mqtt://127.0.0.1:${broker.port}` },
      queue: { fsync: 'batch', commitWindow: `${windowMs}ms` },
      metrics: { listen: '127.0.0.1:0' },
    });
    agent = new AgentProcess(file);
    await agent.start();
    const listening = await agent.waitFor((l) => l.msg === 'metrics-listening', 10_000);
    const fsyncs = async () => {
      const text = await (await fetch(`http://127.0.0.1:${listening.port as number}/metrics`)).text();
      return value(parse(text), 'mqtt_edge_agent_queue_fsyncs_total') ?? Number.NaN;
    };
    for (const d of devices) d.start();
    // past the start (HELLO, the first frames), then a measured stretch of 3 s
    expect(await until(() => devices.every((d) => d.acks.length >= 5), 15_000)).toBe(true);
    const f0 = await fsyncs();
    const t0 = Date.now();
    const acks0 = devices.map((d) => d.acks.length);
    await new Promise((r) => setTimeout(r, 3000));
    const f1 = await fsyncs();
    const t1 = Date.now();
    const windows = (t1 - t0) / windowMs;
    // ~150 frames a second offered: without the window about one fsync per frame
    expect(f1 - f0).toBeGreaterThanOrEqual(2);
    expect(f1 - f0).toBeLessThanOrEqual(Math.ceil(windows) + 1);
    const acked = devices.reduce((n, d, i) => n + d.acks.length - acks0[i], 0);
    expect(acked).toBeGreaterThan(100);
    // ACK arrivals in the stretch, grouped into bursts: gaps of over half a window split them
    const at = devices
      .flatMap((d) => d.acksAt)
      .filter((t) => t >= t0 && t <= t1)
      .sort((a, b) => a - b);
    let bursts = at.length > 0 ? 1 : 0;
    for (let i = 1; i < at.length; i++) if (at[i] - at[i - 1] > windowMs / 2) bursts++;
    expect(bursts).toBeLessThanOrEqual(Math.ceil(windows) + 1);
    for (const d of devices) expect(d.sim.firmware.stats.retransmits).toBe(0);
  }, 60_000);
});
