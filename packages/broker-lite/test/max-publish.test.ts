/**
 * Issue 12.5: a legal maximum-size PUBLISH must not corrupt persistence. The broker re-encodes
 * what it receives (as MQTT 5 for storage and for v5 subscribers, with the topic of an alias
 * and subscription identifiers added), so it accepts only what re-encodes within MQTT's
 * 268,435,455-byte remaining length, and one recipient that still cannot take a message does
 * not stop the others. The broker runs as a child process of the real CLI: the test streams the
 * 256 MB packets from one reused chunk and counts what it receives, so its own memory stays small.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MAX_PACKET_SIZE, ReasonCode } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { type BrokerProcess, BrokerProcesses, persistentConf } from './helpers/broker-process.ts';
import { RawClient, startBroker, text } from './helpers/raw-client.ts';
import { StreamClient } from './helpers/stream-client.ts';

const MAX_REMAINING = MAX_PACKET_SIZE - 5;
const dirs: string[] = [];
const procs = new BrokerProcesses();
afterEach(async () => {
  await procs.cleanup();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A persistence directory and a config for the CLI using it. */
function setup(extra: string[] = []): { conf: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bl-maxpub-'));
  dirs.push(dir);
  return persistentConf(dir, extra);
}

const start = (conf: string): Promise<BrokerProcess> => procs.start(conf);

