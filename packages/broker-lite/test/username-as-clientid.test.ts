/**
 * Issue 12.9 (first half): use_username_as_clientid, as in Mosquitto. The attack it stops: with
 * `%c` ACL patterns, a user who connects with another user's client id takes over that user's
 * session: its subscriptions, its topics and the messages queued for it. The broker is built from
 * mosquitto.conf text with a real password file and ACL file, over real TCP.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { hashPassword } from '../src/passwd.ts';
import { type ConfiguredBroker, startConfigured } from './helpers/config-broker.ts';
import { RawClient, text } from './helpers/raw-client.ts';

const dir = mkdtempSync(join(tmpdir(), 'bl-username-clientid-'));
const brokers: ConfiguredBroker[] = [];
beforeAll(async () => {
  const line = async (user: string) => `${user}:${await hashPassword(`pw-${user}`, { iterations: 10 })}`;
  writeFileSync(
    join(dir, 'passwd'),
    `${(await Promise.all(['alice', 'bob', 'server'].map(line))).join('\n')}\n`,
  );
  // Each client owns the topics under its client id; the server writes to everyone's inbox.
  writeFileSync(join(dir, 'acl'), 'pattern readwrite devices/%c/#\nuser server\ntopic write devices/#\n');
});
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function broker(listenerKeys: string): Promise<number> {
  const b = await startConfigured(
    dir,
    `password_file passwd\nacl_file acl\nallow_anonymous true\nlistener 0 127.0.0.1\n${listenerKeys}\n`,
  );
  brokers.push(b);
  return b.ports[0];
}

const login = (user: string) => ({ username: user, password: Buffer.from(`pw-${user}`) });

/** The server sends two QoS 1 messages to `topic` (both acknowledged by the broker). */
async function serverSends(port: number, topic: string): Promise<void> {
  const { client, connack } = await RawClient.connect(port, { clientId: 'server', ...login('server') });
  expect(connack.reasonCode).toBe(0);
  for (const id of [1, 2]) {
    client.publish(topic, `secret ${id}`, 1, false, id);
    expect((await client.expect('puback')).packetId).toBe(id);
  }
  await client.disconnect();
}

/** Receives `n` PUBLISHes, acknowledging each; returns their payloads. */
async function receive(c: RawClient, n: number): Promise<string[]> {
  const got: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = await c.expect('publish');
    if (p.packetId !== undefined) c.send({ type: 'puback', packetId: p.packetId });
    got.push(text(p));
  }
  return got;
}

describe('issue 12.9: use_username_as_clientid', () => {
  it("issue 12.9: without it, bob takes over alice's client id, session and queued messages", async () => {
    const port = await broker('');
    const alice = await RawClient.connect(port, { clientId: 'alice-phone', clean: false, ...login('alice') });
    expect(await alice.client.subscribe('devices/alice-phone/inbox', 1)).toEqual([1]);
    await alice.client.disconnect();
    await serverSends(port, 'devices/alice-phone/inbox');
    const bob = await RawClient.connect(port, { clientId: 'alice-phone', clean: false, ...login('bob') });
    expect(bob.connack.reasonCode).toBe(0);
    expect(bob.connack.sessionPresent).toBe(true);
    expect(await receive(bob.client, 2)).toEqual(['secret 1', 'secret 2']);
    await bob.client.disconnect();
  });

  it("issue 12.9: with it, bob cannot take over alice's session; alice gets her queued messages", async () => {
    const port = await broker('use_username_as_clientid true');
    const alice = await RawClient.connect(port, { clientId: 'alice-phone', clean: false, ...login('alice') });
    // Her client id is now her user name: %c is alice, not what she sent.
    expect(await alice.client.subscribe('devices/alice/inbox', 1)).toEqual([1]);
    expect(await alice.client.subscribe('devices/alice-phone/inbox', 1, 2)).toEqual([0x80]);
    await alice.client.disconnect();
    await serverSends(port, 'devices/alice/inbox');

    const bob = await RawClient.connect(port, { clientId: 'alice', clean: false, ...login('bob') });
    expect(bob.connack.reasonCode).toBe(0);
    expect(bob.connack.sessionPresent).toBe(false);
    expect(await bob.client.subscribe('devices/alice/#', 1)).toEqual([0x80]);
    expect(await bob.client.silent(200)).toBe(true);
    await bob.client.disconnect();

    const back = await RawClient.connect(port, { clientId: 'anything', clean: false, ...login('alice') });
    expect(back.connack.sessionPresent).toBe(true);
    expect(await receive(back.client, 2)).toEqual(['secret 1', 'secret 2']);
    await back.client.disconnect();
  });

  it('issue 12.9: a client without a user name is refused (5 / 0x87), even with allow_anonymous true', async () => {
    const port = await broker('use_username_as_clientid true');
    expect((await RawClient.connect(port, { clientId: 'anon' })).connack.reasonCode).toBe(5);
    const v5 = await RawClient.connect(port, { clientId: 'anon5', protocolVersion: 5 });
    expect(v5.connack.reasonCode).toBe(0x87);
  });

  it('issue 12.9: MQTT 5: an empty client id is assigned the user name; a given one is replaced silently (as Mosquitto)', async () => {
    const port = await broker('use_username_as_clientid true');
    const empty = await RawClient.connect(port, { clientId: '', protocolVersion: 5, ...login('alice') });
    expect(empty.connack.reasonCode).toBe(0);
    expect(empty.connack.properties?.assignedClientIdentifier).toBe('alice');
    await empty.client.disconnect();
    const given = await RawClient.connect(port, { clientId: 'phone', protocolVersion: 5, ...login('bob') });
    expect(given.connack.reasonCode).toBe(0);
    expect(given.connack.properties?.assignedClientIdentifier).toBeUndefined();
    expect(await given.client.subscribe('devices/bob/x', 1)).toEqual([1]);
    await given.client.disconnect();
  });

  it('issue 12.9: a bad password is still refused before the client id matters', async () => {
    const port = await broker('use_username_as_clientid true');
    const c = await RawClient.connect(port, {
      clientId: 'x',
      username: 'alice',
      password: Buffer.from('no'),
    });
    expect(c.connack.reasonCode).toBe(5);
  });

  it('issue 12.9: the key is per listener, off by default', () => {
    const cfg = parseConfig(
      'listener 1883\nuse_username_as_clientid true\nlistener 1884\n',
      join(dir, 'm.conf'),
    );
    expect(cfg.listeners.map((l) => l.useUsernameAsClientid)).toEqual([true, false]);
  });
});
