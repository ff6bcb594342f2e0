/**
 * Issue 15 part 3: MQTT 5 parity beyond Mosquitto. Each case is the Eclipse Paho interoperability
 * test it is named after, over a real socket with a raw client (the bytes on the wire are what
 * is checked), plus what the Paho tests do not look at (the alias policy, packet sizes).
 */
import { encode, type Packet, type PublishPacket } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { describeConfig } from '../src/config-build.ts';
import { OUT_ALIAS_LIMIT, OutAliases } from '../src/topic-alias.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const brokers: TestBroker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
});

async function broker(options: Parameters<typeof startBroker>[0] = {}): Promise<TestBroker> {
  const b = await startBroker(options);
  brokers.push(b);
  return b;
}

/** Bytes of everything the broker sends to `c` from now on (what the wire carried). */
function countBytes(c: RawClient): { bytes: number } {
  const n = { bytes: 0 };
  c.socket.on('data', (chunk: Buffer) => {
    n.bytes += chunk.length;
  });
  return n;
}

describe('issue 15.3: Receive Maximum (Paho test_flow_control2)', () => {
  it('issue 15.3: the CONNACK advertises max_inflight_messages (100 by default), not 65,535', async () => {
    const a = await broker();
    const c1 = await RawClient.connect(a.port, { protocolVersion: 5, clientId: 'rm-default' });
    expect(c1.connack.properties?.receiveMaximum).toBe(100);
    c1.client.close();
    const b = await broker({ maxInflightMessages: 20 });
    const c2 = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'rm-20' });
    expect(c2.connack.properties?.receiveMaximum).toBe(20);
    c2.client.close();
    // max_inflight_messages 0 (no bound) is the protocol's maximum, as in Mosquitto
    const u = await broker({ maxInflightMessages: 0 });
    const c3 = await RawClient.connect(u.port, { protocolVersion: 5, clientId: 'rm-0' });
    expect(c3.connack.properties?.receiveMaximum).toBe(65_535);
    c3.client.close();
  });

  it('issue 15.3: test_flow_control2: the advertised maximum + 1 QoS 2 PUBLISHes, no PUBREL, get DISCONNECT 0x93', async () => {
    const b = await broker();
    const { client: c, connack } = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'myclientid',
      properties: { sessionExpiryInterval: 0 },
    });
    const max = connack.properties?.receiveMaximum ?? 65_535;
    const publishes: Uint8Array[] = [];
    for (let i = 1; i <= max + 1; i++)
      publishes.push(
        encode(
          {
            type: 'publish',
            topic: 'TopicA',
            payload: Buffer.from(`message ${i}`),
            qos: 2,
            retain: false,
            dup: false,
            packetId: i,
          },
          5,
        ),
      );
    c.sendBytes(Buffer.concat(publishes));
    let pubrecs = 0;
    let disconnect: Packet | null = null;
    for (;;) {
      const p = await c.next(3000);
      if (p === null) break;
      if (p.type === 'pubrec') pubrecs++;
      else if (p.type === 'disconnect') disconnect = p;
    }
    expect(disconnect).toMatchObject({ type: 'disconnect', reasonCode: 0x93 });
    expect(pubrecs).toBe(max);
  });
});

