/**
 * Issue 17.4: the core never reads or acks a store it does not own. With `outbox: null` the store
 * is the shell's (the Node client's DurableQueue): the session says how many entries it wants and
 * after which seq (outboxWant, outboxCursor), the shell hands them in (feedOutbox), and every
 * entry that leaves the session is a `published` event with its seq, which the shell acks in its
 * store. Here the shell is a plain array in the test: no I/O anywhere.
 */
import type { Packet, PublishPacket } from '@mqtt-edge/codec';
import { describe, expect, it } from 'vitest';
import type { PublishedEvent, SessionEvent } from '../src/core/events.ts';
import { MemoryOutbox } from '../src/core/memory-outbox.ts';
import type { SessionOptions } from '../src/core/options.ts';
import type { OutboxEntry, OutboxMessage } from '../src/core/outbox.ts';
import { ClientSession } from '../src/core/session.ts';
import { bytes, Peer } from './helpers/peer.ts';

const publishes = (packets: Packet[]) => packets.filter((p): p is PublishPacket => p.type === 'publish');
const published = (events: SessionEvent[]) =>
  events.filter((e): e is PublishedEvent => e.type === 'published');
const text = (p: PublishPacket) => new TextDecoder().decode(p.payload);

/** The store of a shell: entries in seq order, removed by ack. Counts what the session asked. */
class FakeStore {
  readonly entries: OutboxEntry[] = [];
  reads = 0;
  private next = 1;
  put(payload: string, qos: 0 | 1 | 2 = 1): number {
    const message: OutboxMessage = { topic: 't', payload: bytes(payload), qos, retain: false };
    const seq = this.next++;
    this.entries.push({ seq, message });
    return seq;
  }
  read(after: number, max: number): OutboxEntry[] {
    this.reads++;
    return this.entries.filter((e) => e.seq > after).slice(0, max);
  }
  ack(seq: number): void {
    const i = this.entries.findIndex((e) => e.seq === seq);
    if (i >= 0) this.entries.splice(i, 1);
  }
}

/** A scripted server plus the shell's half: feed what the session wants, apply its acks. */
class Shell {
  readonly peer: Peer;
  readonly store = new FakeStore();
  readonly settled: PublishedEvent[] = [];
  constructor(options: SessionOptions = {}) {
    this.peer = new Peer({ ...options, outbox: null });
  }
  get session(): ClientSession {
    return this.peer.session;
  }
  /** What the Node client does after every input: feed while wanted, then apply the acks. */
  serve(): void {
    const s = this.session;
    for (let n = s.outboxWant; n > 0; n = s.outboxWant)
      s.feedOutbox(this.store.read(s.outboxCursor, n), this.peer.now);
    for (const e of published(this.peer.events())) {
      this.settled.push(e);
      if (e.seq !== undefined) this.store.ack(e.seq);
    }
  }
  connect(sessionPresent = false): void {
    this.peer.connect({ sessionPresent });
    this.serve();
  }
  send(...packets: Packet[]): void {
    this.peer.send(...packets);
    this.serve();
  }
}

