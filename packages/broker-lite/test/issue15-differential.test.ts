/**
 * Issue 15 part 1: what the differential suite against Mosquitto (test/differential.test.ts)
 * found broker-lite doing otherwise, each kept here as a regression test of its own that needs
 * no Mosquitto. Each test names the differential scenario that showed it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { hashPassword } from '../src/index.ts';
import { type ConfiguredBroker, startConfigured } from './helpers/config-broker.ts';
import { RawClient } from './helpers/raw-client.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function configured(conf: string, files: Record<string, string> = {}): Promise<ConfiguredBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'bl-issue15-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return startConfigured(dir, `listener 0 127.0.0.1\n${conf.replaceAll('{dir}', dir)}\n`);
}

describe('issue 15.1: logins refused as Mosquitto refuses them', () => {
  let b: ConfiguredBroker;
  beforeAll(async () => {
    const passwd = `alice:${await hashPassword('alice-pw')}\nnobody:${await hashPassword('')}\n`;
    b = await configured('allow_anonymous false\npassword_file {dir}/passwd', { passwd });
  });
  afterAll(() => b.close());

  const login = async (version: 4 | 5, username: string | undefined, password: string | undefined) => {
    const { client, connack } = await RawClient.connect(b.ports[0], {
      protocolVersion: version,
      clientId: `c${version}`,
      username,
      password: password === undefined ? undefined : Buffer.from(password),
    });
    client.close();
    return connack.reasonCode;
  };

  it('issue 15.1: a wrong password, an unknown user and a missing password answer 5 / 0x87 (auth-closed.bad-password, .unknown-user, .no-password)', async () => {
    expect(await login(4, 'alice', 'wrong')).toBe(5);
    expect(await login(5, 'alice', 'wrong')).toBe(0x87);
    expect(await login(4, 'mallory', 'x')).toBe(5);
    expect(await login(5, 'mallory', 'x')).toBe(0x87);
    expect(await login(4, 'alice', undefined)).toBe(5);
    expect(await login(5, 'alice', undefined)).toBe(0x87);
    expect(await login(4, 'alice', 'alice-pw')).toBe(0);
  });

  it("issue 15.1: an empty password never logs in, even for a user whose password is '' (auth-closed.empty-password)", async () => {
    expect(await login(4, 'nobody', '')).toBe(5);
    expect(await login(5, 'nobody', '')).toBe(0x87);
  });

  it('issue 15.1: without a password file, a user name is refused like an anonymous client (auth-nofile.any-user)', async () => {
    const nofile = await configured('allow_anonymous false');
    try {
      const v4 = await RawClient.connect(nofile.ports[0], {
        clientId: 'n4',
        username: 'who',
        password: Buffer.from('x'),
      });
      const v5 = await RawClient.connect(nofile.ports[0], {
        protocolVersion: 5,
        clientId: 'n5',
        username: 'who',
        password: Buffer.from('x'),
      });
      expect([v4.connack.reasonCode, v5.connack.reasonCode]).toEqual([5, 0x87]);
    } finally {
      await nofile.close();
    }
  });
});

describe('issue 15.1: a session that expires before its will delay', () => {
  it('issue 15.1: ends when its will is sent: a reconnect right after the will finds no session (will.session-expiry-first-v5, session.v5-expiry-elapses)', async () => {
    const b = await configured('allow_anonymous true');
    try {
      const port = b.ports[0];
      const obs = (await RawClient.connect(port, { protocolVersion: 5, clientId: 'obs' })).client;
      expect(await obs.subscribe('exp/#', 1)).toEqual([1]);
      const { client: w } = await RawClient.connect(port, {
        protocolVersion: 5,
        clientId: 'w',
        properties: { sessionExpiryInterval: 1 },
        will: {
          topic: 'exp/will',
          payload: Buffer.from('session over'),
          qos: 1,
          retain: false,
          properties: { willDelayInterval: 60 },
        },
      });
      w.close();
      const will = await obs.expect('publish', 4000);
      expect(will.topic).toBe('exp/will');
      const again = await RawClient.connect(port, {
        protocolVersion: 5,
        clientId: 'w',
        clean: false,
        properties: { sessionExpiryInterval: 1 },
      });
      expect(again.connack.sessionPresent).toBe(false);
      again.client.close();
      obs.close();
    } finally {
      await b.close();
    }
  });
});

describe('issue 15.1: PUBACK 0x10 (no matching subscribers)', () => {
  it('issue 15.1: an MQTT 5 QoS 1 PUBLISH no subscription matches gets PUBACK 0x10; a matching one, even unreadable or no-local, 0x00; QoS 2 and 3.1.1 always 0 (delivery.no-subscribers-v5, acl.no-readers-v5)', async () => {
    // Anonymous clients (p, p3) write anywhere; bob reads only fleet/+/status.
    const acl = 'topic readwrite #\nuser bob\ntopic read fleet/+/status\n';
    const passwd = `bob:${await hashPassword('pb')}\n`;
    const b = await configured('allow_anonymous true\npassword_file {dir}/passwd\nacl_file {dir}/acl', {
      acl,
      passwd,
    });
    try {
      const port = b.ports[0];
      const { client: p } = await RawClient.connect(port, { protocolVersion: 5, clientId: 'p' });
      const puback = async (topic: string, qos: 1 | 2 = 1, retain = false) => {
        p.publish(topic, 'x', qos, retain, 7);
        const ack = await p.next();
        if (ack?.type === 'pubrec') {
          p.send({ type: 'pubrel', packetId: 7 });
          await p.expect('pubcomp');
        }
        return ack?.type === 'puback' || ack?.type === 'pubrec' ? (ack.reasonCode ?? 0) : -1;
      };
      expect(await puback('nobody/a')).toBe(0x10);
      expect(await puback('nobody/r', 1, true)).toBe(0x10);
      expect(await puback('nobody/a', 2)).toBe(0);
      // The publisher's own no-local subscription matches: not 0x10 (Mosquitto counts it too).
      p.send({
        type: 'subscribe',
        packetId: 1,
        subscriptions: [{ topicFilter: 'own/t', qos: 1, noLocal: true }],
      });
      await p.expect('suback');
      expect(await puback('own/t')).toBe(0);
      // bob's subscription matches a topic he may not read: still a matching subscription.
      const { client: bob } = await RawClient.connect(port, {
        clientId: 'bob',
        username: 'bob',
        password: Buffer.from('pb'),
      });
      expect(await bob.subscribe('fleet/#', 1)).toEqual([1]);
      expect(await puback('fleet/1/other')).toBe(0);
      const { client: p3 } = await RawClient.connect(port, { clientId: 'p3' });
      p3.publish('nobody/b', 'x', 1, false, 3);
      expect((await p3.expect('puback')).reasonCode ?? 0).toBe(0);
      for (const c of [p, p3, bob]) c.close();
    } finally {
      await b.close();
    }
  });
});

describe('issue 15.1: overlapping subscriptions (delivery.overlap-v5, acl.user-without-rules)', () => {
  it("issue 15.1: allow_duplicate_messages' warning says what broker-lite does: one copy per client", () => {
    const c = parseConfig('listener 0 127.0.0.1\nallow_duplicate_messages true\n', join(tmpdir(), 'x.conf'));
    const w = c.warnings.find((x) => x.key === 'allow_duplicate_messages');
    expect(w?.message).toMatch(/one copy/);
    expect(w?.message).not.toMatch(/per subscription/);
  });
});