describe('issue 15.3: outbound topic aliases (Paho test_server_topic_alias)', () => {
  const TOPIC = 'TopicA';

  async function subscriber(port: number, topicAliasMaximum?: number): Promise<RawClient> {
    const { client } = await RawClient.connect(port, {
      protocolVersion: 5,
      clientId: `alias-${topicAliasMaximum ?? 'none'}`,
      properties: topicAliasMaximum === undefined ? undefined : { topicAliasMaximum },
    });
    return client;
  }

  it('issue 15.3: test_server_topic_alias: a client allowing one alias gets the topic once, then alias only, at QoS 0, 1 and 2', async () => {
    const b = await broker();
    const c = await subscriber(b.port, 1);
    expect(await c.subscribe(TOPIC, 2)).toEqual([2]);
    const got: PublishPacket[] = [];
    for (const qos of [0, 1, 2] as const) {
      c.publish(TOPIC, 'topic alias 1', qos, false, 10 + qos);
      for (;;) {
        const p = await c.next();
        if (p?.type === 'publish') {
          got.push(p);
          if (p.qos === 1) c.send({ type: 'puback', packetId: p.packetId as number });
          if (p.qos === 2) c.send({ type: 'pubrec', packetId: p.packetId as number });
          break;
        }
        if (p?.type === 'pubrec') c.send({ type: 'pubrel', packetId: p.packetId });
      }
    }
    const alias = got[0].properties?.topicAlias as number;
    expect(alias).toBe(1);
    expect(got[0].topic).toBe(TOPIC);
    expect(got[1].properties?.topicAlias).toBe(alias);
    expect(got[1].topic).toBe('');
    expect(got[2].properties?.topicAlias).toBe(alias);
    expect(got[2].topic).toBe('');
    expect(got.map((p) => p.qos)).toEqual([0, 1, 2]);
    c.close();
  });

  it('issue 15.3: test_server_topic_alias: a client that allows none gets no alias', async () => {
    const b = await broker();
    const c = await subscriber(b.port);
    await c.subscribe(TOPIC, 0);
    for (let i = 0; i < 3; i++) {
      c.publish(TOPIC, 'no alias', 0);
      const p = await c.expect('publish');
      expect(p.topic).toBe(TOPIC);
      expect(p.properties?.topicAlias).toBeUndefined();
    }
    c.close();
  });

  it('issue 15.3: a 48-character topic costs two bytes per message once aliased (16-byte payload, QoS 0)', async () => {
    const topic = 'site-0042/building-7/floor-3/room-12/temperature';
    expect(topic.length).toBe(48);
    const payload = Buffer.alloc(16, 0x41);
    const b = await broker();
    const measure = async (aliases: number | undefined): Promise<number> => {
      const c = await subscriber(b.port, aliases);
      await c.subscribe(topic, 0);
      const { client: pub } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'alias-pub' });
      const wire = countBytes(c);
      const n = 200;
      for (let i = 0; i < n; i++) pub.publish(topic, payload, 0);
      for (let i = 0; i < n; i++) {
        const p = await c.expect('publish');
        expect(Buffer.from(p.payload).equals(payload)).toBe(true);
      }
      pub.close();
      c.close();
      return wire.bytes / n;
    };
    const plain = await measure(undefined);
    const aliased = await measure(10);
    // plain: header 2, topic 2 + 48, property length 1, payload 16 = 69 bytes
    expect(plain).toBe(69);
    // aliased: header 2, topic length 2, property length 1, alias property 3, payload 16 = 24
    // (the first message carries the topic too: 72 bytes, once in 200)
    expect(aliased).toBeCloseTo((72 + 199 * 24) / 200, 6);
  });

  it('issue 15.3: aliases go to the topics a client receives most; at most OUT_ALIAS_LIMIT and the client maximum', async () => {
    const b = await broker();
    const c = await subscriber(b.port, 2);
    await c.subscribe('f/#', 0);
    const { client: pub } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'freq-pub' });
    // two cold topics take the two aliases first; then one hot topic dominates the traffic
    const seen: PublishPacket[] = [];
    const send = async (topic: string): Promise<PublishPacket> => {
      pub.publish(topic, 'x', 0);
      const p = await c.expect('publish');
      seen.push(p);
      return p;
    };
    await send('f/cold/1');
    await send('f/cold/2');
    for (let i = 0; i < 600; i++) await send('f/hot/topic/with/a/longer/name');
    // the hot topic took over an alias (announced once with its name), and its last messages
    // carry no topic name
    const hot = seen.filter(
      (p) => p.properties?.topicAlias !== undefined && p.topic === 'f/hot/topic/with/a/longer/name',
    );
    expect(hot.length).toBe(1);
    const last = seen[seen.length - 1];
    expect(last.topic).toBe('');
    expect(last.properties?.topicAlias).toBe(hot[0].properties?.topicAlias);
    // never an alias above what the client allowed
    for (const p of seen) expect(p.properties?.topicAlias ?? 0).toBeLessThanOrEqual(2);
    pub.close();
    c.close();
    expect(OUT_ALIAS_LIMIT).toBeGreaterThanOrEqual(2);
  });

  it('issue 15.3: a client that allows 65,535 aliases gets at most OUT_ALIAS_LIMIT', async () => {
    const b = await broker();
    const c = await subscriber(b.port, 65_535);
    await c.subscribe('many/#', 0);
    const { client: pub } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'many-pub' });
    const aliases = new Set<number>();
    for (let i = 0; i < OUT_ALIAS_LIMIT + 20; i++) {
      pub.publish(`many/topic/${i}`, 'x', 0);
      const p = await c.expect('publish');
      // an unaliased topic still arrives whole
      expect(p.topic).toBe(`many/topic/${i}`);
      if (p.properties?.topicAlias !== undefined) aliases.add(p.properties.topicAlias);
    }
    expect(aliases.size).toBe(OUT_ALIAS_LIMIT);
    expect(Math.max(...aliases)).toBe(OUT_ALIAS_LIMIT);
    pub.close();
    c.close();
  });

  it('issue 15.3: max_topic_alias_out 0 sends none; 1 uses one alias whatever the client allows', async () => {
    const off = await broker({ maxTopicAliasOut: 0 });
    const c = await subscriber(off.port, 10);
    await c.subscribe(TOPIC, 0);
    c.publish(TOPIC, 'a', 0);
    c.publish(TOPIC, 'b', 0);
    for (let i = 0; i < 2; i++) expect((await c.expect('publish')).properties?.topicAlias).toBeUndefined();
    c.close();
    const one = await broker({ maxTopicAliasOut: 1 });
    const d = await subscriber(one.port, 10);
    await d.subscribe('one/#', 0);
    d.publish('one/first', 'a', 0);
    d.publish('one/second', 'b', 0);
    expect((await d.expect('publish')).properties?.topicAlias).toBe(1);
    expect((await d.expect('publish')).properties?.topicAlias).toBeUndefined();
    d.close();
  });

  it('issue 15.3: aliased QoS 1/2 re-sent after a reconnect carry their topic (aliases do not outlive a connection)', async () => {
    const b = await broker();
    const opts = {
      protocolVersion: 5 as const,
      clientId: 'alias-resume',
      clean: false,
      properties: { topicAliasMaximum: 5, sessionExpiryInterval: 60 },
    };
    const { client: c } = await RawClient.connect(b.port, opts);
    await c.subscribe('r/topic', 1);
    const { client: pub } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'resume-pub' });
    pub.publish('r/topic', 'one', 1, false, 1);
    pub.publish('r/topic', 'two', 1, false, 2);
    const first = await c.expect('publish');
    const second = await c.expect('publish');
    expect(first.topic).toBe('r/topic');
    expect(second.topic).toBe('');
    c.close(); // neither acknowledged
    await c.closed;
    const { client: again } = await RawClient.connect(b.port, { ...opts, clean: false });
    for (let i = 0; i < 2; i++) {
      const p = await again.expect('publish');
      expect(p.dup).toBe(true);
      expect(p.topic).toBe('r/topic');
      expect(p.properties?.topicAlias).toBeUndefined();
      again.send({ type: 'puback', packetId: p.packetId as number });
    }
    pub.close();
    again.close();
  });

  it('issue 15.3: a message too large for the client with its alias property goes without one, not dropped', async () => {
    const b = await broker();
    const topic = 'big/topic';
    const payload = Buffer.alloc(200, 1);
    // the whole plain PUBLISH fits exactly; with the alias property it would not
    const plain = encode(
      { type: 'publish', topic, payload, qos: 0, retain: false, dup: false, properties: {} },
      5,
    ).length;
    const { client: c } = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'alias-max-packet',
      properties: { topicAliasMaximum: 3, maximumPacketSize: plain },
    });
    await c.subscribe(topic, 0);
    c.publish(topic, payload, 0);
    const p = await c.expect('publish');
    expect(p.topic).toBe(topic);
    expect(p.properties?.topicAlias).toBeUndefined();
    // a smaller one on the same topic fits with the alias: it names the topic (the first did not)
    c.publish(topic, 'small', 0);
    const q = await c.expect('publish');
    expect(q.topic).toBe(topic);
    expect(q.properties?.topicAlias).toBe(1);
    c.publish(topic, 'small', 0);
    const r = await c.expect('publish');
    expect(r.topic).toBe('');
    expect(r.properties?.topicAlias).toBe(1);
    c.close();
  });
});

