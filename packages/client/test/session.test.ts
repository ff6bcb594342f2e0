import { MqttError, type Packet, type PublishPacket, ReasonCode } from '@mqtt-edge/codec';
import { describe, expect, it } from 'vitest';
import { ConnackError } from '../src/core/errors.ts';
import type { PublishedEvent, SessionEvent } from '../src/core/events.ts';
import { MemoryOutbox } from '../src/core/memory-outbox.ts';
import { bytes, Peer } from './helpers/peer.ts';

const of = <T extends SessionEvent['type']>(events: SessionEvent[], type: T) =>
  events.filter((e): e is Extract<SessionEvent, { type: T }> => e.type === type);
const publishes = (packets: Packet[]) => packets.filter((p): p is PublishPacket => p.type === 'publish');
const msg = (topic: string, qos: 0 | 1 | 2, payload = 'x') => ({
  topic,
  payload: bytes(payload),
  qos,
  retain: false,
});

describe('CONNECT / CONNACK', () => {
  it('writes a 3.1.1 CONNECT with credentials and will, and reports connected', () => {
    const peer = new Peer({
      clientId: 'dev-1',
      keepalive: 30,
      username: 'u',
      password: 'p',
      will: { topic: 'dev/1/status', payload: 'offline', qos: 1, retain: true },
    });
    const connect = peer.connect({ sessionPresent: false });
    expect(connect).toMatchObject({
      type: 'connect',
      protocolVersion: 4,
      clientId: 'dev-1',
      clean: true,
      keepalive: 30,
      username: 'u',
      password: bytes('p'),
      will: { topic: 'dev/1/status', payload: bytes('offline'), qos: 1, retain: true },
    });
    const [connected] = peer.events();
    expect(connected).toMatchObject({
      type: 'connected',
      sessionPresent: false,
      clientId: 'dev-1',
      keepalive: 30,
    });
    expect(peer.session.state).toBe('connected');
  });

  it("clean: 'first' starts clean once, then resumes on every reconnect", () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'once', clean: 'first' });
    expect(peer.connect()).toMatchObject({ clean: true });
    peer.drop();
    // the second CONNECT resumes, and a session present on it is no protocol error
    expect(peer.connect({ sessionPresent: true })).toMatchObject({ clean: false });
    expect(of(peer.events(), 'connected').map((e) => e.sessionPresent)).toEqual([false, true]);
    peer.drop();
    expect(peer.connect({ sessionPresent: true })).toMatchObject({ clean: false });
    expect(peer.session.state).toBe('connected');
  });

  it("clean: 'first' stays clean until a CONNACK accepts a connection", () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'once', clean: 'first' });
    // refused: the next attempt is still the first connection
    expect(peer.connect({ reasonCode: ReasonCode.ServerUnavailable })).toMatchObject({ clean: true });
    expect(peer.session.state).toBe('closing');
    peer.drop();
    expect(peer.connect()).toMatchObject({ clean: true });
    peer.drop();
    expect(peer.connect()).toMatchObject({ clean: false });
  });

  it("clean: 'first' and false need a client id in 3.1.1; other values are refused", () => {
    expect(() => new Peer({ clean: 'first' })).toThrow(/needs a client id when clean is first/);
    expect(() => new Peer({ clean: false })).toThrow(/needs a client id when clean is false/);
    expect(() => new Peer({ clientId: 'x', clean: 'yes' as unknown as boolean })).toThrow(RangeError);
  });

  it('MQTT 3.1 writes protocol level 3', () => {
    const peer = new Peer({ protocolVersion: 3, clientId: 'old' });
    expect(peer.connect()).toMatchObject({ protocolVersion: 3, clientId: 'old' });
    expect(of(peer.events(), 'connected')).toHaveLength(1);
  });

  it('5.0: advertises our limits, takes the assigned client id, server keepalive and receive maximum', () => {
    const peer = new Peer({
      protocolVersion: 5,
      clean: false,
      sessionExpiryInterval: 3600,
      receiveMaximum: 10,
      topicAliasMaximum: 5,
      maximumPacketSize: 4096,
    });
    const connect = peer.connect({
      properties: { assignedClientIdentifier: 'auto-42', serverKeepAlive: 5, receiveMaximum: 2 },
    });
    expect(connect).toMatchObject({
      clientId: '',
      clean: false,
      properties: {
        sessionExpiryInterval: 3600,
        receiveMaximum: 10,
        topicAliasMaximum: 5,
        maximumPacketSize: 4096,
      },
    });
    expect(peer.events()[0]).toMatchObject({ type: 'connected', clientId: 'auto-42', keepalive: 5 });
    expect(peer.session.clientId).toBe('auto-42');
    // Server keepalive 5 s: the ping is due after 5 s idle, not after ours (60 s).
    expect(peer.session.nextDeadline()).toBe(peer.now + 5_000);
    // The assigned id is used on the next connection.
    peer.drop();
    expect(peer.connect()).toMatchObject({ clientId: 'auto-42' });
    // A connection without server keepalive is back to ours.
    peer.events();
    expect(peer.session.nextDeadline()).toBe(peer.now + 60_000);
  });

  it.each([1, 2, 3, 4, 5])('3.1.1 refusal with return code %i is a typed error and a close', (code) => {
    const peer = new Peer({ clientId: 'x' });
    peer.session.open(peer.now);
    peer.packets();
    peer.send({ type: 'connack', sessionPresent: false, reasonCode: code });
    const events = peer.events();
    const err = of(events, 'error')[0].error as ConnackError;
    expect(err).toBeInstanceOf(ConnackError);
    expect(err.returnCode).toBe(code);
    expect(err.reasonCode).toBe([0, 0x84, 0x85, 0x88, 0x86, 0x87][code]);
    expect(err.retryable).toBe(code === 3);
    expect(of(events, 'closed')[0]).toMatchObject({ by: 'server', error: err });
    expect(peer.session.state).toBe('closing');
  });

  const v5Refusals = [
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a,
    0x9b, 0x9c, 0x9d, 0x9f,
  ];
  it.each(v5Refusals.map((c) => [`0x${c.toString(16)}`, c]))(
    '5.0 refusal %s carries code and reason string',
    (_hex, code) => {
      const peer = new Peer({ protocolVersion: 5 });
      peer.session.open(peer.now);
      peer.packets();
      peer.send({
        type: 'connack',
        sessionPresent: false,
        reasonCode: code,
        properties: { reasonString: 'nope' },
      });
      const err = of(peer.events(), 'error')[0].error as ConnackError;
      expect(err).toBeInstanceOf(ConnackError);
      expect(err.returnCode).toBeUndefined();
      expect(err.reasonCode).toBe(code);
      expect(err.reasonString).toBe('nope');
      expect(err.message).toContain('nope');
    },
  );

  it('no CONNACK within connectTimeout closes with CONNECT_TIMEOUT', () => {
    const peer = new Peer({ connectTimeout: 5000 });
    peer.session.open(peer.now);
    expect(peer.session.nextDeadline()).toBe(peer.now + 5000);
    peer.advance(4999);
    expect(peer.events()).toEqual([]);
    peer.advance(1);
    const events = peer.events();
    expect((of(events, 'error')[0].error as MqttError).code).toBe('CONNECT_TIMEOUT');
    expect(of(events, 'closed')).toHaveLength(1);
  });
});

