/**
 * Issue 15.2: `per_listener_settings true` with several listeners, as Mosquitto: each listener
 * has its own allow_anonymous, password_file and acl_file. The common setup: an anonymous
 * WebSocket listener for a dashboard that may only read, an authenticated TCP listener for the
 * devices.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { describeConfig, loadSecurity } from '../src/config-build.ts';
import { hashPassword } from '../src/passwd.ts';
import { type ConfiguredBroker, startConfigured } from './helpers/config-broker.ts';
import { RawClient } from './helpers/raw-client.ts';

const dirs: string[] = [];
const running: ConfiguredBroker[] = [];
afterEach(async () => {
  for (const b of running.splice(0)) await b.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const CONF = `per_listener_settings true

# devices: TCP, a password each, their own topics
listener 0 127.0.0.1
allow_anonymous false
password_file passwd
acl_file acl.devices

# the dashboard: WebSocket, anonymous, read only
listener 0 127.0.0.1
protocol websockets
allow_anonymous true
acl_file acl.dashboard
`;

async function setup(conf = CONF): Promise<{ b: ConfiguredBroker; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-pls-'));
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, 'passwd'), `dev1:${await hashPassword('s3cret', { iterations: 10 })}\n`);
  fs.writeFileSync(path.join(dir, 'acl.devices'), 'user dev1\ntopic readwrite sensors/dev1/#\n');
  fs.writeFileSync(path.join(dir, 'acl.dashboard'), 'topic read sensors/#\n');
  const b = await startConfigured(dir, conf);
  running.push(b);
  return { b, dir };
}

describe('issue 15.2: per_listener_settings true', () => {
  it('issue 15.2: anonymous WebSocket dashboard, authenticated TCP devices: each listener its own login rules', async () => {
    const { b } = await setup();
    const [tcp, ws] = b.ports;
    // TCP: anonymous refused, the device's password admitted, a wrong one refused
    const anon = await RawClient.connect(tcp, { clientId: 'anon-tcp' });
    expect(anon.connack.reasonCode).toBe(5);
    const bad = await RawClient.connect(tcp, {
      clientId: 'bad',
      username: 'dev1',
      password: Buffer.from('wrong'),
    });
    expect(bad.connack.reasonCode).toBe(5);
    const dev = await RawClient.connect(tcp, {
      clientId: 'dev1',
      username: 'dev1',
      password: Buffer.from('s3cret'),
    });
    expect(dev.connack.reasonCode).toBe(0);
    // WebSocket: anonymous admitted
    const dash = await mqtt.connectAsync(`ws://127.0.0.1:${ws}/mqtt`, {
      reconnectPeriod: 0,
      clientId: 'dash',
    });
    const got: string[] = [];
    dash.on('message', (topic, payload) => got.push(`${topic}=${payload}`));
    const granted = await dash.subscribeAsync('sensors/#', { qos: 0 });
    expect(granted[0].qos).toBe(0);
    // the device's reading reaches the dashboard (the device ACL lets it write, the dashboard's read)
    dev.client.publish('sensors/dev1/t', '21.5', 1, false, 1);
    expect((await dev.client.expect('puback')).packetId).toBe(1);
    // the dashboard may not write (its listener's ACL): dropped, never delivered
    await dash.publishAsync('sensors/dev1/cmd', 'off', { qos: 1 });
    await dev.client.subscribe('sensors/dev1/#', 0, 2);
    dev.client.publish('sensors/dev1/t', '21.6', 0);
    expect((await dev.client.expect('publish')).topic).toBe('sensors/dev1/t');
    expect(await dev.client.silent(200)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual(['sensors/dev1/t=21.5', 'sensors/dev1/t=21.6']);
    // the device's ACL, not the dashboard's, decides what the device may read: a filter no read
    // rule of its listener can match is refused (the dashboard's 'topic read sensors/#' would)
    dev.client.send({
      type: 'subscribe',
      packetId: 3,
      subscriptions: [{ topicFilter: 'sensors/dev2/#', qos: 0 }],
    });
    expect((await dev.client.expect('suback')).reasonCodes).toEqual([0x80]);
    await dash.endAsync();
    dev.client.close();
  });

  it('issue 15.2: a listener without allow_anonymous refuses anonymous clients (Mosquitto 2)', async () => {
    const conf =
      'per_listener_settings true\nlistener 0 127.0.0.1\nlistener 0 127.0.0.1\nallow_anonymous true\n';
    const cfg = parseConfig(conf, '/tmp/pls.conf');
    expect(cfg.listeners.map((l) => l.security?.allowAnonymous)).toEqual([false, true]);
    const { b } = await setup(conf);
    const refused = await RawClient.connect(b.ports[0], { clientId: 'a0' });
    expect(refused.connack.reasonCode).toBe(5);
    const admitted = await RawClient.connect(b.ports[1], { clientId: 'a1' });
    expect(admitted.connack.reasonCode).toBe(0);
    admitted.client.close();
  });

  it('issue 15.2: per_listener_settings after a security key is an error, as in Mosquitto', () => {
    expect(() => parseConfig('allow_anonymous true\nper_listener_settings true\n', '/tmp/p.conf')).toThrow(
      /per_listener_settings must be set before any other security settings/,
    );
    expect(() => parseConfig('password_file /x\nper_listener_settings true\n', '/tmp/p.conf')).toThrow(
      ConfigError,
    );
  });

  it('issue 15.2: broker-lite check shows each listener its security; loadSecurity loads each file once', async () => {
    const { dir } = await setup();
    const cfg = parseConfig(CONF, path.join(dir, 'mosquitto.conf'));
    const sec = await loadSecurity(cfg);
    expect(sec.listeners?.length).toBe(2);
    const text = describeConfig(cfg, sec);
    expect(text).toContain('per_listener_settings true');
    expect(text).toMatch(
      /listener 0 127\.0\.0\.1[^\n]*\n(?: {2}[^\n]*\n)* {2}allow_anonymous false\n {2}password_file [^\n]*passwd \(1 users\)/,
    );
    expect(text).toMatch(
      / {2}allow_anonymous true\n {2}password_file \(none\)\n {2}acl_file [^\n]*acl\.dashboard/,
    );
  });
});