describe('issue 15.3: max_topic_alias_out and the policy bounds', () => {
  it('issue 15.3: max_topic_alias_out parses 0..1024, defaults to 32, shows in check', () => {
    expect(parseConfig('listener 1883\n', '/tmp/x.conf').maxTopicAliasOut).toBe(32);
    const cfg = parseConfig('listener 1883\nmax_topic_alias_out 0\n', '/tmp/x.conf');
    expect(cfg.maxTopicAliasOut).toBe(0);
    expect(describeConfig(cfg)).toContain('max_topic_alias_out 0\n');
    expect(() => parseConfig('max_topic_alias_out 1025\n', '/tmp/x.conf')).toThrow(ConfigError);
    expect(() => parseConfig('max_topic_alias_out -1\n', '/tmp/x.conf')).toThrow(/max_topic_alias_out/);
  });

  it('issue 15.3: a million distinct topics leave at most max aliases and 2 x max counted topics', () => {
    const a = new OutAliases(32);
    for (let i = 0; i < 1_000_000; i++) a.lookup(`hostile/topic/${i}`);
    const inner = a as unknown as { byTopic: Map<string, number>; candidates: Map<string, number> | null };
    expect(inner.byTopic.size).toBe(32);
    expect(inner.candidates?.size ?? 0).toBeLessThanOrEqual(64);
    // topics too short or too long for an alias are never counted
    const b = new OutAliases(1);
    expect(b.lookup('abc')).toBe(0);
    expect(b.lookup('x'.repeat(1025))).toBe(0);
    expect(b.lookup('abcd')).not.toBe(0);
  });
});

