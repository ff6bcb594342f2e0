/**
 * Issue 13.5: the agent (a child process) reloads its config on SIGHUP while readings flow from
 * simulated devices on real ptys: a port added, the reading topic changed, then an MQTT setting
 * that needs a new broker connection; none of it loses or duplicates a reading (the guarantee
 * check of helpers/processes.ts). A config that does not validate is refused with the problems
 * `check` prints and the running config stays; settings that need a restart are named.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { describe, expect, it } from 'vitest';
import { FaultProxy } from './helpers/fault-proxy.ts';
import {
  AGENT_BIN,
  AgentProcess,
  agentStatus,
  brokerWithRecorder,
  testScope,
  until,
  verify,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';

const socat = hasSocat();
if (!socat)
  console.warn('e2e-agent-reload: socat missing, the pty tests are skipped (apt-get install socat)');
const SENSORS = 4;

const { cleanups, tmp } = testScope('e2e-reload');

describe.skipIf(!socat)('issue 13.5: agent reload on SIGHUP (a process, devices on ptys)', () => {
  it('issue 13.5: a port added, the topic changed, then a reconnecting MQTT change, readings flowing: none lost, none duplicated', async () => {
    const dir = tmp();
    const { broker, rec } = await brokerWithRecorder(cleanups, 'rl/#', 'rec-reload');
    // The agent reaches the broker through a proxy that can hold its acknowledgements back.
    const proxy = await FaultProxy.start(broker.port);
    cleanups.push(() => proxy.close());
    const devices = [
      await WatchedDevice.create(path.join(dir, 'tty0'), { deviceId: 'dev0', intervalMs: 30, seed: 11 }),
      await WatchedDevice.create(path.join(dir, 'tty1'), { deviceId: 'dev1', intervalMs: 40, seed: 12 }),
    ];
    cleanups.push(() => Promise.all(devices.map((d) => d.stop())));
    const stateDir = path.join(dir, 'state');
    const base = {
      agent: { id: 'gw', stateDir, statusInterval: '100ms', healthInterval: 0 },
      serial: [{ path: devices[0].agentPath, name: 'tty0' }],
      mqtt: { url: proxy.url, keepalive: 30, reconnectMin: '50ms', reconnectMax: '500ms' },
      topics: { prefix: 'rl' },
    };
    const file = writeJson(path.join(dir, 'agent.json'), base);
    const agent = new AgentProcess(file);
    await agent.start();
    cleanups.push(() => agent.kill());
    devices[0].start();
    expect(await until(() => devices[0].acks.length >= 20, 15_000)).toBe(true);

    // 1. A port added (its device starts now) and the reading topic changed.
    devices[1].start();
    writeJson(file, {
      ...base,
      serial: [...base.serial, { path: devices[1].agentPath, name: 'tty1' }],
      topics: { prefix: 'rl', reading: '{prefix}/v2/{device}/{sensor}' },
    });
    const first = await agent.reload();
    expect(first.msg).toBe('config-reloaded');
    expect(first.portsAdded).toEqual(['tty1']);
    expect(first.applied).toEqual(['serial', 'topics.reading']);
    expect(first.reconnected).toBe(false);
    const acked0 = devices[0].acks.length;
    expect(
      await until(() => devices[1].acks.length >= 20 && devices[0].acks.length >= acked0 + 20, 15_000),
    ).toBe(true);
    // New readings of both devices on the new topic.
    for (const d of ['dev0', 'dev1'])
      expect(rec.arrivals.some((a) => a.topic.startsWith(`rl/v2/${d}/`))).toBe(true);
    expect(agentStatus(stateDir)?.ports.map((p) => p.name)).toEqual(['tty0', 'tty1']);

    // 2. An MQTT setting that needs a new connection, sent while the link holds the broker's
    // acknowledgements back (publishes in flight): they are acknowledged before the old
    // connection goes, not sent again by the new one.
    const connectsBefore = agent.events('broker-connected').length;
    writeJson(file, {
      ...base,
      // tty0 at another rate: reopened, its device session (and duplicate window) kept.
      serial: [
        { ...base.serial[0], baud: 57600 },
        { path: devices[1].agentPath, name: 'tty1' },
      ],
      mqtt: { ...base.mqtt, keepalive: 20 },
      topics: { prefix: 'rl', reading: '{prefix}/v2/{device}/{sensor}' },
    });
    const stalled = proxy.cut('stall', 1500);
    const queued = agentStatus(stateDir)!.queue.count;
    // Readings pile up unacknowledged behind the stalled link (no sleep: the status file says so).
    expect(await until(() => (agentStatus(stateDir)?.queue.count ?? 0) >= queued + 20, 1400, 20)).toBe(true);
    const second = await agent.reload();
    await stalled;
    expect(second.inFlightAtReconnect).toBe(0);
    expect(second.msg).toBe('config-reloaded');
    expect(second.applied).toEqual(['serial', 'mqtt.keepalive']);
    expect(second.portsReopened).toEqual(['tty0']);
    expect(second.reconnected).toBe(true);
    expect(
      await agent.waitFor((l) => l.msg === 'broker-connected', 10_000, agent.lines.indexOf(second)),
    ).toBeDefined();
    expect(agent.events('broker-connected').length).toBe(connectsBefore + 1);
    const acked1 = devices.map((d) => d.acks.length);
    expect(await until(() => devices.every((d, i) => d.acks.length >= acked1[i] + 20), 15_000)).toBe(true);

    // Devices stop; everything they were told is safe arrives, once.
    await Promise.all(devices.map((d) => d.stop()));
    const v = () => verify(devices, rec, SENSORS, []);
    expect(await until(() => v().missing.length === 0, 15_000)).toBe(true);
    const verdict = v();
    console.log('e2e-agent-reload:', JSON.stringify({ acked: verdict.acked, arrivals: rec.arrivals.length }));
    expect(verdict.acked).toBeGreaterThanOrEqual(100);
    expect(verdict.missing).toEqual([]);
    expect(verdict.duplicates).toEqual([]);
    expect(verdict.orderViolations).toEqual([]);
    // Nothing SIGHUP did was a warning or an error, and the agent still runs.
    expect(agent.lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(agent.exited).toBe(false);
    expect(await agent.stop()).toBe(0);
  }, 90_000);

  it('issue 13.5: an invalid config is refused with the problems check prints, the running config stays; restart-only settings are named', async () => {
    const dir = tmp();
    const { url, rec } = await brokerWithRecorder(cleanups, 'bad/#', 'rec-bad');
    const device = await WatchedDevice.create(path.join(dir, 'tty0'), {
      deviceId: 'b0',
      intervalMs: 30,
      seed: 3,
    });
    cleanups.push(() => device.stop());
    const stateDir = path.join(dir, 'state');
    const base = {
      agent: { id: 'gw', stateDir, statusInterval: '100ms', healthInterval: 0 },
      serial: [{ path: device.agentPath, name: 'tty0' }],
      mqtt: { url, reconnectMin: '50ms', reconnectMax: '500ms' },
      topics: { prefix: 'bad' },
    };
    const file = writeJson(path.join(dir, 'agent.json'), base);
    const agent = new AgentProcess(file);
    await agent.start();
    cleanups.push(() => agent.kill());
    device.start();
    expect(await until(() => device.acks.length >= 10, 15_000)).toBe(true);

    writeJson(file, {
      ...base,
      serial: [{ path: device.agentPath, name: 'tty0', baudrate: 9600 }],
      topics: { prefix: 'bad/#' },
    });
    const refused = await agent.reload();
    expect(refused.msg).toBe('config-reload-failed');
    expect(refused.level).toBe('error');
    const check = spawnSync(process.execPath, [AGENT_BIN, 'check', '-c', file], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(check.status).toBe(2);
    const printed = check.stderr
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
    expect(printed.length).toBe(2);
    expect(refused.problems).toEqual(printed);
    // The old config runs on: same port, same topics, readings still ACKed and published.
    const acked = device.acks.length;
    const arrived = rec.arrivals.length;
    expect(await until(() => device.acks.length >= acked + 10 && rec.arrivals.length > arrived, 10_000)).toBe(
      true,
    );
    expect(rec.arrivals.at(-1)!.topic.startsWith('bad/b0/')).toBe(true);
    expect(agent.exited).toBe(false);

    // Valid, but with settings a running agent cannot change: named, not silently ignored.
    writeJson(file, {
      ...base,
      agent: { ...base.agent, id: 'other', healthInterval: '5s' },
      queue: { maxBytes: '64MiB', dir: path.join(dir, 'elsewhere') },
    });
    const partial = await agent.reload();
    expect(partial.msg).toBe('config-reloaded');
    expect(partial.applied).toEqual(['agent.healthInterval']);
    const restart = await agent.waitFor((l) => l.msg === 'config-needs-restart', 5000);
    expect(restart.level).toBe('warning');
    expect(restart.settings).toEqual(['agent.id', 'queue.dir', 'queue.maxBytes']);
    // Still the old id's topics.
    await Promise.all([device.stop()]);
    const v = () => verify([device], rec, SENSORS, []);
    expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
    expect(v().duplicates).toEqual([]);
    expect(agentStatus(stateDir)?.agentId).toBe('gw');
    expect(await agent.stop()).toBe(0);
  }, 60_000);
});
