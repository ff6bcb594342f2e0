/**
 * Issue 17.2: the bridge's local side is an internal client of the broker (internal-client.ts):
 * the router hands it the message object it routes, and what it publishes goes into the
 * broker by a function call. No bytes, no codec, no stream between them.
 */
import { Duplex } from 'node:stream';
import type { Properties, QoS } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LocalLink, type LocalLinkOwner } from '../src/bridge-local.ts';
import { type Message, makeMessage } from '../src/message.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

interface Got {
  msg: Message;
  qos: QoS;
  retain: boolean;
  properties: Properties | undefined;
  pid: number;
  gen: number;
}

/** Records what the link tells its bridge; settles deliveries on request. */
class Owner implements LocalLinkOwner {
  readonly got: Got[] = [];
  readonly done: Array<{ token: object; taken: boolean; why: string | undefined }> = [];
  ups = 0;
  localMessage(
    ...[msg, qos, retain, properties, pid, gen]: Parameters<LocalLinkOwner['localMessage']>
  ): void {
    this.got.push({ msg, qos, retain, properties, pid, gen });
  }
  localDone(token: object, taken: boolean, why: string | undefined): void {
    this.done.push({ token, taken, why });
  }
  localRefused(): void {}
  localUp(): void {
    this.ups++;
  }
  localDown(): void {}
}