describe('issue 15.3: request problem / response information (MQTT 5 3.1.2.11.6-7)', () => {
  it('issue 15.3: request_problem_information 0: no reason string on PUBACK, SUBACK or DISCONNECT', async () => {
    const b = await broker();
    const { client: c } = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'no-problem-info',
      properties: { requestProblemInformation: false },
    });
    // $SYS is the broker's: a client's PUBLISH there is refused (PUBACK 0x87), a plain ack form
    c.publish('$SYS/broker/forged', 'x', 1, false, 7);
    const ack = await c.expect('puback');
    expect(ack.reasonCode).toBe(0x87);
    expect(ack.properties?.reasonString).toBeUndefined();
    expect(ack.properties?.userProperties).toBeUndefined();
    c.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'a/'.repeat(300), qos: 0 }] });
    const suback = await c.expect('suback');
    expect(suback.reasonCodes).toEqual([0x8f]);
    expect(suback.properties).toBeUndefined();
    // a protocol error: a PUBLISH carrying a subscription identifier
    c.send({
      type: 'publish',
      topic: 't/x',
      payload: Buffer.from('x'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { subscriptionIdentifier: 3 },
    } as Packet);
    const d = await c.expect('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toBeUndefined();
  });

  it('issue 15.3: by default (1) a DISCONNECT says why in a reason string', async () => {
    const b = await broker();
    const { client: c } = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'problem-info' });
    c.send({
      type: 'publish',
      topic: 't/x',
      payload: Buffer.from('x'),
      qos: 0,
      retain: false,
      dup: false,
      properties: { subscriptionIdentifier: 3 },
    } as Packet);
    const d = await c.expect('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(d.properties?.reasonString).toMatch(/subscription identifier/);
  });

  it('issue 15.3: request_response_information: no Response Information unless asked; asked, the client gets a topic prefix of its own', async () => {
    const b = await broker();
    const plain = await RawClient.connect(b.port, { protocolVersion: 5, clientId: 'rri-0' });
    expect(plain.connack.properties?.responseInformation).toBeUndefined();
    plain.client.close();
    const no = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'rri-false',
      properties: { requestResponseInformation: false },
    });
    expect(no.connack.properties?.responseInformation).toBeUndefined();
    no.client.close();
    const yes = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId: 'rri-1',
      properties: { requestResponseInformation: true },
    });
    expect(yes.connack.properties?.responseInformation).toBe('response/rri-1/');
    // the request / response round trip (Paho test_request_response) with that prefix
    const c = yes.client;
    await c.subscribe('response/rri-1/#', 1);
    c.send({
      type: 'publish',
      topic: 'response/rri-1/answer',
      payload: Buffer.from('response'),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 5,
      properties: { correlationData: Buffer.from('334') },
    });
    const got: Array<Packet | null> = [await c.next(), await c.next()];
    const p = got.find((x) => x?.type === 'publish') as PublishPacket;
    expect(Buffer.from(p.properties?.correlationData ?? []).toString()).toBe('334');
    c.close();
  });
});

it('issue 15.3: no Response Information for a client id that cannot be one topic level', async () => {
  const b = await broker();
  for (const clientId of ['a/b', 'a+b', 'a#b']) {
    const r = await RawClient.connect(b.port, {
      protocolVersion: 5,
      clientId,
      properties: { requestResponseInformation: true },
    });
    expect(r.connack.reasonCode).toBe(0);
    expect(r.connack.properties?.responseInformation).toBeUndefined();
    r.client.close();
  }
});
