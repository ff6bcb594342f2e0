/**
 * manualAcks (issue 12 (bridge) point 2: a bridge acknowledges upstream only what its local
 * broker took): incoming QoS 1/2 are acknowledged when the application says so, in the order
 * they were received, across reconnects as MQTT's redelivery rules allow.
 */
import type { Packet, PublishPacket } from '@mqtt-edge/codec';
import { describe, expect, it } from 'vitest';
import type { SessionEvent } from '../src/core/events.ts';
import { bytes, Peer } from './helpers/peer.ts';

const pub = (packetId: number, qos: 1 | 2, topic = `t/${packetId}`, dup = false): PublishPacket => ({
  type: 'publish',
  topic,
  payload: bytes('x'),
  qos,
  retain: false,
  dup,
  packetId,
});
const received = (events: SessionEvent[]): PublishPacket[] =>
  events.flatMap((e) => (e.type === 'message' ? [e.packet] : []));
const acks = (packets: Packet[]) => packets.map((p) => `${p.type}:${'packetId' in p ? p.packetId : ''}`);

describe('issue 12 (bridge): manualAcks', () => {
  it('issue 12 (bridge): nothing is acknowledged before ack(); acks leave in the order received, one held back holds back those behind it', () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'm', manualAcks: true });
    peer.connect();
    peer.events();
    peer.send(pub(1, 1), pub(2, 2), pub(3, 1));
    const [a, b, c] = received(peer.events());
    expect(peer.packets()).toEqual([]);
    expect(peer.session.acksPending).toBe(3);
    peer.session.ack(c, peer.now);
    peer.session.ack(b, peer.now);
    expect(peer.packets()).toEqual([]); // a is not acknowledged yet
    peer.session.ack(a, peer.now);
    expect(acks(peer.packets())).toEqual(['puback:1', 'pubrec:2', 'puback:3']);
    expect(peer.session.acksPending).toBe(0);
    // A second ack of the same packet, and QoS 0, send nothing.
    peer.session.ack(a, peer.now);
    expect(peer.packets()).toEqual([]);
    // QoS 2 continues as usual: PUBREL is answered at once.
    peer.send({ type: 'pubrel', packetId: 2 });
    expect(acks(peer.packets())).toEqual(['pubcomp:2']);
  });

  it('issue 12 (bridge): across a reconnect: QoS 1 comes again as a new message; QoS 2 under its id is answered by the original ack, at once if it was acknowledged meanwhile', () => {
    const peer = new Peer({ protocolVersion: 4, clientId: 'm', clean: false, manualAcks: true });
    peer.connect();
    peer.events();
    peer.send(pub(1, 1), pub(2, 2), pub(3, 2));
    const [a, b, c] = received(peer.events());
    peer.drop();
    // Acked while away: nothing to write, no connection owes it.
    peer.session.ack(a, peer.now);
    peer.session.ack(c, peer.now);
    peer.connect({ sessionPresent: true });
    peer.events();
    expect(peer.packets()).toEqual([]);
    // The server sends all three again (DUP).
    peer.send(pub(1, 1, 't/1', true), pub(2, 2, 't/2', true), pub(3, 2, 't/3', true));
    const again = received(peer.events());
    expect(again.map((p) => p.topic)).toEqual(['t/1']); // QoS 2 is not delivered twice
    // The QoS 1 must be acknowledged again (it is a new delivery); b holds back c's PUBREC.
    peer.session.ack(again[0], peer.now);
    expect(acks(peer.packets())).toEqual(['puback:1']);
    peer.session.ack(b, peer.now);
    expect(acks(peer.packets())).toEqual(['pubrec:2', 'pubrec:3']);
  });

  it('issue 12 (bridge): without the session (clean or lost) nothing old is owed', () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'm', manualAcks: true });
    peer.connect();
    peer.events();
    peer.send(pub(7, 2));
    const [p] = received(peer.events());
    peer.drop();
    peer.connect({ sessionPresent: false });
    peer.events();
    // The same id is now a new message.
    peer.send(pub(7, 2, 't/new'));
    const [q] = received(peer.events());
    expect(q.topic).toBe('t/new');
    peer.session.ack(p, peer.now);
    expect(peer.packets()).toEqual([]);
    peer.session.ack(q, peer.now);
    expect(acks(peer.packets())).toEqual(['pubrec:7']);
  });

  it('issue 12 (bridge): 5.0: more unacknowledged QoS 1 than our receiveMaximum is 0x93 (3.1.1 has none)', () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'm', manualAcks: true, receiveMaximum: 2 });
    peer.connect();
    peer.events();
    peer.send(pub(1, 1), pub(2, 1), pub(3, 1));
    const closed = peer.events().find((e) => e.type === 'closed');
    expect(closed).toMatchObject({ reasonCode: 0x93 });
    // 3.1.1 has no receive maximum: the server's window is the bound there.
    const v4 = new Peer({ protocolVersion: 4, clientId: 'm', manualAcks: true, receiveMaximum: 2 });
    v4.connect();
    v4.events();
    v4.send(pub(1, 1), pub(2, 1), pub(3, 1));
    expect(received(v4.events()).length).toBe(3);
    expect(v4.session.state).toBe('connected');
  });

  it('default (no manualAcks): acknowledged on receipt, ack() is a no-op', () => {
    const peer = new Peer({ protocolVersion: 5, clientId: 'm' });
    peer.connect();
    peer.events();
    peer.send(pub(1, 1), pub(2, 2));
    const [a] = received(peer.events());
    expect(acks(peer.packets())).toEqual(['puback:1', 'pubrec:2']);
    peer.session.ack(a, peer.now);
    expect(peer.packets()).toEqual([]);
  });
});