describe('issue 17.4: the session fed by its shell (outbox: null)', () => {
  it('holds no store, asks for entries after CONNACK and sends what it is fed, in seq order', () => {
    const sh = new Shell({ maxInflight: 100 });
    expect(sh.session.outbox).toBeNull();
    for (let i = 1; i <= 5; i++) sh.store.put(`m${i}`);
    expect(sh.session.outboxWant).toBe(0); // not connected: nothing wanted
    sh.peer.connect();
    expect(sh.session.outboxWant).toBe(100);
    expect(sh.session.outboxCursor).toBe(0);
    sh.serve();
    expect(publishes(sh.peer.packets()).map(text)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(sh.session.outboxCursor).toBe(5);
    // A short read said the store has no more: the session stops asking.
    expect(sh.session.outboxWant).toBe(0);
    expect(sh.store.reads).toBe(1);
  });

  it('keeps to the send window: entries past it are not taken and are asked for again', () => {
    const sh = new Shell({ maxInflight: 3 });
    for (let i = 1; i <= 5; i++) sh.store.put(`m${i}`);
    sh.peer.connect();
    expect(sh.session.outboxWant).toBe(3);
    // A shell that hands in more than asked: the session takes only what fits.
    sh.session.feedOutbox(sh.store.entries.slice(), sh.peer.now);
    const first = publishes(sh.peer.packets());
    expect(first.map(text)).toEqual(['m1', 'm2', 'm3']);
    expect(sh.session.outboxCursor).toBe(3);
    expect(sh.session.outboxWant).toBe(0); // window full
    sh.send({ type: 'puback', packetId: first[0].packetId! });
    expect(publishes(sh.peer.packets()).map(text)).toEqual(['m4']);
    expect(sh.settled.map((e) => e.seq)).toEqual([1]);
    expect(sh.store.entries.map((e) => e.seq)).toEqual([2, 3, 4, 5]);
  });

  it('acknowledgements leave as published events with the seq; the shell removes them from its store', () => {
    const sh = new Shell();
    sh.store.put('a');
    sh.store.put('b', 2);
    sh.connect();
    const [a, b] = publishes(sh.peer.packets());
    sh.send({ type: 'puback', packetId: a.packetId! });
    expect(sh.store.entries.map((e) => e.seq)).toEqual([2]);
    sh.send({ type: 'pubrec', packetId: b.packetId! });
    expect(sh.store.entries.map((e) => e.seq)).toEqual([2]); // QoS 2 flow not done yet
    sh.send({ type: 'pubcomp', packetId: b.packetId! });
    expect(sh.store.entries).toEqual([]);
    expect(sh.settled.map((e) => [e.seq, e.packetId, e.error])).toEqual([
      [1, a.packetId, undefined],
      [2, b.packetId, undefined],
    ]);
  });

  it('asks again after outboxChanged() and after an acknowledgement, not before', () => {
    const sh = new Shell();
    sh.connect();
    expect(sh.store.reads).toBe(1); // the CONNACK's read found nothing
    expect(sh.session.outboxWant).toBe(0);
    sh.store.put('late');
    sh.serve();
    expect(sh.store.reads).toBe(1); // the session was not told
    sh.session.outboxChanged(sh.peer.now);
    sh.serve();
    const [p] = publishes(sh.peer.packets());
    expect(text(p)).toBe('late');
    sh.store.put('after');
    sh.send({ type: 'puback', packetId: p.packetId! }); // a completion makes it read again
    expect(publishes(sh.peer.packets()).map(text)).toEqual(['after']);
  });

  it('a reconnect resends what is in flight from memory (DUP), then goes on after the cursor', () => {
    const sh = new Shell({ protocolVersion: 5, clientId: 'c', clean: false, maxInflight: 2 });
    for (let i = 1; i <= 4; i++) sh.store.put(`m${i}`);
    sh.connect();
    const first = publishes(sh.peer.packets());
    expect(first.map((p) => [text(p), p.dup])).toEqual([
      ['m1', false],
      ['m2', false],
    ]);
    sh.peer.drop();
    sh.serve();
    const reads = sh.store.reads;
    sh.connect(true);
    const again = publishes(sh.peer.packets());
    // The resend comes from the session's memory: no read for it, same ids, DUP set.
    expect(again.map((p) => [text(p), p.dup, p.packetId])).toEqual([
      ['m1', true, first[0].packetId],
      ['m2', true, first[1].packetId],
    ]);
    expect(sh.store.reads).toBe(reads);
    sh.send(
      { type: 'puback', packetId: first[0].packetId! },
      { type: 'puback', packetId: first[1].packetId! },
    );
    expect(publishes(sh.peer.packets()).map((p) => [text(p), p.dup])).toEqual([
      ['m3', false],
      ['m4', false],
    ]);
  });

  it('QoS 0 entries (queued while offline) are written and settled without taking the window', () => {
    const sh = new Shell({ maxInflight: 1 });
    sh.store.put('q1');
    sh.store.put('z0', 0);
    sh.store.put('z1', 0);
    sh.connect();
    // q1 fills the window; the QoS 0 entries behind it wait: the order of the store is kept.
    expect(publishes(sh.peer.packets()).map((p) => [text(p), p.qos])).toEqual([['q1', 1]]);
    sh.send({ type: 'puback', packetId: 1 });
    expect(publishes(sh.peer.packets()).map((p) => [text(p), p.qos])).toEqual([
      ['z0', 0],
      ['z1', 0],
    ]);
    expect(sh.settled.map((e) => [e.seq, e.qos])).toEqual([
      [1, 1],
      [2, 0],
      [3, 0],
    ]);
    expect(sh.store.entries).toEqual([]);
  });

  it('an entry the server cannot take is settled with an error (the shell acks it) and the rest go on', () => {
    const sh = new Shell({ protocolVersion: 5 });
    sh.store.put('two', 2);
    sh.store.put('one', 1);
    sh.peer.connect({ properties: { maximumQoS: 1 } });
    sh.serve();
    expect(publishes(sh.peer.packets()).map(text)).toEqual(['one']);
    expect(sh.settled.map((e) => [e.seq, e.error?.reasonCode])).toEqual([[1, 0x9b]]);
    expect(sh.store.entries.map((e) => e.seq)).toEqual([2]);
  });

  it('entries at or before the cursor are not sent twice; nothing is taken while not connected', () => {
    const sh = new Shell();
    sh.store.put('a');
    sh.store.put('b');
    sh.session.feedOutbox(sh.store.entries.slice(), sh.peer.now); // idle: ignored
    expect(sh.session.outboxCursor).toBe(0);
    sh.connect();
    expect(publishes(sh.peer.packets()).map(text)).toEqual(['a', 'b']);
    sh.session.outboxChanged(sh.peer.now);
    sh.session.feedOutbox(sh.store.entries.slice(), sh.peer.now); // a stale re-read
    expect(publishes(sh.peer.packets())).toEqual([]);
    expect(sh.session.outboxWant).toBe(0); // no progress: it stops asking rather than loop
  });

  it('publish() of a QoS 1/2 message needs the store, which is the shell’s: a TypeError says so', () => {
    const sh = new Shell();
    sh.connect();
    expect(() =>
      sh.session.publish({ topic: 't', payload: bytes('x'), qos: 1, retain: false }, sh.peer.now),
    ).toThrow(/outboxChanged/);
    // QoS 0 while connected never touches a store
    expect(
      sh.session.publish({ topic: 't', payload: bytes('x'), qos: 0, retain: false }, sh.peer.now).sent,
    ).toBe(true);
  });

  it('the core refuses a store it would have to read itself (no putSync: a durable queue)', () => {
    const m = new MemoryOutbox();
    const asyncOnly = {
      put: (x: OutboxMessage) => m.put(x),
      read: (a: number, n: number) => m.read(a, n),
      ack: (s: number) => m.ack(s),
      stats: () => m.stats(),
      close: () => m.close(),
    };
    // A JavaScript caller (no types) handing the core an asynchronous store gets told what to do.
    expect(() => new ClientSession({ outbox: asyncOnly as unknown as MemoryOutbox })).toThrow(/outbox: null/);
  });

  it('the session’s own MemoryOutbox asks nothing of a shell (outboxWant stays 0)', () => {
    const peer = new Peer();
    peer.connect();
    const t = peer.session.publish({ topic: 't', payload: bytes('x'), qos: 1, retain: false }, peer.now);
    expect(t.sent).toBe(true);
    expect(peer.session.outboxWant).toBe(0);
  });
});