describe('keepalive', () => {
  it('PINGREQ after keepalive idle, dead after 1.5x without anything received', () => {
    const peer = new Peer({ keepalive: 10 });
    peer.connect();
    peer.events();
    expect(peer.session.nextDeadline()).toBe(peer.now + 10_000);
    peer.advance(9_999);
    expect(peer.packets()).toEqual([]);
    peer.advance(1);
    expect(peer.packets()).toEqual([{ type: 'pingreq' }]);
    expect(peer.session.nextDeadline()).toBe(peer.now + 5_000);
    peer.send({ type: 'pingresp' });
    expect(peer.session.nextDeadline()).toBe(peer.now + 10_000);
    peer.advance(10_000);
    expect(peer.packets()).toEqual([{ type: 'pingreq' }]);
    peer.advance(4_999);
    expect(peer.events()).toEqual([]);
    peer.advance(1);
    const events = peer.events();
    expect((of(events, 'error')[0].error as MqttError).code).toBe('KEEPALIVE_TIMEOUT');
    expect(of(events, 'closed')[0].reasonCode).toBe(ReasonCode.KeepAliveTimeout);
    expect(peer.session.nextDeadline()).toBeUndefined();
  });

  it('a client that only sends still pings, since nothing comes back for QoS 0', () => {
    const peer = new Peer({ keepalive: 10 });
    peer.connect();
    let pings = 0;
    for (let i = 0; i < 25; i++) {
      peer.advance(1000);
      peer.session.publish(msg('t', 0), peer.now);
      if (peer.packets().some((p) => p.type === 'pingreq')) {
        pings++;
        peer.send({ type: 'pingresp' });
      }
    }
    // every 10 s of silence from the server, though we sent every second
    expect(pings).toBe(2);
    expect(of(peer.events(), 'closed')).toHaveLength(0);
  });

  it('keepalive 0 sets no timer', () => {
    const peer = new Peer({ keepalive: 0 });
    peer.connect();
    expect(peer.session.nextDeadline()).toBeUndefined();
  });
});

