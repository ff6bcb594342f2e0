/**
 * Issue 20.5: the agent polls Modbus RTU devices that nobody here wrote: Debian's pymodbus as an
 * RTU server on a socat pty, with a datastore the test sets. The agent runs as a child process and
 * publishes to broker-lite; a subscriber sees what a user would. Readings, availability, commands,
 * exceptions, Home Assistant discovery, two units on one line, and CRC garbage from a proxy.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSocatPair, hasSocat } from '@mqtt-edge/firmware-sim';
import { afterEach, describe, expect, it } from 'vitest';
import { float32Words, hasPymodbus, PtyFaultProxy, PyModbusServer } from './helpers/modbus.ts';
import {
  AGENT_BIN,
  AgentProcess,
  agentStatus,
  Recorder,
  startBrokerLite,
  until,
  writeJson,
} from './helpers/processes.ts';
import { parse, value } from './helpers/prom.ts';

const ready = hasSocat() && hasPymodbus;
if (!hasSocat()) console.warn('modbus-pymodbus: socat missing, skipped (apt-get install socat)');
if (!hasPymodbus)
  console.warn(
    'modbus-pymodbus: Debian pymodbus missing, skipped (apt-get install python3-pymodbus python3-serial-asyncio)',
  );

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Reading {
  device: string;
  sensor: string;
  value: number;
  unit?: string;
}

function readings(rec: Recorder): Reading[] {
  return rec.arrivals.map((a) => JSON.parse(a.payload) as Reading);
}

function latest(rec: Recorder, device: string, sensor: string): Reading | undefined {
  const all = readings(rec).filter((r) => r.device === device && r.sensor === sensor);
  return all[all.length - 1];
}

/** A line for the agent: its pty, and the far end (the server's, or the proxy's). */
async function line(dir: string, name: string) {
  const pair = await createSocatPair(path.join(dir, `${name}.far`), path.join(dir, `${name}.agent`));
  cleanups.push(() => pair.close());
  return pair;
}

