import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AclFile } from '../src/acl.ts';
import { hashPassword } from '../src/passwd.ts';

/**
 * Conformance: the same ACL file in real Mosquitto and in AclFile must allow the same
 * publishes and deliveries. The rules avoid the one place broker-lite differs on purpose (a
 * deny rule after a matching grant: Mosquitto 2.0 goes by file order, broker-lite lets deny
 * win), and reading is observed through a `#` subscription, which Mosquitto grants to anyone
 * and filters per delivery.
 */

const MOSQUITTO = '/usr/sbin/mosquitto';
const hasMosquitto = existsSync(MOSQUITTO);
if (!hasMosquitto) console.warn(`skipping the ACL conformance test: ${MOSQUITTO} is not installed`);

const ACL = `# anonymous
topic deny public/secret
topic read public/#

user alice
topic deny alice/private/#
topic readwrite alice/#
topic write cmd/+/set

user bob
topic readwrite bob/#

user admin
topic readwrite #

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern read zz/end
`;

const TOPICS = [
  'public/news',
  'public/secret',
  'alice/x',
  'alice/private/diary',
  'bob/x',
  'devices/alice-c/t',
  'devices/bob-c/t',
  'devices/anon-c/t',
  'users/alice/inbox',
  'users/bob/inbox',
  'cmd/lamp/set',
  'cmd/lamp/get',
  'other',
];

interface Who {
  clientId: string;
  username: string | undefined;
  password?: string;
}
const ANON: Who = { clientId: 'anon-c', username: undefined };
const ALICE: Who = { clientId: 'alice-c', username: 'alice', password: 'a' };
const BOB: Who = { clientId: 'bob-c', username: 'bob', password: 'b' };
const ADMIN: Who = { clientId: 'admin-c', username: 'admin', password: 'adm' };
const PEOPLE = [ANON, ALICE, BOB];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(!hasMosquitto)('ACL decisions match Mosquitto 2.0', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bl-aclconf-'));
  let broker: ChildProcess | undefined;
  let port = 0;
  const clients: mqtt.MqttClient[] = [];

  beforeAll(async () => {
    port = await freePort();
    const pw = join(dir, 'pw');
    const lines = [];
    for (const w of [ALICE, BOB, ADMIN])
      lines.push(`${w.username}:${await hashPassword(w.password!, { iterations: 10 })}`);
    writeFileSync(pw, `${lines.join('\n')}\n`);
    writeFileSync(join(dir, 'acl'), ACL);
    writeFileSync(
      join(dir, 'm.conf'),
      `listener ${port} 127.0.0.1\nallow_anonymous true\npassword_file ${pw}\nacl_file ${join(dir, 'acl')}\nuser root\nlog_dest stderr\nlog_type all\n`,
    );
    const child = spawn(MOSQUITTO, ['-c', join(dir, 'm.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    broker = child;
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const timer = setTimeout(() => reject(new Error(`mosquitto did not start: ${log}`)), 10_000);
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        if (/running/.test(log)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`mosquitto exited ${code}: ${log}`)));
    });
  });

  afterAll(async () => {
    for (const c of clients) c.end(true);
    broker?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });

  const connect = async (w: Who): Promise<mqtt.MqttClient> => {
    const c = await mqtt.connectAsync({
      host: '127.0.0.1',
      port,
      clientId: w.clientId,
      username: w.username,
      password: w.password,
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    clients.push(c);
    return c;
  };

  /** Collects topics until `zz/end` arrives. */
  const collect = (c: mqtt.MqttClient): Promise<string[]> =>
    new Promise((resolve) => {
      const seen: string[] = [];
      c.on('message', (topic) => {
        if (topic === 'zz/end') resolve(seen);
        else seen.push(topic);
      });
    });

  const acl = AclFile.parse(ACL, 'acl');

  it('allows the same publishes', async () => {
    const admin = await connect(ADMIN);
    await admin.subscribeAsync({ '#': { qos: 1 } });
    const arrived = collect(admin);
    const expected: string[] = [];
    for (const w of PEOPLE) {
      const c = await connect(w);
      for (const t of TOPICS) {
        // Mosquitto acknowledges a refused QoS 1 publish from a 3.1.1 client and drops it.
        await c.publishAsync(t, w.clientId, { qos: 1 });
        if (acl.allowed('write', w, t)) expected.push(`${w.clientId} ${t}`);
      }
    }
    const got: string[] = [];
    admin.on('message', (topic, payload) => {
      if (topic !== 'zz/end') got.push(`${payload.toString()} ${topic}`);
    });
    await admin.publishAsync('zz/end', '', { qos: 1 });
    const topics = await arrived;
    expect(topics).toHaveLength(got.length);
    expect(got.sort()).toEqual(expected.sort());
    expect(expected.length).toBeGreaterThan(3);
  });

  it('delivers the same messages', async () => {
    const admin = await connect({ ...ADMIN, clientId: 'admin-2' });
    const readers = await Promise.all(PEOPLE.map((w) => connect({ ...w, clientId: w.clientId })));
    const arrivals = readers.map((c) => collect(c));
    for (const c of readers) {
      // Mosquitto 2.0 grants every SUBSCRIBE; broker-lite would refuse `#` here (documented).
      await c.subscribeAsync({ '#': { qos: 1 } });
    }
    for (const t of TOPICS) await admin.publishAsync(t, 'x', { qos: 1 });
    await admin.publishAsync('zz/end', '', { qos: 1 });
    const got = await Promise.all(arrivals);
    PEOPLE.forEach((w, i) => {
      const expected = TOPICS.filter((t) => acl.allowed('read', w, t));
      expect(got[i], w.clientId).toEqual(expected);
    });
    expect(got.flat().length).toBeGreaterThan(3);
  });
});