describe('issue 12.5: a maximum-size PUBLISH', () => {
  it('issue 12.5: a 268,435,460-byte retained PUBLISH (3.1.1) is refused at receipt; SIGTERM exits 0 and the acknowledged queued QoS 1 messages (3 before it, 3 after) survive the restart', async () => {
    const { conf } = setup();
    const a = await start(conf);
    const sub = (await RawClient.connect(a.port, { clientId: 'keeper', clean: false })).client;
    await sub.subscribe('keep/#', 1);
    await sub.disconnect();
    const pub = (await RawClient.connect(a.port, { clientId: 'p' })).client;
    for (let i = 1; i <= 3; i++) {
      pub.publish(`keep/${i}`, `m${i}`, 1, false, i);
      expect((await pub.expect('puback')).packetId).toBe(i);
    }

    const big = await StreamClient.connect(a.port, { clientId: 'big' });
    expect((await big.expect('connack')).reasonCode).toBe(0);
    const sent = await big.streamPublish({
      topic: 'big/one',
      qos: 1,
      retain: true,
      packetId: 1,
      remaining: MAX_REMAINING,
      fill: 0x61,
    });
    // Refused from its fixed header: closed long before 256 MB went over, and never acknowledged.
    expect(sent.closedEarly).toBe(true);
    expect(sent.written).toBeLessThan(64 << 20);
    expect(await big.next()).toBeNull();
    // and what is acknowledged after it is kept too
    for (let i = 4; i <= 6; i++) {
      pub.publish(`keep/${i}`, `m${i}`, 1, false, i);
      expect((await pub.expect('puback')).packetId).toBe(i);
    }
    pub.close();

    expect(await a.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    const b = await start(conf);
    const back = await RawClient.connect(b.port, { clientId: 'keeper', clean: false });
    expect(back.connack.sessionPresent).toBe(true);
    const got: string[] = [];
    for (let i = 0; i < 6; i++) {
      const p = await back.client.expect('publish');
      got.push(`${p.topic}=${text(p)}`);
      back.client.send({ type: 'puback', packetId: p.packetId as number });
    }
    expect(got).toEqual(['keep/1=m1', 'keep/2=m2', 'keep/3=m3', 'keep/4=m4', 'keep/5=m5', 'keep/6=m6']);
    await back.client.subscribe('big/#', 1, 2);
    expect(await back.client.silent(300)).toBe(true);
    back.client.close();
    expect(await b.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 120_000);

  it('issue 12.5: the largest PUBLISH accepted (topic alias, retained) is stored, survives SIGTERM and a restart, and reaches v5 and 3.1.1 subscribers; a subscriber whose identifiers do not fit is skipped, not the others', async () => {
    const { conf } = setup();
    const a = await start(conf);
    const pub = await StreamClient.connect(a.port, { clientId: 'pub5', protocolVersion: 5 });
    const connack = await pub.expect('connack');
    const max = connack.properties?.maximumPacketSize;
    // Advertised (MQTT 5 clients learn it before sending), below MQTT's own limit by the room
    // re-encoding needs: a topic alias's topic (up to 65,535 bytes) and subscription identifiers.
    expect(max).toBeDefined();
    expect(max as number).toBeLessThan(MAX_PACKET_SIZE - 65_535);
    expect(max as number).toBeGreaterThan(MAX_PACKET_SIZE - 70_000);

    // Ten levels, 65,535 bytes in all: the largest topic an alias can stand for.
    const tail = '/0/1/2/3/4/5/6/7';
    const topic = `b/${'x'.repeat(65_535 - 2 - tail.length)}${tail}`;
    expect(Buffer.byteLength(topic)).toBe(65_535);

    const a5 = await StreamClient.connect(a.port, { clientId: 'a5', protocolVersion: 5 });
    await a5.expect('connack');
    a5.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: 'b/#', qos: 1 }],
      properties: { subscriptionIdentifier: 7 },
    });
    await a5.expect('suback');
    const c4 = await StreamClient.connect(a.port, { clientId: 'c4' });
    await c4.expect('connack');
    c4.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'b/#', qos: 1 }] });
    await c4.expect('suback');
    // 256 overlapping subscriptions, each with a 4-byte identifier: 1,280 bytes of properties
    // more than this one message has room for.
    const many = await StreamClient.connect(a.port, { clientId: 'many', protocolVersion: 5 });
    await many.expect('connack');
    for (let mask = 0; mask < 256; mask++) {
      const levels = [0, 1, 2, 3, 4, 5, 6, 7].map((l) => ((mask >> l) & 1 ? '+' : String(l)));
      many.send({
        type: 'subscribe',
        packetId: mask + 1,
        subscriptions: [{ topicFilter: `b/+/${levels.join('/')}`, qos: 1 }],
        properties: { subscriptionIdentifier: 268_435_455 - mask },
      });
      await many.expect('suback');
    }

    // The alias is set by a small QoS 0 message, then the big one carries only the alias.
    pub.send({
      type: 'publish',
      topic,
      payload: Buffer.from('alias'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { topicAlias: 1 },
    });
    for (const c of [a5, c4, many]) {
      const p = await c.expect('publish');
      expect(p.topic).toBe(topic);
    }
    const remaining = (max as number) - 5;
    const sent = await pub.streamPublish({
      topic: '',
      qos: 1,
      retain: true,
      packetId: 9,
      properties: { topicAlias: 1 },
      remaining,
      fill: 0x61,
    });
    expect(sent.closedEarly).toBe(false);
    const ack = await pub.expect('puback', 120_000);
    expect(ack.packetId).toBe(9);
    expect(ack.reasonCode ?? 0).toBe(0);
    // payload = what the packet held after the empty topic, the packet id and the alias property
    const payloadBytes = remaining - 2 - 2 - 4;

    const at5 = await a5.expect('large-publish', 120_000);
    expect(at5.topic).toBe(topic);
    expect(at5.properties?.subscriptionIdentifiers).toEqual([7]);
    expect(at5.payloadBytes).toBe(payloadBytes);
    expect(at5.payloadIntact).toBe(true);
    expect(at5.remaining).toBeLessThanOrEqual(MAX_REMAINING);
    a5.send({ type: 'puback', packetId: at5.packetId as number });
    const at4 = await c4.expect('large-publish', 120_000);
    expect(at4.topic).toBe(topic);
    expect(at4.payloadBytes).toBe(payloadBytes);
    expect(at4.payloadIntact).toBe(true);
    c4.send({ type: 'puback', packetId: at4.packetId as number });
    await a.waitFor((l) => l.msg === 'message dropped' && l.clientId === 'many');

    // The one it could not take is still served.
    const afterTopic = `b/y${tail}`;
    pub.send({
      type: 'publish',
      topic: afterTopic,
      payload: Buffer.from('after'),
      qos: 0,
      retain: false,
      dup: false,
    });
    const after = await many.expect('publish');
    expect(after.topic).toBe(afterTopic);
    expect(after.properties?.subscriptionIdentifiers).toHaveLength(256);
    for (const c of [pub, a5, c4, many]) c.close();

    expect(await a.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const b = await start(conf);
    const d5 = await StreamClient.connect(b.port, { clientId: 'd5', protocolVersion: 5 });
    await d5.expect('connack');
    d5.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'b/#', qos: 1 }] });
    await d5.expect('suback');
    const kept = await d5.expect('large-publish', 120_000);
    expect(kept.retain).toBe(true);
    expect(kept.topic).toBe(topic);
    expect(kept.payloadBytes).toBe(payloadBytes);
    expect(kept.payloadIntact).toBe(true);
    d5.close();
    expect(await b.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 240_000);

  it('issue 12.5: an MQTT 5 PUBLISH over the limit gets DISCONNECT 0x95 from its fixed header', async () => {
    const broker = await startBroker();
    try {
      const c = await StreamClient.connect(broker.port, { clientId: 'over5', protocolVersion: 5 });
      const max = (await c.expect('connack')).properties?.maximumPacketSize as number;
      expect(max).toBeLessThan(MAX_PACKET_SIZE);
      // Only the fixed header of a PUBLISH of MQTT's largest size: the broker refuses it there.
      c.socket.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]));
      const d = await c.expect('disconnect');
      expect(d.reasonCode).toBe(ReasonCode.PacketTooLarge);
      expect(await c.next()).toBeNull();
    } finally {
      await broker.close();
    }
  });

  it('issue 12.5: one recipient whose delivery throws does not stop the fan-out or cost the publisher its PUBACK', async () => {
    const broker = await startBroker({
      accessControl: {
        allowed(access, client) {
          if (access === 'read' && client.clientId === 'bad') throw new Error('ACL backend down');
          return true;
        },
      },
    });
    try {
      const subs: RawClient[] = [];
      for (const id of ['s1', 'bad', 's3']) {
        const c = (await RawClient.connect(broker.port, { clientId: id })).client;
        await c.subscribe('f/#', 1);
        subs.push(c);
      }
      const pub = (await RawClient.connect(broker.port, { clientId: 'fan' })).client;
      pub.publish('f/x', 'hello', 1, false, 5);
      expect((await pub.expect('puback')).packetId).toBe(5);
      expect(text(await subs[0].expect('publish'))).toBe('hello');
      expect(text(await subs[2].expect('publish'))).toBe('hello');
      expect(await subs[1].silent(200)).toBe(true);
      expect(broker.logs.some((l) => l.level === 'error' && l.message.includes('delivery failed'))).toBe(
        true,
      );
      for (const c of [...subs, pub]) c.close();
    } finally {
      await broker.close();
    }
  });
});
