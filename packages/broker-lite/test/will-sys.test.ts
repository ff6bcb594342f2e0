/**
 * A client's will may not write the broker's `$SYS` topics (a forged, retained `$SYS` value
 * would outlive the client); `$SYS/broker/connection/+/state`, where bridges put their state,
 * is the exception, as for PUBLISH and as in Mosquitto.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startBroker();
});
afterAll(() => tb.close());

describe('wills on $SYS', () => {
  it('a will on $SYS/broker/uptime is dropped and logged; one on a bridge state topic goes out', async () => {
    const { client: watcher } = await RawClient.connect(tb.port, { clientId: 'watcher' });
    expect(await watcher.subscribe('$SYS/#', 1)).toEqual([1]);
    const will = (topic: string, payload: string) => ({
      topic,
      payload: new TextEncoder().encode(payload),
      qos: 1 as const,
      retain: true,
    });
    const { client: forger } = await RawClient.connect(tb.port, {
      clientId: 'forger',
      will: will('$SYS/broker/uptime', 'forged'),
    });
    forger.close();
    await forger.closed;
    const { client: bridge } = await RawClient.connect(tb.port, {
      clientId: 'gw',
      will: will('$SYS/broker/connection/gw/state', '0'),
    });
    bridge.close();
    await bridge.closed;
    const p = await watcher.expect('publish');
    expect([p.topic, text(p)]).toEqual(['$SYS/broker/connection/gw/state', '0']);
    watcher.send({ type: 'puback', packetId: p.packetId! });
    expect(tb.logs.some((l) => l.message.startsWith('will denied') && l.fields?.clientId === 'forger')).toBe(
      true,
    );
    // Nothing forged was retained either.
    const { client: late } = await RawClient.connect(tb.port, { clientId: 'late' });
    expect(await late.subscribe('$SYS/broker/uptime', 1)).toEqual([1]);
    late.send({
      type: 'subscribe',
      packetId: 2,
      subscriptions: [{ topicFilter: '$SYS/broker/connection/#', qos: 1 }],
    });
    const next = await late.next();
    const after = next?.type === 'suback' ? await late.next() : next;
    expect(after).toMatchObject({ type: 'publish', topic: '$SYS/broker/connection/gw/state', retain: true });
    await late.disconnect();
    await watcher.disconnect();
  });
});