describe('outgoing publish', () => {
  it('QoS 0 is written at once, QoS 1 completes on PUBACK, QoS 2 on PUBCOMP after PUBREL', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    peer.events();
    expect(peer.session.publish(msg('a', 0), peer.now)).toEqual({
      seq: undefined,
      packetId: undefined,
      sent: true,
    });
    const t1 = peer.session.publish(msg('a', 1), peer.now);
    const t2 = peer.session.publish(msg('a', 2), peer.now);
    expect(t1.sent && t2.sent).toBe(true);
    expect(t1.packetId).not.toBe(t2.packetId);
    const sent = publishes(peer.packets());
    expect(sent.map((p) => [p.qos, p.packetId, p.dup])).toEqual([
      [0, undefined, false],
      [1, t1.packetId, false],
      [2, t2.packetId, false],
    ]);
    peer.send({ type: 'puback', packetId: t1.packetId! });
    expect(of(peer.events(), 'published')).toMatchObject([
      { seq: t1.seq, packetId: t1.packetId, reasonCode: 0 },
    ]);
    peer.send({ type: 'pubrec', packetId: t2.packetId! });
    expect(peer.packets()).toMatchObject([{ type: 'pubrel', packetId: t2.packetId }]);
    expect(of(peer.events(), 'published')).toEqual([]);
    peer.send({ type: 'pubcomp', packetId: t2.packetId! });
    expect(of(peer.events(), 'published')).toMatchObject([{ seq: t2.seq, qos: 2 }]);
    expect(peer.session.outbox!.stats().count).toBe(0);
    expect(peer.session.inflightCount).toBe(0);
  });

  it('5.0 failing PUBACK / PUBREC completes with a RequestError; no PUBREL after a failing PUBREC', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    const a = peer.session.publish(msg('a', 1), peer.now);
    const b = peer.session.publish(msg('b', 2), peer.now);
    peer.packets();
    peer.send({
      type: 'puback',
      packetId: a.packetId!,
      reasonCode: 0x87,
      properties: { reasonString: 'acl' },
    });
    peer.send({ type: 'pubrec', packetId: b.packetId!, reasonCode: 0x97 });
    expect(peer.packets()).toEqual([]);
    const done = of(peer.events(), 'published');
    expect(done.map((e) => [e.reasonCode, e.error?.reasonCode])).toEqual([
      [0x87, 0x87],
      [0x97, 0x97],
    ]);
    expect(done[0].error?.reasonString).toBe('acl');
    expect(peer.session.outbox!.stats().count).toBe(0);
  });

  it('publishing while disconnected queues; the queue goes out in order on connect', () => {
    const peer = new Peer();
    const tickets = [0, 1, 2, 1, 0].map((q, i) =>
      peer.session.publish(msg(`q/${i}`, q as 0 | 1 | 2), peer.now),
    );
    expect(tickets.every((t) => !t.sent && t.seq !== undefined)).toBe(true);
    peer.connect();
    const sent = publishes(peer.packets());
    expect(sent.map((p) => p.topic)).toEqual(['q/0', 'q/1', 'q/2', 'q/3', 'q/4']);
    // Queued QoS 0 messages complete when written.
    expect(of(peer.events(), 'published').map((e) => e.seq)).toEqual([tickets[0].seq, tickets[4].seq]);
  });

  it("respects the server's receiveMaximum: never more in flight, refills as acks arrive", () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect({ properties: { receiveMaximum: 3 } });
    for (let i = 0; i < 10; i++) peer.session.publish(msg(`t/${i}`, 1), peer.now);
    let sent = publishes(peer.packets());
    expect(sent.map((p) => p.topic)).toEqual(['t/0', 't/1', 't/2']);
    expect(peer.session.inflightCount).toBe(3);
    peer.send({ type: 'puback', packetId: sent[1].packetId! });
    sent = publishes(peer.packets());
    expect(sent.map((p) => p.topic)).toEqual(['t/3']);
    peer.send({ type: 'puback', packetId: sent[0].packetId! });
    expect(publishes(peer.packets()).map((p) => p.topic)).toEqual(['t/4']);
    expect(peer.session.inflightCount).toBe(3);
  });

  it('default window: 4,096 in flight, the rest queued, refilled as acks arrive', () => {
    const peer = new Peer({});
    peer.connect();
    for (let i = 0; i < 5000; i++) peer.session.publish(msg('w', 1), peer.now);
    const sent = publishes(peer.packets());
    expect(sent).toHaveLength(4096);
    expect(peer.session.inflightCount).toBe(4096);
    expect(peer.session.outbox!.stats().count).toBe(5000);
    peer.send({ type: 'puback', packetId: sent[0].packetId! });
    const more = publishes(peer.packets());
    expect(more).toHaveLength(1);
    expect(more[0].packetId).not.toBe(sent[1].packetId);
    expect(peer.session.inflightCount).toBe(4096);
  });

  it('packet ids never collide with one in flight, across wrap-around and reconnects', () => {
    const peer = new Peer({ clean: false, clientId: 'c', maxInflight: 500 });
    peer.connect();
    const inflight = new Set<number>();
    let rounds = 0;
    for (let i = 0; i < 70_000 / 50; i++) {
      for (let k = 0; k < 50; k++) peer.session.publish(msg('t', 1), peer.now);
      for (const p of publishes(peer.packets())) {
        expect(inflight.has(p.packetId!)).toBe(false);
        inflight.add(p.packetId!);
      }
      // ack all but the 3 oldest-remaining every round, so some ids stay taken across the wrap
      const ids = [...inflight];
      for (const id of ids.slice(3)) {
        peer.send({ type: 'puback', packetId: id });
        inflight.delete(id);
      }
      if (++rounds % 300 === 0) {
        peer.drop();
        peer.connect({ sessionPresent: true });
        // resent in flight ones keep their ids
        expect(new Set(publishes(peer.packets()).map((p) => p.packetId))).toEqual(inflight);
      }
    }
    expect(peer.session.inflightCount).toBe(inflight.size);
  });

  it('topic aliases out: first use sets the alias, later uses send an empty topic; reset per connection', () => {
    const peer = new Peer({ protocolVersion: 5, outgoingTopicAliases: true });
    peer.connect({ properties: { topicAliasMaximum: 2 } });
    for (const t of ['a', 'b', 'a', 'c', 'b']) peer.session.publish(msg(t, 0), peer.now);
    const sent = publishes(peer.packets());
    expect(sent.map((p) => [p.topic, p.properties?.topicAlias])).toEqual([
      ['a', 1],
      ['b', 2],
      ['', 1],
      ['c', undefined],
      ['', 2],
    ]);
    peer.drop();
    peer.connect({ properties: { topicAliasMaximum: 2 } });
    peer.session.publish(msg('b', 0), peer.now);
    expect(publishes(peer.packets()).map((p) => [p.topic, p.properties?.topicAlias])).toEqual([['b', 1]]);
  });

  it('no aliases out when the server allows none, or when not asked to', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect({ properties: { topicAliasMaximum: 10 } });
    peer.session.publish(msg('a', 0), peer.now);
    peer.session.publish(msg('a', 0), peer.now);
    expect(publishes(peer.packets()).map((p) => p.properties?.topicAlias)).toEqual([undefined, undefined]);
  });

  it('refuses what the server said it cannot take: QoS above maximum QoS, retain, over its packet size', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect({ properties: { maximumQoS: 1, retainAvailable: false, maximumPacketSize: 100 } });
    peer.session.publish(msg('a', 2), peer.now);
    peer.session.publish({ ...msg('a', 1), retain: true }, peer.now);
    peer.session.publish({ topic: 'a', payload: new Uint8Array(200), qos: 1, retain: false }, peer.now);
    const q0 = peer.session.publish(
      { topic: 'a', payload: new Uint8Array(200), qos: 0, retain: false },
      peer.now,
    );
    expect([q0.sent, q0.error?.code]).toEqual([false, 'PACKET_TOO_LARGE']);
    expect(peer.packets()).toEqual([]);
    const events = peer.events();
    expect(of(events, 'published').map((e) => e.error?.code)).toEqual([
      'QOS_NOT_SUPPORTED',
      'RETAIN_NOT_SUPPORTED',
      'PACKET_TOO_LARGE',
      'PACKET_TOO_LARGE',
    ]);
    expect(peer.session.outbox!.stats().count).toBe(0);
    expect(peer.session.inflightCount).toBe(0);
  });
});

