/**
 * Issue 12 (bridge) point 3: a message from upstream larger than this broker accepts must not
 * close the bridge's local connection (MQTT 5: 0x95), which drops that session's state. Over
 * MQTT 5 the bridge advertises a maximum packet size that fits what this broker accepts, so the
 * remote never sends it; over 3.1.1 (no way to say so) it is received, dropped (counted, logged)
 * and acknowledged upstream, since it can never be delivered. A payload over
 * message_size_limit (which the broker refuses with 0x97, as it does for a full disk) is dropped
 * the same way instead of being retried for ever. Two broker-lites over real sockets.
 */
import { describe, expect, it } from 'vitest';
import {
  type BridgedBroker,
  closeAfterEach,
  eventually,
  Recorder,
  startBridged,
  startUpstream,
} from '../../../test/bridge-helpers.ts';
import { MAX_ACCEPTED_PACKET } from '../src/broker.ts';
import type { BrokerOptions } from '../src/options.ts';

const closers = closeAfterEach();

async function pair(
  version: 'mqttv311' | 'mqttv50',
  brokerOptions: Partial<BrokerOptions>,
  topic = 'topic in/# in 1',
): Promise<{ up: BridgedBroker; gw: BridgedBroker }> {
  const up = await startUpstream(closers);
  const gw = await startBridged(
    [
      'connection up',
      `address 127.0.0.1:${up.port}`,
      topic,
      'remote_clientid gw-in',
      `bridge_protocol_version ${version}`,
      'restart_timeout 1',
    ].join('\n'),
    undefined,
    0,
    {},
    brokerOptions,
  );
  closers.push(() => gw.close());
  await gw.waitLog((l) => l.message === 'bridge connected');
  return { up, gw };
}

/** The bridge's connection on the upstream broker-lite: what it was told in CONNECT. */
function bridgeOnUpstream(up: BridgedBroker) {
  for (const c of up.broker.connections) if (c.clientId === 'gw-in') return c;
  throw new Error('the bridge is not connected upstream');
}

/** Upstream publishes a too-large QoS 1 message then a small one; what arrives here. */
async function bigThenSmall(up: BridgedBroker, gw: BridgedBroker, bytes: number): Promise<Recorder> {
  const local = await Recorder.open(gw.port, ['in/#']);
  closers.push(() => local.end());
  const pub = await Recorder.open(up.port, []);
  closers.push(() => pub.end());
  await pub.client.publish('in/big', Buffer.alloc(bytes, 0x62), { qos: 1 });
  await pub.client.publish('in/after', 'small', { qos: 1 });
  await local.until(() => local.got.length >= 1, 'in/after here');
  expect(local.got.map((m) => m.topic)).toEqual(['in/after']);
  // Nothing left unacknowledged upstream.
  const s = up.broker.sessions.get('gw-in');
  await eventually(() => s?.inflightCount === 0, 'upstream acknowledged');
  expect(gw.logs.filter((l) => l.message === 'bridge local session down')).toEqual([]);
  return local;
}

describe('issue 12 (bridge): messages from upstream larger than this broker accepts', () => {
  it('issue 12 (bridge): MQTT 5: the bridge advertises a maximum packet size within max_packet_size; the remote does not send the large message; the local session stays up', async () => {
    const { up, gw } = await pair('mqttv50', { maxPacketSize: 10_000 });
    // What publishing here can add (path property, lengths) is kept free.
    expect(bridgeOnUpstream(up).maxOut).toBe(10_000 - 64);
    // No more unacknowledged messages than the local link holds (window 1,000 + queue 10,000).
    expect(bridgeOnUpstream(up).receiveMax).toBe(11_000);
    const droppedUp = up.broker.counters.dropped;
    await bigThenSmall(up, gw, 20_000);
    expect(up.broker.counters.dropped).toBe(droppedUp + 1);
    expect(gw.bridges.stats()[0].inReceived).toBe(1);
  });

  it('issue 12 (bridge): MQTT 5: without local limits the bridge advertises the largest packet this broker accepts, less what a longer local prefix adds', async () => {
    const { up } = await pair('mqttv50', {}, 'topic # in 1 local/prefix/ r/');
    expect(bridgeOnUpstream(up).maxOut).toBe(
      MAX_ACCEPTED_PACKET - 64 - ('local/prefix/'.length - 'r/'.length),
    );
  });

  it('issue 12 (bridge): MQTT 3.1.1: a message over max_packet_size is received, dropped (counted, logged) and acknowledged upstream; the local session stays up', async () => {
    const { up, gw } = await pair('mqttv311', { maxPacketSize: 10_000 });
    await bigThenSmall(up, gw, 20_000);
    const st = gw.bridges.stats()[0];
    expect(st.inReceived).toBe(2);
    expect(st.inDropped).toBe(1);
    const line = await gw.waitLog((l) => l.message === 'bridge dropped messages');
    expect(String(line.fields?.reason)).toContain('larger than the local broker accepts');
  });

  it('issue 12 (bridge): a payload over message_size_limit is dropped (counted) and acknowledged upstream, not retried as if the disk were full', async () => {
    for (const version of ['mqttv311', 'mqttv50'] as const) {
      const { up, gw } = await pair(version, { messageSizeLimit: 1000 });
      await bigThenSmall(up, gw, 2000);
      expect(gw.bridges.stats()[0].inDropped).toBe(1);
      const line = await gw.waitLog((l) => l.message === 'bridge dropped messages');
      expect(String(line.fields?.reason)).toContain('message_size_limit');
      for (const c of closers.splice(0).reverse()) await c();
    }
  });
});
