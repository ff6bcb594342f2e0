import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startBroker({ maxKeepalive: 100 });
});
afterAll(() => tb.close());

describe('CONNECT', () => {
  it('accepts MQTT 3.1 (MQIsdp), 3.1.1 and 5.0 on the same listener', async () => {
    for (const v of [3, 4, 5] as const) {
      const { client, connack } = await RawClient.connect(tb.port, { protocolVersion: v, clientId: `v${v}` });
      expect(connack.reasonCode).toBe(0);
      expect(connack.sessionPresent).toBe(false);
      client.send({ type: 'pingreq' });
      await client.expect('pingresp');
      await client.disconnect();
    }
  });

  it('assigns a client id to an empty one: 5.0 always, 3.1.1 only with clean session', async () => {
    const a = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: '' });
    expect(a.connack.reasonCode).toBe(0);
    expect(a.connack.properties?.assignedClientIdentifier).toMatch(/^auto-/);
    a.client.close();
    const b = await RawClient.connect(tb.port, { protocolVersion: 4, clientId: '', clean: true });
    expect(b.connack.reasonCode).toBe(0);
    b.client.close();
    const c = await RawClient.connect(tb.port, { protocolVersion: 4, clientId: '', clean: false });
    expect(c.connack.reasonCode).toBe(2); // identifier rejected
    await c.client.closed;
    const d = await RawClient.connect(tb.port, { protocolVersion: 3, clientId: '', clean: true });
    expect(d.connack.reasonCode).toBe(2);
    await d.client.closed;
  });

  it('answers an unknown protocol level with return code 1 and closes', async () => {
    const c = await RawClient.open(tb.port);
    // CONNECT, protocol name MQTT, level 9
    c.sendBytes(new Uint8Array([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 9, 2, 0, 60, 0, 0]));
    const p = await c.next();
    expect(p).toEqual({ type: 'connack', sessionPresent: false, reasonCode: 1 });
    await c.closed;
  });

  it('closes a connection whose first packet is not CONNECT', async () => {
    const c = await RawClient.open(tb.port);
    c.sendBytes(new Uint8Array([0xc0, 0])); // PINGREQ
    expect(await c.next()).toBeNull();
  });

  it('treats a second CONNECT as a protocol error (5.0: DISCONNECT 0x82)', async () => {
    const { client } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'twice' });
    client.send({ type: 'connect', protocolVersion: 5, clientId: 'twice', clean: true, keepalive: 10 });
    const d = await client.expect('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toMatch(/CONNECT/);
    await client.closed;
  });

  it('leaves reason strings out when the client asked for no problem information', async () => {
    const { client } = await RawClient.connect(tb.port, {
      protocolVersion: 5,
      clientId: 'quiet',
      properties: { requestProblemInformation: false },
    });
    client.send({ type: 'connect', protocolVersion: 5, clientId: 'quiet', clean: true, keepalive: 10 });
    const d = await client.expect('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toBeUndefined();
    await client.closed;
  });

  it('sends a server keepalive when the client asks for more than max_keepalive (5.0)', async () => {
    const { client, connack } = await RawClient.connect(tb.port, {
      protocolVersion: 5,
      clientId: 'ka',
      keepalive: 500,
    });
    expect(connack.properties?.serverKeepAlive).toBe(100);
    expect(connack.properties?.topicAliasMaximum).toBeGreaterThan(0);
    client.close();
  });

  it('takes over a client id: the old connection is closed, 5.0 with reason 0x8E', async () => {
    const old = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'dup-id' });
    const fresh = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'dup-id' });
    expect(fresh.connack.reasonCode).toBe(0);
    const d = await old.client.expect('disconnect');
    expect(d.reasonCode).toBe(0x8e);
    await old.client.closed;
    // the new connection works
    fresh.client.send({ type: 'pingreq' });
    await fresh.client.expect('pingresp');
    fresh.client.close();
  });

  it('takes over a 3.1.1 client id by closing the old socket', async () => {
    const old = await RawClient.connect(tb.port, { clientId: 'dup-311' });
    const fresh = await RawClient.connect(tb.port, { clientId: 'dup-311' });
    expect(fresh.connack.reasonCode).toBe(0);
    expect(await old.client.next()).toBeNull();
    fresh.client.close();
  });

  it('answers packets pipelined behind CONNECT in order', async () => {
    const c = await RawClient.open(tb.port);
    c.version = 4;
    c.send({ type: 'connect', protocolVersion: 4, clientId: 'pipelined', clean: true, keepalive: 30 });
    c.send({ type: 'subscribe', packetId: 7, subscriptions: [{ topicFilter: 'pipe/#', qos: 1 }] });
    c.send({ type: 'pingreq' });
    expect((await c.expect('connack')).reasonCode).toBe(0);
    expect((await c.expect('suback')).reasonCodes).toEqual([1]);
    await c.expect('pingresp');
    c.close();
  });
});

describe('timers', () => {
  it('closes a socket that sends no CONNECT within the connect timeout', async () => {
    const quick = await startBroker({ connectTimeoutSeconds: 1 });
    try {
      const c = await RawClient.open(quick.port);
      const t0 = Date.now();
      await c.closed;
      const waited = Date.now() - t0;
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(4000);
    } finally {
      await quick.close();
    }
  });

  it('closes a client silent for 1.5x its keepalive (5.0: DISCONNECT 0x8D)', async () => {
    const { client } = await RawClient.connect(tb.port, {
      protocolVersion: 5,
      clientId: 'sleepy',
      keepalive: 1,
    });
    const t0 = Date.now();
    const d = await client.expect('disconnect', 5000);
    expect(d.reasonCode).toBe(0x8d);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    await client.closed;
  });

  it('keeps a client that pings within its keepalive', async () => {
    const { client } = await RawClient.connect(tb.port, { clientId: 'pinger', keepalive: 1 });
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 600));
      client.send({ type: 'pingreq' });
      await client.expect('pingresp');
    }
    expect(client.isClosed).toBe(false);
    client.close();
  });
});
