/**
 * firmware-sim (real ptys) -> mqtt-edge-agent (child process) -> broker (broker-lite, then
 * Mosquitto) -> subscriber: every acknowledged reading arrives, in order, once; retained
 * statuses, the last will, a command round trip, and `mqtt-edge-agent status`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '@mqtt-edge/client';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterEach, describe, expect, it } from 'vitest';
import { hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';
import {
  AGENT_BIN,
  AgentProcess,
  Recorder,
  startBrokerLite,
  until,
  verify,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';

const socat = hasSocat();
if (!socat) console.warn('e2e-agent: socat missing, the pty tests are skipped (apt-get install socat)');
const SENSORS = 4;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function run(url: string, dir: string, version: 4 | 5) {
  const devices = [
    await WatchedDevice.create(path.join(dir, 'tty0'), { deviceId: 'dev0', intervalMs: 40, seed: 1 }),
    await WatchedDevice.create(path.join(dir, 'tty1'), {
      deviceId: 'dev1',
      intervalMs: 60,
      seed: 2,
      faults: { garbage: 0.05 },
    }),
  ];
  cleanups.push(() => Promise.all(devices.map((d) => d.stop())));
  const rec = await Recorder.start(url, 'e2e/#', 1, `rec-${version}`);
  cleanups.push(() => rec.stop());
  const config = writeJson(path.join(dir, 'agent.json'), {
    agent: { id: 'gw', stateDir: path.join(dir, 'state'), statusInterval: '200ms', healthInterval: '1s' },
    serial: devices.map((d) => ({ path: d.agentPath })),
    mqtt: { url, version, keepalive: 5, reconnectMin: '50ms', reconnectMax: '500ms' },
    topics: { prefix: 'e2e' },
  });
  const agent = new AgentProcess(config);
  await agent.start();
  cleanups.push(() => agent.kill());
  for (const d of devices) d.start();
  expect(await until(() => devices.every((d) => d.acks.length >= 40), 20_000)).toBe(true);
  return { devices, rec, agent, config };
}

describe.skipIf(!socat)('agent end to end', () => {
  it('firmware-sim -> agent -> broker-lite -> subscriber: every acked reading once, in order; statuses, will, commands, status CLI', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-agent-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const broker = await startBrokerLite();
    cleanups.push(() => broker.stop());
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const { devices, rec, agent, config } = await run(url, dir, 5);

    // A command, MQTT 5 request/response, and an unknown device.
    const corr = Buffer.from('c-1');
    await rec.client.publish('e2e/dev0/cmd/ping', '', {
      qos: 1,
      properties: { responseTopic: 'e2e/replies/1', correlationData: corr },
    });
    await rec.client.publish('e2e/nobody/cmd/ping', '', { qos: 1 });
    expect(await until(() => rec.other.some((m) => m.topic === 'e2e/nobody/cmd/ping/result'), 5000)).toBe(
      true,
    );
    expect(await until(() => rec.other.some((m) => m.topic === 'e2e/replies/1'), 5000)).toBe(true);
    expect(JSON.parse(rec.other.find((m) => m.topic === 'e2e/replies/1')!.payload)).toEqual({
      ok: true,
      value: 'pong',
    });
    expect(JSON.parse(rec.other.find((m) => m.topic === 'e2e/nobody/cmd/ping/result')!.payload).ok).toBe(
      false,
    );

    // Retained statuses, as a newcomer sees them.
    const late = connect(url, { protocolVersion: 5 });
    const seen = new Map<string, string>();
    late.on('message', (t, p, pk) => {
      if (pk.retain) seen.set(t, Buffer.from(p).toString());
    });
    await late.subscribe({ filter: 'e2e/+/status', qos: 1 });
    await late.subscribe({ filter: 'e2e/_agent/+/status', qos: 1 });
    expect(await until(() => seen.size >= 3, 5000)).toBe(true);
    expect(seen.get('e2e/dev0/status')).toBe('online');
    expect(seen.get('e2e/dev1/status')).toBe('online');
    expect(seen.get('e2e/_agent/gw/status')).toBe('online');
    await late.end();

    // `status` of the running agent.
    const st = spawnSync(process.execPath, [AGENT_BIN, 'status', '-c', config], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(st.status, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/agent gw: running/);
    expect(st.stdout).toMatch(/broker .*: connected/);
    expect(st.stdout).toMatch(/port tty0 .*open.*device dev0/);

    // Devices stop; everything they were told is safe arrives.
    await Promise.all(devices.map((d) => d.stop()));
    const expected = () => verify(devices, rec, SENSORS, []);
    expect(await until(() => expected().missing.length === 0, 10_000)).toBe(true);
    const v = expected();
    expect(v.acked).toBeGreaterThanOrEqual(80);
    expect(v.missing).toEqual([]);
    expect(v.duplicates).toEqual([]);
    expect(v.orderViolations).toEqual([]);
    // Garbage on dev1's line was counted, not fatal.
    const health = rec.other.filter((m) => m.topic === 'e2e/_agent/gw/health');
    expect(health.length).toBeGreaterThan(0);
    expect(JSON.parse(health[health.length - 1].payload).counters.framingErrors).toBeGreaterThan(0);

    // Graceful stop: offline statuses, exit 0.
    expect(await agent.stop()).toBe(0);
    expect(rec.other.some((m) => m.topic === 'e2e/_agent/gw/status' && m.payload === 'offline')).toBe(true);
    expect(rec.other.some((m) => m.topic === 'e2e/dev0/status' && m.payload === 'offline')).toBe(true);
    const stopped = spawnSync(process.execPath, [AGENT_BIN, 'status', '-c', config], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(stopped.status).toBe(3);
    expect(stopped.stdout).toMatch(/NOT RUNNING/);
  }, 60_000);

  it('the last will says offline when the agent dies', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-agent-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const broker = await startBrokerLite();
    cleanups.push(() => broker.stop());
    const url = `mqtt://127.0.0.1:${broker.port}`;
    const { rec, agent } = await run(url, dir, 4);
    expect(rec.arrivals.length).toBeGreaterThan(0);
    await agent.kill('SIGKILL');
    expect(
      await until(
        () => rec.other.some((m) => m.topic === 'e2e/_agent/gw/status' && m.payload === 'offline'),
        10_000,
      ),
    ).toBe(true);
  }, 60_000);

  it.skipIf(!hasMosquitto())(
    'the same with Mosquitto upstream (MQTT 3.1.1)',
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-agent-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const mosq = await startMosquitto();
      cleanups.push(() => mosq.stop());
      const url = `mqtt://127.0.0.1:${mosq.port}`;
      const { devices, rec, agent } = await run(url, dir, 4);
      await Promise.all(devices.map((d) => d.stop()));
      // 3.1.1 has no user properties: the recorder learns ids from the JSON payload instead.
      const v = () => verify(devices, rec, SENSORS, []);
      expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
      expect(v().missing).toEqual([]);
      expect(v().duplicates).toEqual([]);
      expect(v().orderViolations).toEqual([]);
      expect(await agent.stop()).toBe(0);
    },
    60_000,
  );
});
