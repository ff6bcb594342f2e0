/**
 * broker-lite with real clients started by the test: Debian's mosquitto_pub / mosquitto_sub,
 * Debian's python3-paho-mqtt (the classic callback flow), and MQTT.js over 3.1.1 and 5.0.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Broker } from '@mqtt-edge/broker-lite';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const has = (bin: string) => fs.existsSync(bin);
const HAS_CLIENTS = has('/usr/bin/mosquitto_pub') && has('/usr/bin/mosquitto_sub');
const HAS_PAHO =
  has('/usr/bin/python3') &&
  (() => {
    try {
      execFileSync('/usr/bin/python3', ['-c', 'import paho.mqtt.client']);
      return true;
    } catch {
      return false;
    }
  })();
if (!HAS_CLIENTS) console.warn('mosquitto-clients not installed: mosquitto_pub/sub interop skipped');
if (!HAS_PAHO) console.warn('python3-paho-mqtt not installed: paho interop skipped');

let broker: Broker;
let port: number;
beforeAll(async () => {
  broker = new Broker({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }],
    sysInterval: 0,
    allowAnonymous: true,
    authFailureDelayMs: 0,
    authenticator: {
      authenticate: ({ username, password }) =>
        username === 'alice' && password !== undefined && Buffer.from(password).toString() === 'secret',
    },
  });
  await broker.listen();
  port = broker.addresses[0].port;
});
afterAll(() => broker.close());

/** Resolves once the broker holds at least `n` subscriptions (a subscriber process is ready). */
async function subscriptions(n: number): Promise<void> {
  const until = Date.now() + 5000;
  while (broker.stats().subscriptions < n) {
    if (Date.now() > until) throw new Error(`never saw ${n} subscriptions`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(!HAS_CLIENTS)('mosquitto_pub / mosquitto_sub', () => {
  for (const v of ['mqttv31', 'mqttv311', 'mqttv5'] as const) {
    it(`QoS 0/1/2 and retained over ${v}`, async () => {
      const base = broker.stats().subscriptions;
      const topic = `mc/${v}`;
      await run('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-V',
        v,
        '-t',
        `${topic}/r`,
        '-m',
        'kept',
        '-r',
        '-q',
        '1',
      ]);
      const sub = spawn('mosquitto_sub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-V',
        v,
        '-t',
        `${topic}/#`,
        '-q',
        '2',
        '-C',
        '4',
        '-v',
      ]);
      let out = '';
      sub.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      const exited = new Promise<number | null>((r) => sub.once('exit', r));
      await subscriptions(base + 1);
      for (const q of ['0', '1', '2'])
        await run('mosquitto_pub', [
          '-h',
          '127.0.0.1',
          '-p',
          String(port),
          '-V',
          v,
          '-t',
          `${topic}/q${q}`,
          '-m',
          `m${q}`,
          '-q',
          q,
        ]);
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
      if (code === 'timeout') sub.kill();
      expect(code).toBe(0);
      expect(out.trim().split('\n')).toEqual([
        `${topic}/r kept`,
        `${topic}/q0 m0`,
        `${topic}/q1 m1`,
        `${topic}/q2 m2`,
      ]);
      await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-t', `${topic}/r`, '-n', '-r']);
    });
  }

  it('refuses a bad password (mosquitto_pub exits non-zero)', async () => {
    const r = await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-u',
      'alice',
      '-P',
      'wrong',
      '-t',
      't',
      '-m',
      'x',
    ]).catch((e) => e);
    expect(r.code).not.toBe(0);
    expect(String(r.stderr)).toMatch(/not authori[sz]ed|bad user name or password/i);
  });
});

const PAHO_SCRIPT = `
import json, sys, time, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
events = []
def log(*a):
    print(json.dumps(a), flush=True)

# refused logins: return code 4 for a bad password
bad = mqtt.Client(client_id="paho-bad", protocol=mqtt.MQTTv311)
bad.username_pw_set("alice", "wrong")
bad.on_connect = lambda c, u, f, rc: log("bad_connect", rc)
bad.connect("127.0.0.1", port, 30)
bad.loop_start(); time.sleep(0.5); bad.loop_stop()

done = threading.Event()
got = []
def on_connect(c, u, flags, rc):
    log("connect", rc)
    c.subscribe([("paho/a", 0), ("paho/b", 2), ("paho/will", 1)])
def on_subscribe(c, u, mid, granted):
    log("suback", list(granted))
    p = mqtt.Client(client_id="paho-pub", protocol=mqtt.MQTTv311)
    p.username_pw_set("alice", "secret")
    p.connect("127.0.0.1", port, 30)
    p.loop_start()
    p.publish("paho/a", "zero", qos=0).wait_for_publish()
    p.publish("paho/b", "two", qos=2, retain=True).wait_for_publish()
    p.disconnect(); p.loop_stop()
    # a client with a will that disappears without DISCONNECT
    w = mqtt.Client(client_id="paho-will", protocol=mqtt.MQTTv311)
    w.will_set("paho/will", "bye", qos=1)
    w.connect("127.0.0.1", port, 30)
    w.loop(0.2)
    w.socket().close()
def on_message(c, u, m):
    got.append([m.topic, m.payload.decode(), m.qos, m.retain])
    if len(got) == 3: done.set()
c = mqtt.Client(client_id="paho-sub", protocol=mqtt.MQTTv311)
c.username_pw_set("alice", "secret")
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", port, 30)
c.loop_start()
done.wait(8)
c.disconnect(); c.loop_stop()
log("messages", got)
# the retained message is delivered to a new subscriber with the retain flag
r = mqtt.Client(client_id="paho-ret", protocol=mqtt.MQTTv311)
rd = threading.Event(); rg = []
r.on_connect = lambda c, u, f, rc: c.subscribe("paho/b", 1)
def on_ret(c, u, m):
    rg.append([m.topic, m.payload.decode(), m.qos, m.retain]); rd.set()
r.on_message = on_ret
r.connect("127.0.0.1", port, 30); r.loop_start(); rd.wait(5); r.disconnect(); r.loop_stop()
log("retained", rg)
`;

