/**
 * Issue 14.1: Home Assistant discovery as Home Assistant's broker connection sees it. The agent
 * (a child process) reads two simulated devices on real ptys and publishes to broker-lite; MQTT.js
 * clients play Home Assistant: a fresh subscriber reads the retained configs (what HA reads when
 * it starts), a live one sees configs come, come again after the birth message, and go (empty
 * retained payloads) when a port is removed by a reload, when a port is removed while the agent
 * was stopped, and when discovery is turned off. A command sent the way the discovered switch
 * sends it reaches the device, and its answer arrives on the switch's state topic.
 */
import path from 'node:path';
import { hasSocat, SIM_COMMANDS } from '@mqtt-edge/firmware-sim';
import mqtt, { type MqttClient } from 'mqtt';
import { describe, expect, it } from 'vitest';
import {
  AgentProcess,
  brokerWithRecorder,
  testScope,
  until,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';

const socat = hasSocat();
if (!socat)
  console.warn('e2e-agent-homeassistant: socat missing, the pty tests are skipped (apt-get install socat)');

const { cleanups, tmp } = testScope('e2e-ha');
const SENSORS = ['temp', 'hum', 'pressure', 'counter'];

/** The config topics the agent should retain for a firmware-sim device. */
function deviceTopics(device: string): string[] {
  return [
    ...SENSORS.map((s) => `homeassistant/sensor/gw/${device}__${s}/config`),
    ...SIM_COMMANDS.map((c) => `homeassistant/${c.kind}/gw/${device}__${c.name}/config`),
  ].sort();
}
const GATEWAY = [
  'homeassistant/binary_sensor/gw/gateway/config',
  'homeassistant/sensor/gw/gateway-queue/config',
  'homeassistant/sensor/gw/gateway-queue-age/config',
  'homeassistant/sensor/gw/gateway-queue-bytes/config',
].sort();

/**
 * What Home Assistant reads at its start: the retained configs under the node, as a fresh MQTT.js
 * subscriber gets them. Retained messages come before anything published after the SUBACK, so a
 * marker published then ends the snapshot (no timing guess).
 */
async function retainedConfigs(url: string): Promise<Map<string, Record<string, unknown>>> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 0 });
  try {
    const got = new Map<string, Record<string, unknown>>();
    const marker = `homeassistant/marker/${Math.random().toString(36).slice(2)}`;
    const done = new Promise<void>((resolve) => {
      c.on('message', (topic, payload, packet) => {
        if (topic === marker) resolve();
        else if (packet.retain && payload.length > 0) got.set(topic, JSON.parse(payload.toString('utf8')));
      });
    });
    await c.subscribeAsync(['homeassistant/+/gw/+/config', marker], { qos: 1 });
    await c.publishAsync(marker, 'x', { qos: 1 });
    await done;
    return got;
  } finally {
    await c.endAsync();
  }
}

/** Home Assistant's live connection: every config message, in order. */
async function watch(
  url: string,
): Promise<{ client: MqttClient; seen: Array<{ topic: string; payload: string }> }> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, reconnectPeriod: 100 });
  const seen: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString('utf8') }));
  await client.subscribeAsync('homeassistant/+/gw/+/config', { qos: 1 });
  cleanups.push(() => client.endAsync());
  return { client, seen };
}

const keysOf = (m: Map<string, unknown>) => [...m.keys()].sort();