describe('reconnect and resend', () => {
  function withState(sessionPresent: boolean) {
    const peer = new Peer({ clientId: 'c', clean: false });
    peer.connect();
    const ids = [msg('m/0', 1), msg('m/1', 2), msg('m/2', 2), msg('m/3', 1)].map(
      (m) => peer.session.publish(m, peer.now).packetId!,
    );
    peer.packets();
    peer.send({ type: 'pubrec', packetId: ids[1] }); // m/1 now awaits PUBCOMP
    peer.send({ type: 'puback', packetId: ids[3] }); // m/3 done
    expect(peer.packets()).toEqual([{ type: 'pubrel', packetId: ids[1] }]);
    peer.events();
    peer.drop();
    // queued while offline
    peer.session.publish(msg('m/4', 1), peer.now);
    peer.session.publish(msg('m/5', 0), peer.now);
    peer.connect({ sessionPresent });
    return { peer, ids };
  }

  it('session present: PUBLISH with DUP and PUBREL in the original order, then the queued ones', () => {
    const { peer, ids } = withState(true);
    const out = peer.packets();
    expect(out.map((p) => [p.type, (p as { packetId?: number }).packetId, (p as PublishPacket).dup])).toEqual(
      [
        ['publish', ids[0], true],
        ['pubrel', ids[1], undefined],
        ['publish', ids[2], true],
        ['publish', expect.any(Number), false],
        ['publish', undefined, false],
      ],
    );
    expect(publishes(out).map((p) => p.topic)).toEqual(['m/0', 'm/2', 'm/4', 'm/5']);
    // the new id does not collide with those still in flight
    expect([ids[0], ids[1], ids[2]]).not.toContain((out[3] as PublishPacket).packetId);
    peer.send({ type: 'pubcomp', packetId: ids[1] });
    expect(of(peer.events(), 'published').map((e) => e.packetId)).toContain(ids[1]);
  });

  it('session lost: unacknowledged PUBLISHes go again; a PUBREC-ed QoS 2 counts as delivered', () => {
    const { peer, ids } = withState(false);
    const out = peer.packets();
    expect(out.map((p) => p.type)).toEqual(['publish', 'publish', 'publish', 'publish']);
    expect(publishes(out).map((p) => p.topic)).toEqual(['m/0', 'm/2', 'm/4', 'm/5']);
    const done = of(peer.events(), 'published');
    expect(done.find((e) => e.packetId === ids[1])).toMatchObject({ reasonCode: 0, error: undefined });
  });

  it('replay of a large queue keeps receiveMaximum in flight, not one per ack', () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'r', clean: false });
    for (let i = 0; i < 10_000; i++) peer.session.publish(msg(`r/${i}`, 1), peer.now);
    peer.connect({ properties: { receiveMaximum: 100 } });
    let sent = publishes(peer.packets());
    expect(sent).toHaveLength(100);
    let acked = 0;
    const seen: string[] = sent.map((p) => p.topic);
    while (sent.length > 0) {
      for (const p of sent) peer.send({ type: 'puback', packetId: p.packetId! });
      acked += sent.length;
      sent = publishes(peer.packets());
      expect(sent.length).toBeLessThanOrEqual(100);
      seen.push(...sent.map((p) => p.topic));
    }
    expect(acked).toBe(10_000);
    expect(seen.slice(0, 3)).toEqual(['r/0', 'r/1', 'r/2']);
    expect(seen[9_999]).toBe('r/9999');
    expect(peer.session.outbox!.stats().count).toBe(0);
  });

  it('subscribe and unsubscribe while offline are sent on connect; lost subscriptions are restored', () => {
    const peer = new Peer({ clientId: 's' });
    const sid = peer.session.subscribe([{ topicFilter: 'a/#', qos: 1 }], undefined, peer.now);
    peer.connect();
    const [sub] = peer.packets();
    expect(sub).toMatchObject({
      type: 'subscribe',
      packetId: sid,
      subscriptions: [{ topicFilter: 'a/#', qos: 1 }],
    });
    peer.send({ type: 'suback', packetId: sid, reasonCodes: [1] });
    expect(of(peer.events(), 'suback')[0]).toMatchObject({
      packetId: sid,
      reasonCodes: [1],
      internal: false,
    });
    peer.drop();
    peer.connect({ sessionPresent: false });
    const [again] = peer.packets();
    expect(again).toMatchObject({ type: 'subscribe', subscriptions: [{ topicFilter: 'a/#', qos: 1 }] });
    peer.send({ type: 'suback', packetId: (again as { packetId: number }).packetId, reasonCodes: [1] });
    expect(of(peer.events(), 'suback')[0].internal).toBe(true);
    const uid = peer.session.unsubscribe(['a/#'], undefined, peer.now);
    expect(peer.packets()).toMatchObject([{ type: 'unsubscribe', packetId: uid, topicFilters: ['a/#'] }]);
    peer.send({ type: 'unsuback', packetId: uid });
    expect(of(peer.events(), 'unsuback')[0]).toMatchObject({ packetId: uid, reasonCodes: undefined });
  });

  it('graceful disconnect writes DISCONNECT with the 5.0 reason code and closes', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    peer.events();
    peer.session.disconnect(peer.now, 0x04);
    expect(peer.packets()).toEqual([{ type: 'disconnect', reasonCode: 0x04 }]);
    expect(of(peer.events(), 'closed')[0]).toMatchObject({ by: 'client', reasonCode: 4 });
  });
});