function link(tb: TestBroker, clientId: string, filters: string[], owner: Owner): LocalLink {
  const l = new LocalLink(
    tb.broker,
    {
      clientId,
      persistent: false,
      subscriptions: filters.map((filter) => ({ filter, qos: 2 as QoS })),
      maxPacket: tb.broker.maxPacketIn,
      maxPayload: 0,
      retainAvailable: tb.broker.options.retainAvailable,
    },
    owner,
  );
  l.start();
  closers.push(() => l.close());
  return l;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('issue 17.2: the bridge local side goes through the internal-client API, without the codec', () => {
  it('issue 17.2: messages both ways are objects: nothing is encoded or parsed, no bytes counted, no stream', async () => {
    const tb = await startBroker();
    closers.push(() => tb.close());
    const b = tb.broker;
    const encode = vi.spyOn(b.writer, 'encode');
    const takeParser = vi.spyOn(b, 'takeParser');
    const out = new Owner();
    const inn = new Owner();
    const outLink = link(tb, 'bridge-out', ['o/#'], out);
    link(tb, 'bridge-in-sink', ['i/#'], inn);
    expect(out.ups).toBe(1);
    expect(inn.ups).toBe(1);

    // Broker -> bridge: the router's own message object reaches the bridge, at each QoS.
    const sent: Message[] = [];
    for (const qos of [0, 1, 2] as const) {
      const m = makeMessage(`o/${qos}`, Buffer.from(`m${qos}`), qos, false, undefined, Date.now());
      sent.push(m);
      b.publish(m);
    }
    expect(out.got.map((g) => g.msg)).toEqual(sent);
    for (let i = 0; i < 3; i++) expect(out.got[i].msg).toBe(sent[i]);
    expect(out.got.map((g) => g.qos)).toEqual([0, 1, 2]);
    // QoS 1/2 hold the session's window until the bridge settles them; QoS 2 needs no PUBREL.
    const session = b.sessions.get('bridge-out');
    expect(session?.inflightCount).toBe(2);
    for (const g of out.got) outLink.ackIn(g.gen, g.pid);
    await until(() => session?.inflightCount === 0, 'the deliveries settled');

    // Bridge -> broker: a function call through the publish checks and the router.
    const tokens = [{}, {}];
    outLink.publish('i/1', Buffer.from('a'), 1, false, { userProperties: [['k', 'v']] }, tokens[0]);
    outLink.publish('i/2', Buffer.from('b'), 2, true, undefined, tokens[1]);
    expect(out.done).toEqual([
      { token: tokens[0], taken: true, why: undefined },
      { token: tokens[1], taken: true, why: undefined },
    ]);
    expect(inn.got.map((g) => [g.msg.topic, g.qos, g.retain])).toEqual([
      ['i/1', 1, false],
      ['i/2', 2, true],
    ]);
    expect(inn.got[0].properties?.userProperties).toEqual([['k', 'v']]);
    expect(b.retain.get('i/2')?.payload).toEqual(Buffer.from('b'));

    // Nothing crossed as bytes: no encoder, no parser, no byte counted; the connection's
    // socket is no stream.
    expect(encode).not.toHaveBeenCalled();
    expect(takeParser).not.toHaveBeenCalled();
    expect([b.counters.bytesIn, b.counters.bytesOut]).toEqual([0, 0]);
    for (const c of b.connections) expect(c.socket).not.toBeInstanceOf(Duplex);
    expect(b.counters.msgsInQos).toEqual([0, 1, 1]);
  });

  it('issue 17.2: a TCP client and the bridge side by side: only the client costs encoding', async () => {
    const tb = await startBroker();
    closers.push(() => tb.close());
    const out = new Owner();
    const outLink = link(tb, 'bridge-out', ['o/#'], out);
    const { client } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'sub' });
    closers.push(() => client.close());
    client.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'i/#', qos: 1 }] });
    await client.expect('suback');
    const bytesOut = tb.broker.counters.bytesOut;
    const encode = vi.spyOn(tb.broker.writer, 'encode');
    const takeParser = vi.spyOn(tb.broker, 'takeParser');
    const token = {};
    outLink.publish('i/x', Buffer.from('hello'), 1, false, undefined, token);
    const p = await client.expect('publish');
    expect([p.topic, Buffer.from(p.payload).toString()]).toEqual(['i/x', 'hello']);
    // One encode: the subscriber's PUBLISH. The bridge's side took none, and nothing was parsed.
    expect(encode).toHaveBeenCalledTimes(1);
    expect(takeParser).not.toHaveBeenCalled();
    expect(tb.broker.counters.bytesOut).toBeGreaterThan(bytesOut);
    expect(out.done).toEqual([{ token, taken: true, why: undefined }]);
  });

  it('issue 17.2: a full local subscriber queue pauses the bridge as it would a client: what it brings in waits in its bounded queue, none dropped, all delivered once the subscriber reads', async () => {
    const tb = await startBroker({ maxInflightMessages: 1, maxQueuedMessages: 5 });
    closers.push(() => tb.close());
    const { client } = await RawClient.connect(tb.port, { protocolVersion: 5, clientId: 'slow' });
    closers.push(() => client.close());
    expect(await client.subscribe('i/#', 1)).toEqual([1]);
    const owner = new Owner();
    const l = link(tb, 'bridge-in', [], owner);
    const N = 30;
    for (let i = 0; i < N; i++)
      expect(l.publish(`i/${i}`, Buffer.from('x'), 1, false, undefined, {})).toBe(true);
    // One in flight to the subscriber, its queue past the bound by the message that found it
    // full: the bridge is paused there, the rest wait here.
    const s = tb.broker.sessions.get('slow');
    expect(tb.broker.counters.publisherPauses).toBe(1);
    expect(s?.inflightCount).toBe(1);
    expect(s?.queueLength).toBe(6);
    expect(l.queued).toBe(N - 7);
    expect(owner.done.length).toBe(7);
    // The subscriber reads and acknowledges: the bridge flows again, in order, nothing dropped.
    const topics: string[] = [];
    while (topics.length < N) {
      const p = await client.expect('publish');
      topics.push(p.topic);
      client.send({ type: 'puback', packetId: p.packetId as number });
    }
    expect(topics).toEqual(Array.from({ length: N }, (_, i) => `i/${i}`));
    expect(owner.done.every((d) => d.taken)).toBe(true);
    expect(owner.done.length).toBe(N);
    expect([l.dropped, tb.broker.counters.dropped]).toEqual([0, 0]);
  });

  it('issue 17.2: retain_available false: a retained message from the bridge is refused for good (the bridge drops and acknowledges it), the session stays up', async () => {
    const tb = await startBroker({ retainAvailable: false });
    closers.push(() => tb.close());
    const sink = new Owner();
    link(tb, 'sink', ['i/#'], sink);
    const owner = new Owner();
    const l = link(tb, 'bridge-in', [], owner);
    const token = {};
    l.publish('i/r', Buffer.from('kept?'), 1, true, undefined, token);
    l.publish('i/n', Buffer.from('plain'), 1, false, undefined, {});
    expect(owner.done[0]).toEqual({
      token,
      taken: false,
      why: 'retained, and retain_available is false here',
    });
    expect(owner.done[1].taken).toBe(true);
    expect(sink.got.map((g) => g.msg.topic)).toEqual(['i/n']);
    expect(tb.broker.retain.size).toBe(0);
    expect(l.up).toBe(true);
  });

  it('issue 17.2: an internal error while the broker handles a bridged message closes the local session as it would a client; the message goes again on the next one', async () => {
    const tb = await startBroker();
    closers.push(() => tb.close());
    const sink = new Owner();
    link(tb, 'sink', ['i/#'], sink);
    const owner = new Owner();
    const l = link(tb, 'bridge-in', [], owner);
    vi.spyOn(tb.broker.router, 'route').mockImplementationOnce(() => {
      throw new Error('boom');
    });
    const token = {};
    expect(l.publish('i/1', Buffer.from('x'), 1, false, undefined, token)).toBe(true);
    expect(l.up).toBe(false);
    expect(tb.logs.some((x) => x.message === 'internal error handling a packet')).toBe(true);
    // Held, then taken once the link is back (a second later).
    expect(l.queued).toBe(1);
    await until(() => owner.done.length === 1, 'the message taken on the next connection');
    expect(owner.done).toEqual([{ token, taken: true, why: undefined }]);
    expect(sink.got.map((g) => g.msg.topic)).toEqual(['i/1']);
    expect(owner.ups).toBe(2);
  });
});