describe.skipIf(!socat)('issue 14.1: Home Assistant discovery, seen by a real subscriber', () => {
  it('issue 14.1: configs retained per device and gateway; birth re-announces; restart keeps them; removal (reload, restart) and turning discovery off clear them', async () => {
    const dir = tmp();
    const { url, broker } = await brokerWithRecorder(cleanups, 'ha/#', 'rec-ha');
    const devices = [
      await WatchedDevice.create(path.join(dir, 'tty0'), { deviceId: 'dev0', intervalMs: 100, seed: 21 }),
      await WatchedDevice.create(path.join(dir, 'tty1'), { deviceId: 'dev1', intervalMs: 100, seed: 22 }),
    ];
    cleanups.push(() => Promise.all(devices.map((d) => d.stop())));
    const ports = devices.map((d, i) => ({ path: d.agentPath, name: `tty${i}` }));
    const base = {
      agent: { id: 'gw', stateDir: path.join(dir, 'state'), statusInterval: '200ms', healthInterval: '1s' },
      serial: ports,
      mqtt: { url, keepalive: 10, reconnectMin: '50ms', reconnectMax: '500ms' },
      topics: { prefix: 'ha' },
      homeassistant: { enabled: true, node_id: 'gw' },
    };
    const file = writeJson(path.join(dir, 'agent.json'), base);
    const agent = new AgentProcess(file);
    await agent.start();
    cleanups.push(() => agent.kill());
    for (const d of devices) d.start();
    const live = await watch(url);

    // 1. Every device that said HELLO, and the gateway, retained.
    const all = [...GATEWAY, ...deviceTopics('dev0'), ...deviceTopics('dev1')].sort();
    let snap = new Map<string, Record<string, unknown>>();
    expect(
      await until(() => all.every((t) => live.seen.some((m) => m.topic === t && m.payload !== '')), 20_000),
    ).toBe(true);
    snap = await retainedConfigs(url);
    expect(keysOf(snap)).toEqual(all);
    const temp = snap.get('homeassistant/sensor/gw/dev0__temp/config')!;
    expect(temp).toMatchObject({
      name: 'temp',
      state_topic: 'ha/dev0/temp',
      value_template: '{{ value_json.value }}',
      device_class: 'temperature',
      unit_of_measurement: '°C',
      state_class: 'measurement',
      availability: [{ topic: 'ha/dev0/status' }, { topic: 'ha/_agent/gw/status' }],
      availability_mode: 'all',
      device: {
        identifiers: ['mqtt-edge:gw:dev0'],
        name: 'dev0',
        model: 'firmware-sim',
        sw_version: 'sim-1.0.0',
        via_device: 'mqtt-edge:gw',
      },
    });
    const gw = snap.get('homeassistant/binary_sensor/gw/gateway/config')!;
    expect(gw.device).toMatchObject({ identifiers: ['mqtt-edge:gw'] });

    // The state topic carries what the template reads, and the availability topics say online.
    const state = await mqtt.connectAsync(url, { protocolVersion: 4 });
    cleanups.push(() => state.endAsync());
    const states = new Map<string, string>();
    state.on('message', (t, p) => states.set(t, p.toString('utf8')));
    await state.subscribeAsync(
      ['ha/dev0/temp', 'ha/dev0/status', 'ha/_agent/gw/status', 'ha/dev0/cmd/relay/result'],
      {
        qos: 1,
      },
    );
    expect(await until(() => states.has('ha/dev0/temp'), 5000)).toBe(true);
    expect(typeof JSON.parse(states.get('ha/dev0/temp')!).value).toBe('number');
    expect(states.get('ha/dev0/status')).toBe('online');
    expect(states.get('ha/_agent/gw/status')).toBe('online');

    // A command the way the discovered switch sends it; the answer on its state topic.
    const relay = snap.get('homeassistant/switch/gw/dev0__relay/config')!;
    await state.publishAsync(relay.command_topic as string, relay.payload_on as string, { qos: 1 });
    expect(relay.state_topic).toBe('ha/dev0/cmd/relay/result');
    expect(await until(() => states.has('ha/dev0/cmd/relay/result'), 5000)).toBe(true);
    expect(JSON.parse(states.get('ha/dev0/cmd/relay/result')!)).toEqual({ ok: true, value: true });
    expect(devices[0].sim.firmware.relay).toBe(true);

    // 2. Home Assistant restarts: its birth message brings every config again.
    const before = live.seen.length;
    await state.publishAsync('homeassistant/status', 'online', { qos: 1 });
    expect(
      await until(
        () => all.every((t) => live.seen.slice(before).some((m) => m.topic === t && m.payload !== '')),
        10_000,
      ),
    ).toBe(true);

    // 3. The agent restarts: the retained configs stay (nothing cleared), and are announced again.
    expect(await agent.stop()).toBe(0);
    expect(keysOf(await retainedConfigs(url))).toEqual(all);
    const beforeRestart = live.seen.length;
    await agent.start();
    expect(
      await until(
        () => deviceTopics('dev1').every((t) => live.seen.slice(beforeRestart).some((m) => m.topic === t)),
        20_000,
      ),
    ).toBe(true);
    expect(live.seen.filter((m) => m.payload === '')).toEqual([]);
    expect(keysOf(await retainedConfigs(url))).toEqual(all);

    // 4. A reload removes tty1: dev1's configs are cleared (empty retained payloads), dev0's stay.
    writeJson(file, { ...base, serial: [ports[0]] });
    const r = await agent.reload();
    expect(r.portsRemoved).toEqual(['tty1']);
    const cleared = (device: string, from: number) =>
      deviceTopics(device).every((t) => live.seen.slice(from).some((m) => m.topic === t && m.payload === ''));
    expect(await until(() => cleared('dev1', 0), 10_000)).toBe(true);
    expect(keysOf(await retainedConfigs(url))).toEqual([...GATEWAY, ...deviceTopics('dev0')].sort());

    // 5. tty1 back (dev1 announced again), then removed from the file while the agent is stopped:
    // cleared at the next start, without dev1 ever saying HELLO again.
    writeJson(file, base);
    const beforeBack = live.seen.length;
    await agent.reload();
    expect(
      await until(
        () =>
          deviceTopics('dev1').every((t) =>
            live.seen.slice(beforeBack).some((m) => m.topic === t && m.payload !== ''),
          ),
        20_000,
      ),
    ).toBe(true);
    expect(keysOf(await retainedConfigs(url))).toEqual(all);
    expect(await agent.stop()).toBe(0);
    writeJson(file, { ...base, serial: [ports[0]] });
    const beforeStart = live.seen.length;
    await agent.start();
    expect(await until(() => cleared('dev1', beforeStart), 10_000)).toBe(true);
    expect(keysOf(await retainedConfigs(url))).toEqual([...GATEWAY, ...deviceTopics('dev0')].sort());

    // 6. Discovery turned off: everything it announced is cleared.
    writeJson(file, { ...base, serial: [ports[0]], homeassistant: { enabled: false, node_id: 'gw' } });
    await agent.reload();
    expect(await until(() => cleared('dev0', beforeStart), 10_000)).toBe(true);
    expect(keysOf(await retainedConfigs(url))).toEqual([]);
    expect(broker.port).toBeGreaterThan(0);
  }, 120_000);
});
