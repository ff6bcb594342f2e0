/**
 * Issue 14.3 (agent half): the agent's `/metrics` in the Prometheus text format, scraped from the
 * agent as a child process while simulated devices on real ptys send readings to broker-lite:
 * the counters move as traffic flows, the queue gauges follow a broker outage, and the output
 * passes `promtool check metrics` (Debian's `prometheus` package).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentProcess,
  type LiteBroker,
  startBrokerLite,
  until,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';
import { parse, type Sample, value } from './helpers/prom.ts';

const socat = hasSocat();
if (!socat)
  console.warn('e2e-agent-metrics: socat missing, the pty tests are skipped (apt-get install socat)');
const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
if (!promtool)
  console.warn(
    'e2e-agent-metrics: promtool missing, the format check is skipped (apt-get install prometheus)',
  );

describe.skipIf(!socat)('issue 14.3: agent /metrics (a process, devices on ptys)', () => {
  let dir: string;
  let broker: LiteBroker;
  let agent: AgentProcess;
  let devices: WatchedDevice[];
  let base: string;
  const scrape = async () => {
    const r = await fetch(`${base}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    return r.text();
  };
  /** Scrapes until `pred` holds of the samples (every 100 ms, at most `timeoutMs`); the last scrape. */
  const scrapeUntil = async (pred: (m: Sample[]) => boolean, timeoutMs: number): Promise<Sample[]> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = parse(await scrape());
      if (pred(m) || Date.now() > end) return m;
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-metrics-'));
    broker = await startBrokerLite();
    devices = [
      await WatchedDevice.create(path.join(dir, 'tty0'), { deviceId: 'dev0', intervalMs: 50, seed: 31 }),
      await WatchedDevice.create(path.join(dir, 'tty1'), {
        deviceId: 'dev1',
        intervalMs: 50,
        seed: 32,
        faults: { garbage: 0.3 },
      }),
    ];
    const file = writeJson(path.join(dir, 'agent.json'), {
      agent: { id: 'gw', stateDir: path.join(dir, 'state'), healthInterval: 0 },
      serial: devices.map((d, i) => ({ path: d.agentPath, name: `tty${i}` })),
      mqtt: {
        url: `mqtt://127.0.0.1:${broker.port}`,
        keepalive: 10,
        reconnectMin: '50ms',
        reconnectMax: '300ms',
      },
      topics: { prefix: 'mt' },
      metrics: { listen: '127.0.0.1:0' },
    });
    agent = new AgentProcess(file);
    await agent.start();
    const listening = await agent.waitFor((l) => l.msg === 'metrics-listening', 10_000);
    base = `http://127.0.0.1:${listening.port as number}`;
    for (const d of devices) d.start();
  }, 60_000);

  afterAll(async () => {
    await agent?.kill();
    await Promise.all((devices ?? []).map((d) => d.stop()));
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('issue 14.3: counters move as readings flow; device, port, queue and MQTT metrics are there', async () => {
    expect(await until(() => devices.every((d) => d.acks.length >= 10), 15_000)).toBe(true);
    const a = parse(await scrape());
    expect(await until(() => devices.every((d) => d.acks.length >= 40), 15_000)).toBe(true);
    const b = parse(await scrape());
    const grew = (name: string, labels: Record<string, string> = {}) => {
      const before = value(a, name, labels);
      const after = value(b, name, labels);
      expect(before, `${name} ${JSON.stringify(labels)}`).toBeDefined();
      expect(after!, `${name} ${JSON.stringify(labels)}`).toBeGreaterThan(before!);
    };
    for (const device of ['dev0', 'dev1']) grew('mqtt_edge_agent_device_readings_total', { device });
    for (const port of ['tty0', 'tty1']) {
      grew('mqtt_edge_agent_port_received_bytes_total', { port });
      grew('mqtt_edge_agent_port_frames_total', { port });
      grew('mqtt_edge_agent_port_acks_sent_total', { port });
      expect(value(b, 'mqtt_edge_agent_port_up', { port })).toBe(1);
    }
    grew('mqtt_edge_agent_readings_published_total');
    grew('mqtt_edge_agent_mqtt_publishes_sent_total');
    grew('mqtt_edge_agent_mqtt_publishes_acked_total');
    for (const port of ['tty0', 'tty1']) grew('mqtt_edge_agent_port_readings_stored_total', { port });
    expect(value(b, 'mqtt_edge_agent_mqtt_connected')).toBe(1);
    expect(value(b, 'mqtt_edge_agent_device_online', { device: 'dev0', port: 'tty0' })).toBe(1);
    expect(value(b, 'mqtt_edge_agent_device_last_reading_age_seconds', { device: 'dev0' })).toBeLessThan(5);
    // The noisy line: framing errors, counted per device and per port by kind.
    expect(value(b, 'mqtt_edge_agent_device_framing_errors_total', { device: 'dev1' })).toBeGreaterThan(0);
    expect(
      b
        .filter((s) => s.name === 'mqtt_edge_agent_port_framing_errors_total' && s.labels.port === 'tty1')
        .reduce((n, s) => n + s.value, 0),
    ).toBeGreaterThan(0);
    for (const g of [
      'mqtt_edge_agent_queue_messages',
      'mqtt_edge_agent_queue_bytes',
      'mqtt_edge_agent_queue_oldest_age_seconds',
    ])
      expect(value(b, g), g).toBeGreaterThanOrEqual(0);

    // A broker outage: the queue fills on disk and the gauges say so; the reconnect is counted.
    const reconnects = value(b, 'mqtt_edge_agent_mqtt_reconnects_total')!;
    await broker.stop();
    const during = await scrapeUntil((m) => (value(m, 'mqtt_edge_agent_queue_messages') ?? 0) > 20, 10_000);
    expect(value(during, 'mqtt_edge_agent_mqtt_connected')).toBe(0);
    expect(value(during, 'mqtt_edge_agent_queue_bytes')).toBeGreaterThan(0);
    expect(value(during, 'mqtt_edge_agent_queue_oldest_age_seconds')).toBeGreaterThan(0);
    await broker.restart();
    const after = await scrapeUntil(
      (m) =>
        value(m, 'mqtt_edge_agent_mqtt_connected') === 1 && value(m, 'mqtt_edge_agent_queue_messages')! < 20,
      15_000,
    );
    expect(value(after, 'mqtt_edge_agent_mqtt_connected')).toBe(1);
    expect(value(after, 'mqtt_edge_agent_mqtt_reconnects_total')).toBeGreaterThan(reconnects);
  }, 60_000);

  it.skipIf(!promtool)('issue 14.3: the output passes promtool check metrics', async () => {
    const text = await scrape();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });

  it('issue 14.3: only GET/HEAD /metrics; anything else a 404 or 405, never a crash', async () => {
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect((await fetch(`${base}/metrics?x=1`)).status).toBe(200);
    expect(agent.exited).toBe(false);
  });
});
