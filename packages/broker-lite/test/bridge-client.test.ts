/**
 * A Mosquitto bridge connecting to broker-lite with `try_private true`: CONNECT level 0x84
 * (3.1.1) or 0x83 (3.1). Its subscriptions are no-local and retain-as-published; a plain 3.1.1
 * client's are not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startBroker();
});
afterAll(() => tb.close());

/** The next PUBLISH, acknowledged when QoS 1. */
async function nextPublish(c: RawClient) {
  const p = await c.expect('publish');
  if (p.qos === 1) c.send({ type: 'puback', packetId: p.packetId! });
  return p;
}

describe('a client with the bridge bit (try_private)', () => {
  for (const version of [3, 4] as const) {
    it(`3.${version === 3 ? '1' : '1.1'}: is accepted, gets no echo of its own publishes, sees retain flags as published`, async () => {
      const { client: bridge, connack } = await RawClient.connect(tb.port, {
        protocolVersion: version,
        clientId: `bridge-${version}`,
        bridge: true,
      });
      expect(connack.reasonCode).toBe(0);
      const { client: plain } = await RawClient.connect(tb.port, {
        protocolVersion: version,
        clientId: `plain-${version}`,
      });
      expect(await bridge.subscribe(`b${version}/#`, 1)).toEqual([1]);
      expect(await plain.subscribe(`b${version}/#`, 1)).toEqual([1]);

      // The bridge's own message: the plain client gets it, the bridge does not.
      bridge.publish(`b${version}/from-bridge`, 'one', 1, false, 7);
      expect(await bridge.expect('puback')).toMatchObject({ packetId: 7 });
      expect(text(await nextPublish(plain))).toBe('one');

      // The plain client's retained message, live: retain kept for the bridge only (3.1.1
      // clears it on live delivery), and the plain client gets its own message back.
      plain.publish(`b${version}/from-plain`, 'two', 1, true, 9);
      const toBridge = await nextPublish(bridge);
      expect([toBridge.topic, text(toBridge), toBridge.retain]).toEqual([
        `b${version}/from-plain`,
        'two',
        true,
      ]);
      const packets = [await plain.next(), await plain.next()];
      const echo = packets.find((p) => p?.type === 'publish');
      expect(packets.some((p) => p?.type === 'puback')).toBe(true);
      expect(echo).toMatchObject({ topic: `b${version}/from-plain`, retain: false });
      if (echo?.type === 'publish' && echo.qos === 1)
        plain.send({ type: 'puback', packetId: echo.packetId! });

      // The first thing the bridge sees after its own second message is the plain client's
      // fence: no echo came before it.
      bridge.publish(`b${version}/from-bridge`, 'three', 1, false, 8);
      expect(await bridge.expect('puback')).toMatchObject({ packetId: 8 });
      expect(text(await nextPublish(plain))).toBe('three');
      plain.publish(`b${version}/fence`, 'fence', 0);
      expect(text(await nextPublish(bridge))).toBe('fence');
      expect(text(await nextPublish(plain))).toBe('fence');

      // Clear the retained message for the next case.
      plain.publish(`b${version}/from-plain`, '', 0, true);
      await bridge.disconnect();
      await plain.disconnect();
    });
  }

  it('a shared subscription of a bridge stays an ordinary one (no-local is not allowed there)', async () => {
    const { client: bridge } = await RawClient.connect(tb.port, { clientId: 'bridge-shared', bridge: true });
    expect(await bridge.subscribe('$share/g/s/#', 1)).toEqual([1]);
    bridge.publish('s/x', 'own', 1, false, 3);
    const got = [await bridge.next(), await bridge.next()];
    expect(got.map((p) => p?.type).sort()).toEqual(['puback', 'publish']);
    await bridge.disconnect();
  });
});
