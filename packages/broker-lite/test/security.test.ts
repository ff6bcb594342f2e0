import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessControl, Authenticator } from '../src/index.ts';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const users: Authenticator = {
  authenticate: ({ username, password }) =>
    username === 'alice' && password !== undefined && Buffer.from(password).toString() === 'secret',
};
const asyncUsers: Authenticator = {
  authenticate: (req) =>
    new Promise((resolve) => setTimeout(() => resolve(users.authenticate(req) as boolean), 20)),
};
/** alice may do everything under alice/ and read public/; nobody writes public/ */
const acl: AccessControl = {
  allowed: (access, client, topic) => {
    if (topic.startsWith(`${client.username}/`)) return true;
    if (topic.startsWith('public/')) return access !== 'write';
    return false;
  },
};
const alice = { username: 'alice', password: Buffer.from('secret') };

describe('authentication', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startBroker({ allowAnonymous: false, authenticator: users, authFailureDelayMs: 300 });
  });
  afterAll(() => tb.close());

  it('accepts good credentials', async () => {
    const c = await RawClient.connect(tb.port, { clientId: 'a1', ...alice });
    expect(c.connack.reasonCode).toBe(0);
    c.client.close();
  });

  // 5 / 0x87 (not authorized) as Mosquitto 2.0 answers (issue 15; 4 / 0x86 before).
  it('refuses a bad password with 5 (3.1.1) / 0x87 (5.0), after the failure delay', async () => {
    const t0 = Date.now();
    const c = await RawClient.connect(tb.port, {
      clientId: 'a2',
      username: 'alice',
      password: Buffer.from('nope'),
    });
    expect(c.connack.reasonCode).toBe(5);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    await c.client.closed;
    const c5 = await RawClient.connect(tb.port, {
      clientId: 'a3',
      protocolVersion: 5,
      username: 'bob',
      password: Buffer.from('x'),
    });
    expect(c5.connack.reasonCode).toBe(0x87);
    await c5.client.closed;
  });

  it('a delayed refusal does not hold up other clients', async () => {
    const slow = RawClient.connect(tb.port, {
      clientId: 'a4',
      username: 'alice',
      password: Buffer.from('bad'),
    });
    let slowDone = false;
    void slow.then(() => {
      slowDone = true;
    });
    const ok = await RawClient.connect(tb.port, { clientId: 'a5', ...alice });
    // the good login was answered while the bad one was still waiting out its delay
    expect(slowDone).toBe(false);
    expect(ok.connack.reasonCode).toBe(0);
    expect((await slow).connack.reasonCode).toBe(5);
    ok.client.close();
  });

  it('refuses anonymous clients with 5 (3.1.1) / 0x87 (5.0) when allow_anonymous is false', async () => {
    const c = await RawClient.connect(tb.port, { clientId: 'anon' });
    expect(c.connack.reasonCode).toBe(5);
    const c5 = await RawClient.connect(tb.port, { clientId: 'anon5', protocolVersion: 5 });
    expect(c5.connack.reasonCode).toBe(0x87);
  });

  it('supports an asynchronous authenticator, keeping packets sent behind CONNECT', async () => {
    const ab = await startBroker({ allowAnonymous: false, authenticator: asyncUsers });
    try {
      const c = await RawClient.open(ab.port);
      c.send({
        type: 'connect',
        protocolVersion: 4,
        clientId: 'async',
        clean: true,
        keepalive: 30,
        ...alice,
      });
      c.send({ type: 'pingreq' });
      expect((await c.expect('connack')).reasonCode).toBe(0);
      await c.expect('pingresp');
      c.close();
    } finally {
      await ab.close();
    }
  });

  it('setSecurity swaps the checks for the next CONNECT (SIGHUP reload)', async () => {
    tb.broker.setSecurity({ authenticate: () => false }, undefined);
    const c = await RawClient.connect(tb.port, { clientId: 'reload', ...alice });
    expect(c.connack.reasonCode).toBe(5);
    tb.broker.setSecurity(users, undefined);
    const d = await RawClient.connect(tb.port, { clientId: 'reload2', ...alice });
    expect(d.connack.reasonCode).toBe(0);
    d.client.close();
  });
});

describe('access control', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startBroker({ authenticator: users, accessControl: acl });
  });
  afterAll(() => tb.close());

  it('SUBSCRIBE denied: 0x80 in 3.1.1 SUBACK, 0x87 in 5.0', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 's311', ...alice })).client;
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: 'alice/#', qos: 1 },
        { topicFilter: 'secret/#', qos: 1 },
      ],
    });
    expect((await c.expect('suback')).reasonCodes).toEqual([1, 0x80]);
    const c5 = (await RawClient.connect(tb.port, { clientId: 's5', protocolVersion: 5, ...alice })).client;
    c5.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'secret/#', qos: 1 }] });
    expect((await c5.expect('suback')).reasonCodes).toEqual([0x87]);
    c.close();
    c5.close();
  });

  it('PUBLISH denied: dropped; 5.0 PUBACK 0x87, 3.1.1 a plain PUBACK', async () => {
    const reader = (await RawClient.connect(tb.port, { clientId: 'reader', ...alice })).client;
    await reader.subscribe('public/#', 1);
    const w5 = (await RawClient.connect(tb.port, { clientId: 'w5', protocolVersion: 5, ...alice })).client;
    w5.publish('public/x', 'no', 1, false, 3);
    expect(await w5.expect('puback')).toMatchObject({ packetId: 3, reasonCode: 0x87 });
    const w4 = (await RawClient.connect(tb.port, { clientId: 'w4', ...alice })).client;
    w4.publish('public/x', 'no', 1, false, 4);
    const ack = await w4.expect('puback');
    expect(ack.packetId).toBe(4);
    expect(await reader.silent(300)).toBe(true);
    for (const c of [reader, w5, w4]) c.close();
  });

  it('read is checked per delivery', async () => {
    // anonymous may subscribe to '#' (the ACL is asked about the filter, allowed below)
    const openAcl: AccessControl = {
      allowed: (access, client, topic) =>
        access !== 'read' || !topic.startsWith('alice/') || client.username === 'alice',
    };
    tb.broker.setSecurity(users, openAcl);
    const anon = (await RawClient.connect(tb.port, { clientId: 'anon-r' })).client;
    await anon.subscribe('#', 0);
    const a = (await RawClient.connect(tb.port, { clientId: 'alice-w', ...alice })).client;
    a.publish('alice/private', 'p', 0);
    a.publish('other/open', 'o', 0);
    const m = await anon.expect('publish');
    expect([m.topic, text(m)]).toEqual(['other/open', 'o']);
    expect(await anon.silent()).toBe(true);
    tb.broker.setSecurity(users, acl);
    anon.close();
    a.close();
  });
});
