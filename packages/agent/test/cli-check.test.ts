/**
 * `mqtt-edge-agent check` as a user runs it: the resolved config it prints uses the keys of the
 * config file (YAML text, or JSON with --json), and what it prints is itself a valid config that
 * resolves to the same settings.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configDocument, parseConfig } from '../src/config.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/mqtt-edge-agent.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FILE = `agent:
  id: gw-7
  stateDir: state
  statusInterval: 500ms
  healthInterval: 1m
serial:
  - path: /dev/ttyUSB0
    baud: 9600
  - usb: { vendorId: "0403", serialNumber: A1 }
    framing: key-value
    device: boiler
mqtt:
  url: mqtts://broker.example:8883
  username: gw
  password: secret
  persistentSession: true
  sessionExpiry: 2h
  reconnectMin: 100ms
queue:
  fsync: 250ms
  maxBytes: 64MiB
  maxAge: 7d
`;

/** Every key of every mapping in a document, as dotted paths without list indices. */
function keyPaths(v: unknown, p = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x) => keyPaths(x, p));
  if (typeof v !== 'object' || v === null) return [];
  return Object.entries(v).flatMap(([k, x]) => [p + k, ...keyPaths(x, `${p + k}.`)]);
}

const INTERNAL = /Ms$|S$|^(agent\.)?(statusIntervalMs|sessionExpiryS)$/;

describe('issue 13: mqtt-edge-agent check prints the config file keys', () => {
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, FILE);
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [BIN, 'check', '-c', file, ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, MQTT_EDGE_PASSWORD: '' },
    });

  it('issue 13: check (text) prints YAML with the file keys, password masked, and it reads back the same', () => {
    const r = run();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^.*agent\.yaml: ok$/m);
    const doc = parse(r.stdout.slice(r.stdout.indexOf('\n') + 1));
    const keys = keyPaths(doc);
    expect(keys).toContain('agent.statusInterval');
    expect(keys).toContain('mqtt.sessionExpiry');
    expect(keys.filter((k) => INTERNAL.test(k.split('.').pop()!))).toEqual([]);
    expect(doc.agent.statusInterval).toBe('500ms');
    expect(doc.mqtt.sessionExpiry).toBe('2h');
    expect(doc.mqtt.password).toBe('********');
    const original = parseConfig(parse(FILE), { baseDir: dir, env: {} });
    const again = parseConfig(
      { ...doc, mqtt: { ...doc.mqtt, password: 'secret' } },
      { baseDir: dir, env: {} },
    );
    expect(again).toEqual(original);
  });

  it('issue 13: check --json prints the same keys', () => {
    const r = run('--json');
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(keyPaths(doc).filter((k) => INTERNAL.test(k.split('.').pop()!))).toEqual([]);
    expect(doc.queue).toMatchObject({ fsync: '250ms', maxBytes: '64MiB', maxAge: '7d' });
    expect(doc.serial[1]).toEqual({
      name: 'boiler',
      usb: { vendorId: '0403', serialNumber: 'A1' },
      baud: 115200,
      framing: 'key-value',
      device: 'boiler',
      writeTimeout: '5s',
    });
  });

  it('issue 13: configDocument round-trips every default', () => {
    const c = parseConfig(
      { serial: [{ path: '/dev/ttyACM0' }], mqtt: { url: 'mqtt://127.0.0.1' } },
      { baseDir: dir, env: {} },
    );
    expect(parseConfig(configDocument(c), { baseDir: dir, env: {} })).toEqual(c);
  });
});

describe('issue 14: check shows the homeassistant and metrics settings', () => {
  it('issue 14: check prints homeassistant (with its defaults) and metrics, and they read back the same', () => {
    const file = path.join(dir, 'ha.yaml');
    writeFileSync(
      file,
      'serial: [{ path: /dev/ttyUSB0 }]\nmqtt: { url: "mqtt://127.0.0.1" }\nagent: { id: gw-9 }\nhomeassistant: { enabled: true }\nmetrics: { listen: "127.0.0.1:9101" }\n',
    );
    const r = spawnSync(process.execPath, [BIN, 'check', '-c', file, '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.homeassistant).toEqual({ enabled: true, discovery_prefix: 'homeassistant', node_id: 'gw-9' });
    expect(doc.metrics).toEqual({ listen: '127.0.0.1:9101' });
    const c = parseConfig(parse(readFileSync(file, 'utf8')), { baseDir: dir, env: {} });
    expect(parseConfig(doc, { baseDir: dir, env: {} })).toEqual(c);
  });
});