describe.skipIf(!HAS_PAHO)('python3-paho-mqtt', () => {
  it('the classic paho flow: return codes, subscribe list, QoS 2, retain, credentials, will', async () => {
    const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'paho-')), 'flow.py');
    fs.writeFileSync(script, PAHO_SCRIPT);
    const { stdout } = await run('/usr/bin/python3', [script, String(port)], { timeout: 25_000 });
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown[]);
    const get = (name: string) => lines.find((l) => l[0] === name)?.[1];
    expect(get('bad_connect')).toBe(5);
    expect(get('connect')).toBe(0);
    expect(get('suback')).toEqual([0, 2, 1]);
    const msgs = get('messages') as unknown[][];
    expect(msgs).toContainEqual(['paho/a', 'zero', 0, 0]);
    expect(msgs).toContainEqual(['paho/b', 'two', 2, 0]);
    expect(msgs).toContainEqual(['paho/will', 'bye', 1, 0]);
    expect(get('retained')).toEqual([['paho/b', 'two', 1, 1]]);
    fs.rmSync(path.dirname(script), { recursive: true, force: true });
  }, 30_000);
});

describe('MQTT.js', () => {
  for (const protocolVersion of [4, 5] as const) {
    it(`publish / subscribe at every QoS over ${protocolVersion === 4 ? '3.1.1' : '5.0'}`, async () => {
      const url = `mqtt://127.0.0.1:${port}`;
      const sub = await mqtt.connectAsync(url, { protocolVersion, clientId: `js-sub-${protocolVersion}` });
      const pub = await mqtt.connectAsync(url, { protocolVersion, clientId: `js-pub-${protocolVersion}` });
      const got: Array<[string, string, number]> = [];
      const all = new Promise<void>((resolve) => {
        sub.on('message', (topic, payload, packet) => {
          got.push([topic, payload.toString(), packet.qos]);
          if (got.length === 3) resolve();
        });
      });
      const granted = await sub.subscribeAsync(`js${protocolVersion}/#`, { qos: 2 });
      expect(granted[0].qos).toBe(2);
      for (const qos of [0, 1, 2] as const)
        await pub.publishAsync(`js${protocolVersion}/q${qos}`, `m${qos}`, { qos });
      await all;
      expect(got.sort()).toEqual([
        [`js${protocolVersion}/q0`, 'm0', 0],
        [`js${protocolVersion}/q1`, 'm1', 1],
        [`js${protocolVersion}/q2`, 'm2', 2],
      ]);
      await pub.endAsync();
      await sub.endAsync();
    });
  }

  it('5.0: user properties, topic aliases from the client, subscription identifiers', async () => {
    const url = `mqtt://127.0.0.1:${port}`;
    const sub = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: 'js5-props' });
    const pub = await mqtt.connectAsync(url, {
      protocolVersion: 5,
      clientId: 'js5-alias',
      properties: { topicAliasMaximum: 10 },
    });
    const received = new Promise<mqtt.IPublishPacket[]>((resolve) => {
      const list: mqtt.IPublishPacket[] = [];
      sub.on('message', (_t, _p, packet) => {
        list.push(packet);
        if (list.length === 2) resolve(list);
      });
    });
    await sub.subscribeAsync('js5p/#', { qos: 1, properties: { subscriptionIdentifier: 77 } });
    await pub.publishAsync('js5p/t', 'a', {
      qos: 1,
      properties: { topicAlias: 1, userProperties: { k: 'v' } },
    });
    await pub.publishAsync('', 'b', { qos: 1, properties: { topicAlias: 1 } });
    const [a, b] = await received;
    expect(a.topic).toBe('js5p/t');
    expect(b.topic).toBe('js5p/t');
    expect(a.properties?.userProperties).toEqual({ k: 'v' });
    expect(a.properties?.subscriptionIdentifier).toBe(77);
    await pub.endAsync();
    await sub.endAsync();
  });
});
