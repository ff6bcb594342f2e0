/**
 * Issue 12, points 8 and 11: a retained will where retained messages are off, a subscription
 * identifier in a client's PUBLISH, bridge names that would leave the queue directory, and the
 * shared-subscription round-robin state that must not outlive its group.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config-api.ts';
import { defaultBridgeDir } from '../src/config-bridge.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

describe('issue 12.8a: a will with retain under retain_available false', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startBroker({ retainAvailable: false });
  });
  afterAll(() => tb.close());

  const will = { topic: 'w/t', payload: Buffer.from('gone'), qos: 0 as const, retain: true };

  it('MQTT 5: CONNACK 0x9A (retain not supported), then the connection is closed', async () => {
    const c = await RawClient.open(tb.port);
    const ack = await c.handshake({ protocolVersion: 5, clientId: 'will-r5', will });
    expect(ack.reasonCode).toBe(0x9a);
    await c.closed;
    expect(tb.broker.sessions.has('will-r5')).toBe(false);
  });

  it('MQTT 3.1.1: closed without a CONNACK (as Mosquitto: 3.1.1 has no code for it)', async () => {
    const c = await RawClient.open(tb.port);
    c.send({ type: 'connect', protocolVersion: 4, clientId: 'will-r4', clean: true, keepalive: 60, will });
    expect(await c.next()).toBeNull();
    expect(tb.broker.sessions.has('will-r4')).toBe(false);
  });

  it('a will without retain is still accepted, and is published when the client drops', async () => {
    const { client: sub } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'will-watch' });
    expect(await sub.subscribe('w/#', 0)).toEqual([0]);
    const { client, connack } = await RawClient.connect(tb.port, {
      protocolVersion: 5,
      clientId: 'will-plain',
      will: { ...will, retain: false },
    });
    expect(connack.reasonCode).toBe(0);
    client.close();
    const p = await sub.expect('publish');
    expect([p.topic, Buffer.from(p.payload).toString(), p.retain]).toEqual(['w/t', 'gone', false]);
    expect(tb.broker.retain.size).toBe(0);
    await sub.disconnect();
  });
});

describe('issue 12.8b: a subscription identifier in a PUBLISH from a client', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startBroker();
  });
  afterAll(() => tb.close());

  it('is a protocol error: DISCONNECT 0x82, nothing delivered', async () => {
    const { client: sub } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sid-sub' });
    expect(await sub.subscribe('sid/#', 1)).toEqual([1]);
    const { client } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sid-pub' });
    client.send({
      type: 'publish',
      topic: 'sid/t',
      payload: Buffer.from('x'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 7,
      properties: { subscriptionIdentifiers: [5] },
    });
    const d = await client.expect('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toMatch(/subscription identifier/i);
    await client.closed;
    expect(await sub.silent(200)).toBe(true);
    await sub.disconnect();
  });

  it('other properties still pass: a PUBLISH with a user property is delivered with it', async () => {
    const { client: sub } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'up-sub' });
    expect(await sub.subscribe('up/#', 0)).toEqual([0]);
    const { client } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'up-pub' });
    client.send({
      type: 'publish',
      topic: 'up/t',
      payload: Buffer.from('y'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { userProperties: [['k', 'v']] },
    });
    const p = await sub.expect('publish');
    expect(p.properties?.userProperties).toEqual([['k', 'v']]);
    await client.disconnect();
    await sub.disconnect();
  });
});

describe('issue 12.8c: bridge names that would leave the bridge queue directory', () => {
  const conf = (name: string) => `connection ${name}\naddress 127.0.0.1:1883\ntopic # out 1\n`;

  it.each(['.', '..'])('refuses connection %j with a config error naming file:line', (name) => {
    let err: unknown;
    try {
      parseConfig(conf(name), '/etc/mosquitto/bridges.conf');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('/etc/mosquitto/bridges.conf:1: connection:');
    expect((err as Error).message).toMatch(/'\.{1,2}'.*directory/);
  });

  it('still accepts names with dots that are plain file names', () => {
    for (const name of ['site.a', '...', '.hidden', 'a..b']) {
      const cfg = parseConfig(conf(name), 'x.conf');
      expect(cfg.bridges[0].name).toBe(name);
      expect(defaultBridgeDir('/var/lib/bl', name)).toBe(`/var/lib/bl/bridges/${name}`);
    }
  });

  it('the queue directory helper refuses them too (bridges started from code, not a config file)', () => {
    for (const name of ['.', '..', 'a/b', '../x', '', 'a\0b']) {
      expect(() => defaultBridgeDir('/var/lib/bl', name), JSON.stringify(name)).toThrow(/bridge name/);
    }
  });
});

describe('issue 12.11: shared-subscription round-robin state is pruned', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startBroker();
  });
  afterAll(() => tb.close());

  const GROUPS = 10_000;
  const BATCH = 500;

  async function subscribeAll(c: RawClient, filter: (g: number) => string): Promise<void> {
    for (let g = 0, pid = 1; g < GROUPS; g += BATCH, pid++) {
      const subscriptions = [];
      for (let k = g; k < g + BATCH; k++) subscriptions.push({ topicFilter: filter(k), qos: 0 as const });
      c.send({ type: 'subscribe', packetId: pid, subscriptions });
      expect((await c.expect('suback')).reasonCodes).toHaveLength(BATCH);
    }
  }

  it(`${GROUPS} groups: state while subscribed, none after UNSUBSCRIBE`, async () => {
    const router = tb.broker.router;
    expect(router.shareGroupCount).toBe(0);
    const { client: a } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sh-a' });
    const { client: b } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sh-b' });
    await subscribeAll(a, (g) => `$share/g${g}/rr/t`);
    await subscribeAll(b, (g) => `$share/g${g}/rr/t`);
    expect(router.shareGroupCount).toBe(GROUPS);
    // one message: each group delivers it once, to one of its two members
    const { client: pub } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sh-pub' });
    pub.publish('rr/t', 'one', 0);
    let got = 0;
    while (got < GROUPS) {
      const from = await Promise.race([a.next(5000), b.next(5000)]);
      expect(from?.type).toBe('publish');
      got++;
    }
    // one member leaving keeps the group; the last one leaving ends it
    for (let g = 0, pid = 100; g < GROUPS; g += BATCH, pid++) {
      const topicFilters = [];
      for (let k = g; k < g + BATCH; k++) topicFilters.push(`$share/g${k}/rr/t`);
      a.send({ type: 'unsubscribe', packetId: pid, topicFilters });
      expect((await a.expect('unsuback')).reasonCodes).toEqual(new Array(BATCH).fill(0));
    }
    expect(router.shareGroupCount).toBe(GROUPS);
    for (let g = 0, pid = 100; g < GROUPS; g += BATCH, pid++) {
      const topicFilters = [];
      for (let k = g; k < g + BATCH; k++) topicFilters.push(`$share/g${k}/rr/t`);
      b.send({ type: 'unsubscribe', packetId: pid, topicFilters });
      await b.expect('unsuback');
    }
    expect(router.shareGroupCount).toBe(0);
    await Promise.all([a.disconnect(), b.disconnect(), pub.disconnect()]);
  }, 60_000);

  it('a group spanning two filters lives until its last filter goes; a session end prunes it', async () => {
    const router = tb.broker.router;
    const { client: a } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sh-span' });
    expect(await a.subscribe('$share/span/x/#', 0)).toEqual([0]);
    expect(await a.subscribe('$share/span/y/#', 0, 2)).toEqual([0]);
    expect(router.shareGroupCount).toBe(1);
    a.send({ type: 'unsubscribe', packetId: 3, topicFilters: ['$share/span/x/#'] });
    await a.expect('unsuback');
    expect(router.shareGroupCount).toBe(1);
    // the clean session ends with the connection
    a.close();
    await a.closed;
    await expect.poll(() => tb.broker.sessions.has('sh-span')).toBe(false);
    expect(router.shareGroupCount).toBe(0);
  });

  it(`${GROUPS} groups of sessions that end (no UNSUBSCRIBE): no state left`, async () => {
    const { client: c } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sh-end' });
    await subscribeAll(c, (g) => `$share/e${g}/end/${g}`);
    expect(tb.broker.router.shareGroupCount).toBe(GROUPS);
    c.close();
    await c.closed;
    await expect.poll(() => tb.broker.router.shareGroupCount).toBe(0);
  }, 60_000);

  it('a persistent session keeps its group until it expires', async () => {
    const { client: c } = await RawClient.connect(tb.port, {
      protocolVersion: 5,
      clientId: 'sh-keep',
      clean: false,
      properties: { sessionExpiryInterval: 1 },
    });
    expect(await c.subscribe('$share/keep/k/#', 1)).toEqual([1]);
    c.close();
    await c.closed;
    expect(tb.broker.router.shareGroupCount).toBe(1);
    // the broker's sweep ends the session about a second later
    await expect.poll(() => tb.broker.sessions.has('sh-keep'), { timeout: 5000 }).toBe(false);
    expect(tb.broker.router.shareGroupCount).toBe(0);
  });
});