describe('incoming publish', () => {
  it('QoS 0/1/2: delivered once; QoS 2 id held until PUBREL, duplicates re-acked, not redelivered', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    peer.events();
    const base = { type: 'publish', retain: false, dup: false } as const;
    peer.send({ ...base, topic: 'a', payload: bytes('0'), qos: 0 });
    peer.send({ ...base, topic: 'a', payload: bytes('1'), qos: 1, packetId: 7 });
    peer.send({ ...base, topic: 'a', payload: bytes('2'), qos: 2, packetId: 7 });
    expect(peer.packets()).toMatchObject([
      { type: 'puback', packetId: 7 },
      { type: 'pubrec', packetId: 7 },
    ]);
    peer.send({ ...base, topic: 'a', payload: bytes('2'), qos: 2, packetId: 7, dup: true });
    expect(peer.packets()).toMatchObject([{ type: 'pubrec', packetId: 7 }]);
    peer.send({ type: 'pubrel', packetId: 7 });
    expect(peer.packets()).toMatchObject([{ type: 'pubcomp', packetId: 7 }]);
    // After PUBREL the id is free: the same id is a new message.
    peer.send({ ...base, topic: 'a', payload: bytes('3'), qos: 2, packetId: 7 });
    const got = of(peer.events(), 'message').map((e) => new TextDecoder().decode(e.packet.payload));
    expect(got).toEqual(['0', '1', '2', '3']);
  });

  it('PUBREL for an unknown id: PUBCOMP (5.0 with 0x92), not an error', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    peer.events();
    peer.send({ type: 'pubrel', packetId: 99 });
    expect(peer.packets()).toEqual([{ type: 'pubcomp', packetId: 99, reasonCode: 0x92 }]);
    expect(peer.events()).toEqual([]);
  });

  it('incoming QoS 2 ids survive a reconnect with the session, and are dropped without it', () => {
    const peer = new Peer({ clientId: 'c', clean: false });
    peer.connect();
    const p2 = {
      type: 'publish',
      topic: 'a',
      payload: bytes('x'),
      qos: 2,
      retain: false,
      dup: false,
    } as const;
    peer.send({ ...p2, packetId: 5 });
    peer.drop();
    peer.connect({ sessionPresent: true });
    peer.send({ ...p2, packetId: 5, dup: true });
    expect(of(peer.events(), 'message')).toHaveLength(1);
    peer.drop();
    peer.connect({ sessionPresent: false });
    peer.send({ ...p2, packetId: 5 });
    expect(of(peer.events(), 'message')).toHaveLength(1);
  });

  it('topic aliases in: set, then used with an empty topic', () => {
    const peer = new Peer({ protocolVersion: 5, topicAliasMaximum: 4 });
    peer.connect();
    const base = { type: 'publish', payload: bytes('x'), qos: 0, retain: false, dup: false } as const;
    peer.send({ ...base, topic: 'long/topic/name', properties: { topicAlias: 3 } });
    peer.send({ ...base, topic: '', properties: { topicAlias: 3 } });
    peer.send({ ...base, topic: 'other', properties: { topicAlias: 3 } });
    peer.send({ ...base, topic: '', properties: { topicAlias: 3 } });
    expect(of(peer.events(), 'message').map((e) => e.packet.topic)).toEqual([
      'long/topic/name',
      'long/topic/name',
      'other',
      'other',
    ]);
  });
});