async function start(dir: string, serial: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const broker = await startBrokerLite();
  cleanups.push(() => broker.stop());
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const rec = await Recorder.start(url, 'mb/#', 1, 'mb-rec');
  cleanups.push(() => rec.stop());
  await rec.client.subscribe({ filter: 'homeassistant/#', qos: 1 });
  const stateDir = path.join(dir, 'state');
  const config = writeJson(path.join(dir, 'agent.json'), {
    agent: { id: 'gw', stateDir, statusInterval: '100ms', healthInterval: 0 },
    serial: [serial],
    mqtt: { url, version: 5, keepalive: 5, reconnectMin: '50ms', reconnectMax: '500ms' },
    topics: { prefix: 'mb' },
    ...extra,
  });
  const agent = new AgentProcess(config);
  await agent.start();
  cleanups.push(() => agent.kill());
  return { rec, agent, stateDir, config };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const statusOf = (rec: Recorder, device: string) =>
  rec.other.filter((m) => m.topic === `mb/${device}/status`).map((m) => m.payload);

describe.skipIf(!ready)('issue 20.5: Modbus RTU against pymodbus', () => {
  it('issue 20.5: typed, scaled values arrive; a register changed on the server shows at the next poll; writes land; an exception is an error reply and a counter; Home Assistant entities', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mb-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const pair = await line(dir, 'tty');
    const server = await PyModbusServer.start(pair.devicePath, [1]);
    cleanups.push(() => server.stop());
    await server.set(1, 'hr', 0, float32Words(230.5));
    await server.set(1, 'ir', 0, [65536 - 123, 123456 & 0xffff, 123456 >>> 16, 0xffff, 0xfffe]);
    await server.set(1, 'di', 0, [true]);
    await server.set(1, 'hr', 10, [200]);
    const { rec, agent, stateDir } = await start(
      dir,
      {
        name: 'rs485',
        path: pair.agentPath,
        protocol: 'modbus-rtu',
        baud: 9600,
        responseTimeout: '500ms',
        retries: 1,
        offlineAfter: 2,
        devices: [
          {
            id: 'meter',
            unit: 1,
            model: 'TestMeter',
            interval: '250ms',
            registers: [
              { name: 'voltage', table: 'holding', address: 0, type: 'float32', unit: 'V' },
              { name: 'temp', table: 'input', address: 0, type: 'int16', scale: 0.1, unit: 'Cel' },
              {
                name: 'energy',
                table: 'input',
                address: 1,
                type: 'uint32',
                wordOrder: 'little',
                scale: 0.01,
                unit: 'kWh',
              },
              { name: 'count', table: 'input', address: 3, type: 'int32' },
              { name: 'door', table: 'discrete', address: 0 },
              { name: 'relay', table: 'coil', address: 0, writable: true },
              {
                name: 'setpoint',
                table: 'holding',
                address: 10,
                scale: 0.1,
                unit: 'Cel',
                writable: true,
                min: 5,
                max: 30,
              },
              { name: 'ghost', table: 'holding', address: 150, writable: true, interval: '1s' },
            ],
          },
        ],
      },
      { homeassistant: { enabled: true } },
    );

    const want: Array<[string, number, string | undefined]> = [
      ['voltage', 230.5, 'V'],
      ['temp', -12.3, 'Cel'],
      ['energy', 1234.56, 'kWh'],
      ['count', -2, undefined],
      ['door', 1, undefined],
      ['relay', 0, undefined],
      ['setpoint', 20, 'Cel'],
    ];
    expect(await until(() => want.every(([s]) => latest(rec, 'meter', s) !== undefined), 10_000)).toBe(true);
    for (const [sensor, value, unit] of want)
      expect(latest(rec, 'meter', sensor), sensor).toMatchObject({ value, ...(unit ? { unit } : {}) });
    expect(statusOf(rec, 'meter')).toContain('online');

    // Changed on the server: the next poll brings it.
    await server.set(1, 'ir', 0, [456]);
    expect(await until(() => latest(rec, 'meter', 'temp')?.value === 45.6, 3000)).toBe(true);

    // Writes: a holding register in engineering units, a coil; the replies say what was written.
    const replies: Record<string, unknown>[] = [];
    rec.client.on('message', (topic, payload) => {
      if (topic.startsWith('mb/replies/'))
        replies.push({ topic, ...JSON.parse(Buffer.from(payload).toString()) });
    });
    await rec.client.subscribe({ filter: 'mb/replies/#', qos: 1 });
    const command = (name: string, payload: string, reply = name) =>
      rec.client.publish(`mb/meter/cmd/${name}`, payload, {
        qos: 1,
        properties: { responseTopic: `mb/replies/${reply}` },
      });
    await command('setpoint', '21.5');
    await command('relay', 'true');
    await command('ghost', '5');
    await command('temp', '1');
    await command('setpoint', '99', 'setpoint-out-of-range');
    expect(await until(() => replies.length >= 5, 5000)).toBe(true);
    const reply = (name: string) => replies.find((r) => r.topic === `mb/replies/${name}`);
    expect(reply('setpoint')).toMatchObject({ ok: true, value: 21.5 });
    expect(reply('relay')).toMatchObject({ ok: true, value: true });
    expect(reply('ghost')).toMatchObject({ ok: false, error: 'modbus exception 2 (illegal data address)' });
    expect(reply('temp')).toMatchObject({
      ok: false,
      error: 'meter has no writable register temp (writable: relay, setpoint, ghost)',
    });
    expect(reply('setpoint-out-of-range')).toMatchObject({
      ok: false,
      error: 'setpoint takes 5..30; got 99',
    });
    expect(await server.get(1, 'hr', 10)).toEqual([215]);
    expect(await server.get(1, 'co', 0)).toEqual([true]);
    // The new values read back without waiting for their interval to come round.
    expect(await until(() => latest(rec, 'meter', 'setpoint')?.value === 21.5, 2000)).toBe(true);
    expect(await until(() => latest(rec, 'meter', 'relay')?.value === 1, 2000)).toBe(true);

    // The ghost group is refused every second: counted, logged once, and the device stays online.
    expect(await until(() => (agentStatus(stateDir)?.ports[0].counters.pollExceptions ?? 0) >= 2, 5000)).toBe(
      true,
    );
    const st = agentStatus(stateDir)!.ports[0];
    expect(st.framing).toBe('modbus-rtu');
    expect(st.devices).toEqual([{ id: 'meter', unit: 1, online: true, missedPolls: 0 }]);
    expect(st.counters.modbusExceptions).toBeGreaterThanOrEqual(3);
    expect(st.counters.writeErrors).toBe(1);
    expect(agent.events('modbus-exception')).toHaveLength(1);
    expect(agent.events('modbus-exception')[0]).toMatchObject({
      device: 'meter',
      address: 150,
      exception: 2,
    });
    expect(statusOf(rec, 'meter')).not.toContain('offline');
    const cli = spawnSync(process.execPath, [AGENT_BIN, 'status', '--state-dir', stateDir], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(
      /port rs485 \(.*, modbus-rtu\): open .*polls \d+, .*exceptions \d+.*; meter \(unit 1\) online/,
    );

    // Home Assistant: a sensor per register, a number and a switch for the writable ones.
    const ha = (t: string) => rec.other.find((m) => m.topic === t && m.payload !== '');
    expect(await until(() => ha('homeassistant/switch/gw/meter__relay/config') !== undefined, 3000)).toBe(
      true,
    );
    expect(JSON.parse(ha('homeassistant/sensor/gw/meter__voltage/config')!.payload)).toMatchObject({
      state_topic: 'mb/meter/voltage',
      device_class: 'voltage',
      unit_of_measurement: 'V',
      device: { model: 'TestMeter', name: 'meter' },
    });
    expect(JSON.parse(ha('homeassistant/number/gw/meter__setpoint/config')!.payload)).toMatchObject({
      command_topic: 'mb/meter/cmd/setpoint',
      min: 5,
      max: 30,
      step: 0.1,
    });
  });

  it('issue 20.5: two units on one line are polled in turn; a silent unit goes offline after offlineAfter missed polls and comes back by itself', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mb-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const pair = await line(dir, 'tty');
    const server = await PyModbusServer.start(pair.devicePath, [1, 2], 19200);
    cleanups.push(() => server.stop());
    await server.set(1, 'ir', 0, [11]);
    await server.set(2, 'ir', 0, [22]);
    const probe = (unit: number) => ({
      id: `probe${unit}`,
      unit,
      interval: '200ms',
      registers: [{ name: 'level', table: 'input', address: 0 }],
    });
    const { rec, agent, stateDir } = await start(
      dir,
      {
        name: 'bus',
        path: pair.agentPath,
        protocol: 'modbus-rtu',
        baud: 19200,
        parity: 'none',
        responseTimeout: '300ms',
        retries: 0,
        offlineAfter: 2,
        devices: [probe(1), probe(2)],
      },
      { metrics: { listen: '127.0.0.1:0' } },
    );
    expect(await until(() => readings(rec).length >= 12, 10_000)).toBe(true);
    const order = readings(rec)
      .slice(0, 12)
      .map((r) => r.device);
    for (let i = 1; i < order.length; i++)
      expect(order[i], `reading ${i}: ${order.join(' ')}`).not.toBe(order[i - 1]);
    expect(readings(rec).find((r) => r.device === 'probe2')?.value).toBe(22);

    await server.silent(2, true);
    expect(await until(() => statusOf(rec, 'probe2').includes('offline'), 5000)).toBe(true);
    const offlineAt = readings(rec).length;
    expect(agent.events('modbus-no-answer')[0]).toMatchObject({ device: 'probe2', unit: 2, missedPolls: 2 });
    expect(
      await until(
        () => agentStatus(stateDir)?.ports[0].devices?.find((d) => d.id === 'probe2')?.online === false,
        2000,
      ),
    ).toBe(true);
    // Unit 1 goes on meanwhile.
    expect(
      await until(
        () =>
          readings(rec)
            .slice(offlineAt)
            .filter((r) => r.device === 'probe1').length >= 3,
        3000,
      ),
    ).toBe(true);
    expect(
      readings(rec)
        .slice(offlineAt)
        .some((r) => r.device === 'probe2'),
    ).toBe(false);

    await server.set(2, 'ir', 0, [23]);
    await server.silent(2, false);
    expect(
      await until(
        () => statusOf(rec, 'probe2').lastIndexOf('online') > statusOf(rec, 'probe2').indexOf('offline'),
        5000,
      ),
    ).toBe(true);
    expect(await until(() => latest(rec, 'probe2', 'level')?.value === 23, 3000)).toBe(true);
    const counts = await server.requests();
    expect(Math.abs(counts['1'] - counts['2'])).toBeLessThan(counts['1']);

    // /metrics: the line's families, and both units online again; promtool accepts the text.
    const listening = await agent.waitFor((l) => l.msg === 'metrics-listening', 5000);
    const scrape = async () => (await fetch(`http://127.0.0.1:${listening.port as number}/metrics`)).text();
    let text = await scrape();
    for (let end = Date.now() + 3000; Date.now() < end; text = await sleep(100).then(scrape))
      if (value(parse(text), 'mqtt_edge_agent_device_online', { device: 'probe2' }) === 1) break;
    const m = parse(text);
    expect(value(m, 'mqtt_edge_agent_device_online', { device: 'probe1', port: 'bus' })).toBe(1);
    expect(value(m, 'mqtt_edge_agent_device_online', { device: 'probe2', port: 'bus' })).toBe(1);
    expect(value(m, 'mqtt_edge_agent_modbus_responses_total', { port: 'bus' })).toBeGreaterThan(10);
    expect(
      value(m, 'mqtt_edge_agent_modbus_errors_total', { port: 'bus', kind: 'timeout' }),
    ).toBeGreaterThanOrEqual(2);
    if (spawnSync('promtool', ['--version']).status === 0) {
      const r = spawnSync('promtool', ['check', 'metrics'], {
        input: text,
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(`${r.stdout}${r.stderr}`).toBe('');
    }
  });

  it('issue 20.5: CRC garbage from a fault-injecting pty proxy is counted, retried and survived; noise between frames too', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mb-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const agentLine = await line(dir, 'a');
    const serverLine = await line(dir, 's');
    const proxy = await PtyFaultProxy.start(agentLine.devicePath, serverLine.agentPath);
    cleanups.push(() => proxy.close());
    const server = await PyModbusServer.start(serverLine.devicePath, [7]);
    cleanups.push(() => server.stop());
    await server.set(7, 'hr', 0, [100]);
    const { rec, agent, stateDir } = await start(dir, {
      name: 'noisy',
      path: agentLine.agentPath,
      protocol: 'modbus-rtu',
      responseTimeout: '300ms',
      retries: 2,
      offlineAfter: 3,
      devices: [
        { id: 'plc', unit: 7, interval: '150ms', registers: [{ name: 'x', table: 'holding', address: 0 }] },
      ],
    });
    expect(await until(() => latest(rec, 'plc', 'x')?.value === 100, 10_000)).toBe(true);

    proxy.corrupt = 6;
    for (let i = 0; i < 5; i++)
      proxy.inject(Uint8Array.from([0x07, 0x03, 0xff, 0x00, 0x55, 0xaa].slice(0, 2 + i)));
    expect(await until(() => proxy.corrupt === 0, 5000)).toBe(true);
    await server.set(7, 'hr', 0, [101]);
    expect(await until(() => latest(rec, 'plc', 'x')?.value === 101, 5000)).toBe(true);

    expect(
      await until(
        () => (agentStatus(stateDir)?.ports[0].counters.framingErrors ?? 0) >= proxy.corrupted,
        3000,
      ),
    ).toBe(true);
    const c = agentStatus(stateDir)!.ports[0].counters;
    expect(c.modbusErrorsCrc).toBeGreaterThanOrEqual(1);
    expect(c.modbusRetries).toBeGreaterThanOrEqual(1);
    expect(agent.exited).toBe(false);
    // Every reading is still what the server holds: nothing corrupted got through.
    expect(readings(rec).every((r) => r.value === 100 || r.value === 101)).toBe(true);
    expect(agent.events('modbus-line-errors').length).toBeGreaterThanOrEqual(1);
  });

  it('issue 20.1: a reload that adds a register to a Modbus device applies it: the new reading arrives, the others go on', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mb-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const pair = await line(dir, 'tty');
    const server = await PyModbusServer.start(pair.devicePath, [5]);
    cleanups.push(() => server.stop());
    await server.set(5, 'ir', 0, [50, 51]);
    const port = (registers: unknown[]) => ({
      name: 'bus',
      path: pair.agentPath,
      protocol: 'modbus-rtu',
      responseTimeout: '500ms',
      devices: [{ id: 'probe', unit: 5, interval: '200ms', registers }],
    });
    const a = { name: 'a', table: 'input', address: 0 };
    const { rec, agent, config } = await start(dir, port([a]));
    expect(await until(() => latest(rec, 'probe', 'a')?.value === 50, 10_000)).toBe(true);
    const doc = JSON.parse(readFileSync(config, 'utf8'));
    doc.serial = [port([a, { name: 'b', table: 'input', address: 1 }])];
    writeJson(config, doc);
    const reloaded = await agent.reload();
    expect(reloaded.msg).toBe('config-reloaded');
    expect(await until(() => latest(rec, 'probe', 'b')?.value === 51, 5000)).toBe(true);
    const after = readings(rec).length;
    expect(
      await until(
        () =>
          readings(rec)
            .slice(after)
            .some((r) => r.sensor === 'a'),
        3000,
      ),
    ).toBe(true);
    expect(statusOf(rec, 'probe').at(-1)).toBe('online');
  });
});
