/**
 * Issue 16.4: what NATS 2.9's MQTT lacks, and what a bridge into it does about it (Debian's
 * nats-server, one node with JetStream; broker-lite in process with default bridge settings but
 * for the topic's QoS):
 * - QoS 2: NATS closes the connection on a QoS 2 PUBLISH. The bridge notices (the same message
 *   in flight each time the connection ends at once), says so once, and sends QoS 2 at QoS 1.
 * - a topic with '.' or ' ': NATS closes the connection on it, every time. The bridge drops that
 *   one message (counted, logged) instead of stalling everything behind it.
 * - MQTT 5: refused with a 3.1.1 CONNACK; the bridge logs the reason and what to set.
 * - the bridge marker: refused once per address, then not offered again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type BridgedBroker, eventually, Recorder, startBridged } from './bridge-helpers.ts';
import { hasNats, type NatsCluster, natsVersion, startNatsCluster } from './helpers/nats.ts';

if (!hasNats())
  console.warn('fleet-nats-gaps: /usr/sbin/nats-server missing (Debian package nats-server), skipped');

const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function natsNode(): Promise<NatsCluster> {
  const cluster = await startNatsCluster({ size: 1, mqtt: 'stream_replicas: 1' });
  closers.push(() => cluster.stop());
  return cluster;
}

async function gateway(port: number, lines: string[], clientId = 'gw-gaps'): Promise<BridgedBroker> {
  const gw = await startBridged(
    ['connection nats', `address 127.0.0.1:${port}`, `remote_clientid ${clientId}`, ...lines].join('\n'),
  );
  closers.push(() => gw.close());
  return gw;
}

/** A NATS node, a persistent consumer of `g/#` on it, a gateway bridged to it, a local publisher. */
async function bridgedThrough(topicLine: string) {
  const nats = await natsNode();
  const port = nats.nodes[0].mqttPort;
  const consumer = await Recorder.open(port, ['g/#'], { clientId: 'gaps-consumer', clean: false });
  closers.push(() => consumer.end());
  const gw = await gateway(port, [topicLine]);
  await gw.waitLog((l) => l.message === 'bridge connected');
  const pub = await Recorder.open(gw.port, [], { clientId: 'local-pub' });
  closers.push(() => pub.end());
  return { consumer, gw, pub };
}

describe.skipIf(!hasNats())(`issue 16.4: a bridge into NATS ${natsVersion()} handles what it lacks`, () => {
  it('issue 16.4: QoS 2 is sent at QoS 1 once NATS is seen closing the connection on it (one warning); nothing lost', async () => {
    const { consumer, gw, pub } = await bridgedThrough('topic g/# out 2');
    for (let i = 0; i < 5; i++) await pub.client.publish('g/q2', `two-${i}`, { qos: 2 });
    await consumer.until(() => consumer.got.length >= 5, 'the five QoS 2 messages at the consumer', 20_000);
    expect(consumer.got.map((m) => m.payload).sort()).toEqual(['two-0', 'two-1', 'two-2', 'two-3', 'two-4']);
    const warnings = gw.logs.filter((l) => l.message.includes('does not take QoS 2'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0].fields).toMatchObject({ topic: 'g/q2', qos: 2, closes: 3 });
    // From then on QoS 2 goes straight through at QoS 1: no more closes.
    const connects = gw.bridges.stats()[0].connects;
    for (let i = 5; i < 10; i++) await pub.client.publish('g/q2', `two-${i}`, { qos: 2 });
    await consumer.until(() => consumer.got.length >= 10, 'five more', 10_000);
    expect(gw.bridges.stats()[0].connects).toBe(connects);
    expect(gw.bridges.stats()[0].outDropped).toBe(0);
  }, 60_000);

  it("issue 16.4: a topic NATS cannot take ('.' or ' ') is dropped after three closes, counted and logged; what follows flows", async () => {
    const { consumer, gw, pub } = await bridgedThrough('topic g/# out 1');
    await pub.client.publish('g/before', 'before', { qos: 1 });
    await pub.client.publish('g/v1.5', 'dotted', { qos: 1 });
    await pub.client.publish('g/after', 'after', { qos: 1 });
    await consumer.until(
      () => consumer.on('g/after').length === 1,
      'the message after the dotted one',
      20_000,
    );
    // At least once: NATS may close the connection before its PUBACK for 'before' is out.
    expect([...new Set(consumer.got.map((m) => m.payload))]).toEqual(['before', 'after']);
    const dropped = gw.logs.filter((l) => l.message.includes('closes the connection on this message'));
    expect(dropped).toHaveLength(1);
    expect(dropped[0].level).toBe('error');
    expect(dropped[0].fields).toMatchObject({ topic: 'g/v1.5', qos: 1, closes: 3 });
    await eventually(() => gw.bridges.stats()[0].queue.count === 0, 'the queue empty (the last PUBACK in)');
    expect(gw.bridges.stats()[0].outDropped).toBe(1);
  }, 60_000);

  it('issue 16.4: MQTT 5 is refused by NATS, the reason and what to do logged; the marker is refused once', async () => {
    const nats = await natsNode();
    const port = nats.nodes[0].mqttPort;
    const v5 = await gateway(port, ['topic g/# out 1', 'bridge_protocol_version mqttv50']);
    const failed5 = await v5.waitLog((l) => l.message === 'bridge connect failed');
    // NATS answers with a 3.1.1 CONNACK (return code 1), which an MQTT 5 client cannot parse.
    expect(String(failed5.fields?.reason)).toMatch(/reason code invalid/);
    expect(failed5.fields?.hint).toMatch(/bridge_protocol_version mqttv311/);
    const ok = await gateway(port, ['topic g/# out 1'], 'gw-ok');
    await ok.waitLog((l) => l.message === 'bridge connected');
    expect(ok.logs.filter((l) => l.message.includes('refused the bridge protocol marker'))).toHaveLength(1);
  }, 60_000);
});