describe('bad input from the server', () => {
  function connected(version: 4 | 5 = 5, extra = {}) {
    const peer = new Peer({ protocolVersion: version, clientId: 'c', clean: false, ...extra });
    peer.connect();
    peer.events();
    peer.packets();
    return peer;
  }
  function expectFailure(peer: Peer, code: string, reasonCode: number) {
    const events = peer.events();
    const err = of(events, 'error')[0]?.error as MqttError;
    expect(err).toBeInstanceOf(MqttError);
    expect({ code: err.code, reasonCode: err.reasonCode }).toEqual({ code, reasonCode });
    expect(of(events, 'closed')[0]).toMatchObject({ by: 'error', reasonCode });
    expect(peer.session.state).toBe('closing');
    if (peer.version === 5 && reasonCode >= 0x80)
      expect(peer.packets().at(-1)).toEqual({ type: 'disconnect', reasonCode });
    // Nothing more is read from a closing connection.
    peer.send({ type: 'pingresp' });
    expect(peer.events()).toEqual([]);
  }

  it.each([
    ['reserved packet type 0', [0x00, 0x00]],
    ['PUBREL with flags 0', [0x60, 0x02, 0x00, 0x01]],
    ['remaining length over 4 bytes', [0x30, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ['PUBLISH QoS 3', [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]],
    ['truncated property', [0x40, 0x04, 0x00, 0x01, 0x00, 0x05]],
  ])('malformed (%s) closes with a codec error and 5.0 DISCONNECT', (_name, raw) => {
    const peer = connected(5);
    peer.sendRaw(raw);
    const events = peer.events();
    const err = of(events, 'error')[0].error as MqttError;
    expect(err).toBeInstanceOf(MqttError);
    expect(err.reasonCode).toBeGreaterThanOrEqual(0x80);
    expect(peer.packets().at(-1)).toEqual({ type: 'disconnect', reasonCode: err.reasonCode });
    expect(of(events, 'closed')).toHaveLength(1);
  });

  it('an oversized packet is refused with 0x95 before it is buffered', () => {
    const peer = connected(5, { maximumPacketSize: 1024 });
    // A PUBLISH header claiming 100 kB: refused on the header alone.
    peer.sendRaw([0x30, 0xa0, 0x8d, 0x06]);
    expectFailure(peer, 'PACKET_TOO_LARGE', 0x95);
  });

  it('PUBACK / PUBCOMP / SUBACK / UNSUBACK for an id not in flight: protocol error', () => {
    for (const p of [
      { type: 'puback', packetId: 9 },
      { type: 'pubcomp', packetId: 9 },
      { type: 'pubrec', packetId: 9 },
      { type: 'suback', packetId: 9, reasonCodes: [0] },
      { type: 'unsuback', packetId: 9, reasonCodes: [0] },
    ] as Packet[]) {
      const peer = connected(5);
      peer.send(p);
      expectFailure(peer, 'UNEXPECTED_PACKET_ID', 0x82);
    }
  });

  it('PUBACK for a QoS 2 publish, PUBCOMP before PUBREC: protocol error', () => {
    const peer = connected(5);
    const t = peer.session.publish(msg('a', 2), peer.now);
    peer.send({ type: 'puback', packetId: t.packetId! });
    expectFailure(peer, 'UNEXPECTED_PACKET_ID', 0x82);
    const peer2 = connected(5);
    const t2 = peer2.session.publish(msg('a', 2), peer2.now);
    peer2.send({ type: 'pubcomp', packetId: t2.packetId! });
    expectFailure(peer2, 'UNEXPECTED_PACKET_ID', 0x82);
  });

  it('packets not allowed in that state: a second CONNACK, PINGREQ, SUBSCRIBE, a 3.1.1 DISCONNECT', () => {
    let peer = connected(5);
    peer.send({ type: 'connack', sessionPresent: false, reasonCode: 0 });
    expectFailure(peer, 'UNEXPECTED_CONNACK', 0x82);
    for (const p of [
      { type: 'pingreq' },
      { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 0 }] },
    ] as Packet[]) {
      peer = connected(5);
      let thrown: unknown;
      try {
        peer.send(p);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeUndefined();
      const err = of(peer.events(), 'error')[0].error as MqttError;
      expect(err.reasonCode).toBeGreaterThanOrEqual(0x80);
      expect(peer.session.state).toBe('closing');
    }
    peer = connected(4);
    peer.sendRaw([0xe0, 0x00]);
    expect(of(peer.events(), 'error')).toHaveLength(1);
    expect(peer.session.state).toBe('closing');
  });

  it('a packet before CONNACK is a protocol error', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.session.open(peer.now);
    peer.packets();
    peer.send({ type: 'puback', packetId: 1 });
    const err = of(peer.events(), 'error')[0].error as MqttError;
    expect(err.code).toBe('PACKET_BEFORE_CONNACK');
    // No DISCONNECT before CONNACK.
    expect(peer.packets()).toEqual([]);
  });

  it('session present after a clean start is a protocol error', () => {
    const peer = new Peer({ protocolVersion: 4, clientId: 'x' });
    peer.session.open(peer.now);
    peer.send({ type: 'connack', sessionPresent: true, reasonCode: 0 });
    expect((of(peer.events(), 'error')[0].error as MqttError).code).toBe('SESSION_PRESENT_ON_CLEAN');
  });

  it('topic alias 0, above our maximum, or never set: 0x94 / 0x82', () => {
    const base = { type: 'publish', payload: bytes('x'), qos: 0, retain: false, dup: false } as const;
    let peer = connected(5, { topicAliasMaximum: 2 });
    peer.send({ ...base, topic: 'a', properties: { topicAlias: 3 } });
    expectFailure(peer, 'TOPIC_ALIAS_INVALID', 0x94);
    peer = connected(5, { topicAliasMaximum: 2 });
    peer.send({ ...base, topic: '', properties: { topicAlias: 1 } });
    expectFailure(peer, 'TOPIC_ALIAS_UNKNOWN', 0x82);
    peer = connected(5, { topicAliasMaximum: 0 });
    peer.send({ ...base, topic: 'a', properties: { topicAlias: 1 } });
    expectFailure(peer, 'TOPIC_ALIAS_INVALID', 0x94);
  });

  it('more incoming QoS 2 than our receiveMaximum: 0x93', () => {
    const peer = connected(5, { receiveMaximum: 2 });
    const p2 = {
      type: 'publish',
      topic: 'a',
      payload: bytes('x'),
      qos: 2,
      retain: false,
      dup: false,
    } as const;
    peer.send({ ...p2, packetId: 1 }, { ...p2, packetId: 2 });
    expect(of(peer.events(), 'message')).toHaveLength(2);
    peer.send({ ...p2, packetId: 3 });
    expectFailure(peer, 'RECEIVE_MAXIMUM_EXCEEDED', 0x93);
  });

  it('SUBACK with the wrong number of codes: protocol error', () => {
    const peer = connected(5);
    const id = peer.session.subscribe(
      [
        { topicFilter: 'a', qos: 0 },
        { topicFilter: 'b', qos: 0 },
      ],
      undefined,
      peer.now,
    );
    peer.send({ type: 'suback', packetId: id, reasonCodes: [0] });
    expectFailure(peer, 'SUBACK_COUNT', 0x82);
  });

  it('after bad input the session state is intact: the next connection resends what was in flight', () => {
    const peer = connected(5);
    const a = peer.session.publish(msg('keep/1', 1), peer.now);
    const b = peer.session.publish(msg('keep/2', 2), peer.now);
    peer.send({ type: 'pubrec', packetId: b.packetId! });
    peer.packets();
    peer.sendRaw([0xf0, 0x00, 0xff, 0xff]); // AUTH + garbage
    expect(peer.session.state).toBe('closing');
    peer.drop();
    peer.connect({ sessionPresent: true });
    expect(peer.packets().map((p) => [p.type, (p as { packetId?: number }).packetId])).toEqual([
      ['publish', a.packetId],
      ['pubrel', b.packetId],
    ]);
    expect(peer.session.outbox!.stats().count).toBe(2);
  });

  it('random bytes after CONNACK never throw out of receive(), and end in at most one close', () => {
    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    for (let round = 0; round < 300; round++) {
      const peer = connected(round % 2 === 0 ? 5 : 4, { maximumPacketSize: 4096 });
      peer.session.publish(msg('a', 1), peer.now);
      const n = 1 + Math.floor(rnd() * 64);
      const junk = new Uint8Array(n);
      for (let i = 0; i < n; i++) junk[i] = Math.floor(rnd() * 256);
      for (let i = 0; i < n; i += 7) peer.sendRaw(junk.subarray(i, i + 7));
      const events = peer.events();
      expect(of(events, 'closed').length).toBeLessThanOrEqual(1);
      if (of(events, 'error').length > 0) expect(peer.session.state).toBe('closing');
      expect(peer.session.outbox!.stats().count).toBeLessThanOrEqual(1);
    }
  });
});

