/**
 * Issue 14.3: broker-lite's Prometheus metrics on `metrics_listener`: the text format checked by
 * Debian's `promtool check metrics` while traffic flows, counters that move with it (messages
 * by QoS and bytes on the wire, drops by reason, persistence syncs and their time), gauges for
 * what is held (connections, subscriptions, retained), bridges with their state and backlog.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBridges } from '../src/bridge.ts';
import { parseConfig } from '../src/config.ts';
import { buildBrokerOptions } from '../src/config-build.ts';
import { Broker } from '../src/index.ts';

const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find(
  (p) => spawnSync(p, ['--version']).status === 0,
);
if (PROMTOOL === undefined)
  console.warn('metrics test: promtool missing (Debian package prometheus): the format check is skipped');

const dir = mkdtempSync(join(tmpdir(), 'bl-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function scrape(
  port: number,
  path = '/metrics',
  method = 'GET',
): Promise<{ status: number; type: string; text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: r.status, type: r.headers.get('content-type') ?? '', text: await r.text() };
}

/** The value of one sample (`name{labels}` exactly as exposed), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (line.slice(0, sp) === series) return Number(line.slice(sp + 1));
  }
  return undefined;
}

function promtool(text: string): { ok: boolean; out: string } {
  const r = spawnSync(PROMTOOL as string, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

describe('issue 14.3: /metrics on metrics_listener', () => {
  let broker: Broker;
  let port: number;
  let mqttPort: number;
  beforeAll(async () => {
    broker = new Broker({
      listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
      metricsListener: { port: 0, host: '127.0.0.1' },
      persistenceDir: join(dir, 'db'),
      sysInterval: 0,
    });
    await broker.listen();
    port = (broker.metricsAddress as { port: number }).port;
    mqttPort = broker.addresses[0].port;
  });
  afterAll(() => broker.close());

  it('issue 14.3: GET and HEAD /metrics in the text format; other paths 404, other methods 405', async () => {
    const r = await scrape(port);
    expect(r.status).toBe(200);
    expect(r.type).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.text).toMatch(/^# HELP mqtt_edge_broker_info /);
    expect(sample(r.text, 'mqtt_edge_broker_persistence_enabled')).toBe(1);
    expect((await scrape(port, '/metrics', 'HEAD')).text).toBe('');
    expect((await scrape(port, '/')).status).toBe(404);
    expect((await scrape(port, '/metrics', 'POST')).status).toBe(405);
  });

  it('issue 14.3: counters move with traffic (by QoS), gauges follow what is held, promtool accepts it under load', async () => {
    const before = (await scrape(port)).text;
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    await sub.subscribeAsync('m/#', { qos: 2 });
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    const N = 200;
    let got = 0;
    const all = new Promise<void>((resolve) => {
      sub.on('message', () => {
        if (++got === 3 * N) resolve();
      });
    });
    // Scrapes while the messages flow: the exposition is built between them.
    const scrapes: Array<Promise<string>> = [];
    const payload = Buffer.alloc(100, 1);
    // MQTT.js (5.16) ignores the server's Receive Maximum (100 here, max_inflight_messages since
    // issue 15): the test keeps within it, as a client must, 40 QoS 1 and 40 QoS 2 at a time.
    let window: Array<Promise<unknown>> = [];
    for (let i = 0; i < N; i++) {
      pub.publish('m/0', payload, { qos: 0 });
      window.push(pub.publishAsync('m/1', payload, { qos: 1 }));
      window.push(pub.publishAsync('m/2', payload, { qos: 2 }));
      if (i % 50 === 0) scrapes.push(scrape(port).then((r) => r.text));
      if (window.length >= 80) {
        await Promise.all(window);
        window = [];
      }
    }
    await Promise.all(window);
    await pub.publishAsync('m/retained', 'r', { qos: 1, retain: true });
    await all;
    const during = await Promise.all(scrapes);
    const after = (await scrape(port)).text;
    for (const q of [0, 1, 2]) {
      const inc = (s: string) => sample(s, `mqtt_edge_broker_messages_received_total{qos="${q}"}`) ?? 0;
      expect(inc(after) - inc(before)).toBeGreaterThanOrEqual(N);
      const out = (s: string) => sample(s, `mqtt_edge_broker_messages_sent_total{qos="${q}"}`) ?? 0;
      expect(out(after) - out(before)).toBeGreaterThanOrEqual(N);
    }
    const grew = (name: string) => (sample(after, name) ?? 0) - (sample(before, name) ?? 0);
    expect(grew('mqtt_edge_broker_bytes_received_total')).toBeGreaterThan(3 * N * 100);
    expect(grew('mqtt_edge_broker_packets_sent_total')).toBeGreaterThan(3 * N);
    expect(grew('mqtt_edge_broker_connects_total')).toBe(2);
    // QoS 1/2 to a persistent store: group commits, each with its fdatasync timed.
    expect(grew('mqtt_edge_broker_persistence_syncs_total')).toBeGreaterThan(0);
    expect(grew('mqtt_edge_broker_persistence_written_bytes_total')).toBeGreaterThan(0);
    expect(sample(after, 'mqtt_edge_broker_persistence_unwritten_entries_total')).toBeGreaterThanOrEqual(0);
    expect(grew('mqtt_edge_broker_persistence_sync_seconds_count')).toBeGreaterThan(0);
    expect(grew('mqtt_edge_broker_persistence_sync_seconds_sum')).toBeGreaterThan(0);
    expect(sample(after, 'mqtt_edge_broker_clients_connected')).toBe(2);
    expect(sample(after, 'mqtt_edge_broker_subscriptions')).toBe(1);
    expect(sample(after, 'mqtt_edge_broker_retained_messages')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'mqtt_edge_broker_persistence_lag_seconds')).toBeGreaterThanOrEqual(0);
    if (PROMTOOL !== undefined)
      for (const text of [...during, after]) {
        const r = promtool(text);
        expect(r.out).toBe('');
        expect(r.ok).toBe(true);
      }
    await pub.endAsync();
    await sub.endAsync();
  });

  it('issue 14.3: drops are counted by reason (a message larger than a client accepts: too_large)', async () => {
    const before =
      sample((await scrape(port)).text, 'mqtt_edge_broker_messages_dropped_total{reason="too_large"}') ?? 0;
    const small = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      properties: { maximumPacketSize: 200 },
    });
    await small.subscribeAsync('big/#', { qos: 0 });
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
    });
    await pub.publishAsync('big/x', Buffer.alloc(1000), { qos: 1 });
    const deadline = Date.now() + 5000;
    let now = before;
    while (now === before && Date.now() < deadline) {
      now =
        sample((await scrape(port)).text, 'mqtt_edge_broker_messages_dropped_total{reason="too_large"}') ?? 0;
    }
    expect(now).toBe(before + 1);
    await pub.endAsync();
    await small.endAsync();
  });
});

describe('issue 14.3: bridges in /metrics and $SYS', () => {
  it('issue 14.3: a bridge that cannot connect: bridge_up 0, its state, its backlog; $SYS bridge_state', async () => {
    const cfg = parseConfig(
      `listener 0 127.0.0.1\nallow_anonymous true\nmetrics_listener 0 127.0.0.1\nsys_interval 1\nconnection up\naddress 127.0.0.1:1\ntopic out/# out 1\nrestart_timeout 30\n`,
      join(dir, 'bridge.conf'),
    );
    const { options } = await buildBrokerOptions(cfg, { log() {} });
    const broker = new Broker(options);
    await broker.listen();
    const bridges = await startBridges(broker, cfg.bridges, { queueDir: (n) => join(dir, `q-${n}`) });
    try {
      const port = (broker.metricsAddress as { port: number }).port;
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.addresses[0].port}`, {
        reconnectPeriod: 0,
      });
      for (let i = 0; i < 5; i++) await c.publishAsync('out/x', String(i), { qos: 1 });
      let text = '';
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        text = (await scrape(port)).text;
        if (sample(text, 'mqtt_edge_broker_bridge_queue_messages{bridge="up"}') === 5) break;
      }
      expect(sample(text, 'mqtt_edge_broker_bridge_up{bridge="up"}')).toBe(0);
      expect(sample(text, 'mqtt_edge_broker_bridge_queue_messages{bridge="up"}')).toBe(5);
      expect(
        sample(text, 'mqtt_edge_broker_bridge_connect_failures_total{bridge="up"}'),
      ).toBeGreaterThanOrEqual(1);
      const state = bridges.list[0].state;
      expect(sample(text, `mqtt_edge_broker_bridge_state{bridge="up",state="${state}"}`)).toBe(1);
      expect(sample(text, 'mqtt_edge_broker_bridge_state{bridge="up",state="connected"}')).toBe(0);
      if (PROMTOOL !== undefined) expect(promtool(text).out).toBe('');
      // $SYS: the bridge's own state beside Mosquitto's 1/0.
      const at = `$SYS/broker/connection/${hostname()}.up`;
      const seen = new Map<string, string>();
      const both = new Promise<void>((resolve) => {
        c.on('message', (t, p) => {
          seen.set(t, p.toString());
          if (seen.has(`${at}/bridge_state`) && seen.has(`${at}/state`)) resolve();
        });
      });
      const sys = await c.subscribeAsync(`${at}/#`);
      expect(sys[0].qos).toBe(0);
      await both;
      expect(['connecting', 'waiting']).toContain(seen.get(`${at}/bridge_state`));
      expect(seen.get(`${at}/state`)).toBe('0');
      await c.endAsync();
    } finally {
      await bridges.close();
      await broker.close();
    }
  });
});

describe('issue 14.3: config key metrics_listener', () => {
  const FILE = join(dir, 'mosquitto.conf');
  it('issue 14.3: metrics_listener PORT [ADDRESS]; once; not on a listener port', async () => {
    const cfg = parseConfig('listener 1883\nmetrics_listener 9234 127.0.0.1\n', FILE);
    expect(cfg.metricsListener).toMatchObject({ port: 9234, host: '127.0.0.1' });
    expect((await buildBrokerOptions(cfg, { log() {} })).options.metricsListener).toEqual({
      port: 9234,
      host: '127.0.0.1',
    });
    expect(parseConfig('listener 1883\n', FILE).metricsListener).toBeUndefined();
    expect(() => parseConfig('metrics_listener 9234\nmetrics_listener 9235\n', FILE)).toThrow(/already set/);
    expect(() => parseConfig('listener 1883\nmetrics_listener 1883\n', FILE)).toThrow(/already a listener/);
    expect(() => parseConfig('metrics_listener\n', FILE)).toThrow(/expected: metrics_listener PORT/);
  });
});