describe('requests the codec refuses', () => {
  it('a bad SUBSCRIBE throws at once and leaves no packet id or pending request behind', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    peer.events();
    expect(() => peer.session.subscribe([{ topicFilter: 'a/#/b', qos: 1 }], undefined, peer.now)).toThrow(
      MqttError,
    );
    expect(() => peer.session.subscribe([{ topicFilter: 'a', qos: 3 as 1 }], undefined, peer.now)).toThrow();
    expect(peer.packets()).toEqual([]);
    // nothing is resent on the next connection
    peer.drop();
    peer.connect();
    expect(peer.packets()).toEqual([]);
    expect(peer.session.state).toBe('connected');
  });

  it('a message the codec cannot encode fails alone; the connection and the queue go on', () => {
    const peer = new Peer({ protocolVersion: 5 });
    peer.connect();
    peer.events();
    const bad = peer.session.publish(
      { topic: 'a/+', payload: bytes('x'), qos: 1, retain: false }, // wildcard in a topic name
      peer.now,
    );
    const good = peer.session.publish(msg('a/b', 1), peer.now);
    expect(bad.sent).toBe(false);
    expect(publishes(peer.packets()).map((p) => p.topic)).toEqual(['a/b']);
    const done = of(peer.events(), 'published');
    expect(done).toHaveLength(1);
    expect(done[0].seq).toBe(bad.seq);
    expect(done[0].error?.reasonCode).toBeGreaterThanOrEqual(0x80);
    expect(peer.session.state).toBe('connected');
    expect(peer.session.outbox!.stats().count).toBe(1); // only the good one, in flight
    expect(good.sent).toBe(true);
  });
});

describe('async outbox', () => {
  it("a store of the shell's (outbox: null): put(), outboxChanged(), fed in; acks come back as events", async () => {
    const store = new MemoryOutbox(); // used only through the asynchronous Outbox interface
    const peer = new Peer({ outbox: null });
    peer.connect();
    expect(() => peer.session.publish(msg('a', 1), peer.now)).toThrow(/outboxChanged/);
    const seq = await store.put(msg('a', 1));
    peer.session.outboxChanged(peer.now);
    const s = peer.session;
    for (let n = s.outboxWant; n > 0; n = s.outboxWant) s.feedOutbox(store.read(s.outboxCursor, n), peer.now);
    const [p] = publishes(peer.packets());
    expect(peer.session.packetIdOf(seq)).toBe(p.packetId);
    peer.send({ type: 'puback', packetId: p.packetId! });
    const done = of(peer.events(), 'published')[0] as PublishedEvent;
    expect(done.seq).toBe(seq);
    expect(store.stats().count).toBe(1); // the session acks nothing it does not own
    store.ack(done.seq!);
    expect(store.stats().count).toBe(0);
  });
});
