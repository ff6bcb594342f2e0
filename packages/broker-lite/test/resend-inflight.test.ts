/**
 * Issue 12 (bridge) point 4: what was in flight when a session's connection ended is re-sent on
 * its next connection; a message that can no longer go (expired, or larger than the new
 * connection's maximum packet size) must leave the in-flight window, or it holds one of its
 * slots for good and, with a small receive maximum, stops the session.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Properties } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

async function broker(dir: string): Promise<TestBroker> {
  const tb = await startBroker({ persistenceDir: dir });
  closers.push(() => tb.close());
  return tb;
}

async function v5(
  port: number,
  clientId: string,
  clean: boolean,
  properties: Properties,
): Promise<RawClient> {
  const { client, connack } = await RawClient.connect(port, {
    clientId,
    protocolVersion: 5,
    clean,
    properties,
  });
  expect(connack.reasonCode).toBe(0);
  closers.push(() => client.close());
  return client;
}

function publish5(
  c: RawClient,
  topic: string,
  payload: string | Uint8Array,
  id: number,
  props?: Properties,
): void {
  c.send({
    type: 'publish',
    topic,
    payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
    qos: 1,
    retain: false,
    dup: false,
    packetId: id,
    properties: props,
  });
}

/**
 * A persistent v5 subscriber gets `first` and leaves it unacknowledged; it comes back with
 * `reconnect` properties (receive maximum 1: one slot); then `e/next` is published. Returns
 * what the subscriber gets after coming back.
 */
async function scenario(
  tb: TestBroker,
  first: { payload: string | Uint8Array; props?: Properties },
  beforeReconnect: () => Promise<void>,
  reconnect: Properties,
): Promise<{ sub: RawClient; next: string }> {
  const sub1 = await v5(tb.port, 'sub', true, { sessionExpiryInterval: 600 });
  expect(await sub1.subscribe('e/#', 1)).toEqual([1]);
  const pub = await v5(tb.port, 'pub', true, {});
  publish5(pub, 'e/first', first.payload, 1, first.props);
  expect((await pub.expect('puback')).reasonCode ?? 0).toBe(0);
  expect((await sub1.expect('publish')).topic).toBe('e/first'); // not acknowledged
  sub1.close();
  await sub1.closed;
  await beforeReconnect();
  const sub = await v5(tb.port, 'sub', false, {
    sessionExpiryInterval: 600,
    receiveMaximum: 1,
    ...reconnect,
  });
  publish5(pub, 'e/next', 'n', 2);
  expect((await pub.expect('puback')).reasonCode ?? 0).toBe(0);
  const p = await sub.expect('publish');
  sub.send({ type: 'puback', packetId: p.packetId as number });
  return { sub, next: `${p.topic}=${text(p)}` };
}

/**
 * The log as a crash would leave it (a copy taken while the broker runs: no shutdown snapshot)
 * recovers no message for `sub`: the dropped one's removal was written too.
 */
async function expectGoneFromLog(dir: string): Promise<void> {
  const copy = mkdtempSync(join(tmpdir(), 'bl-resend-copy-'));
  closers.push(() => rmSync(copy, { recursive: true, force: true }));
  cpSync(dir, copy, { recursive: true });
  const again = await broker(copy);
  const s = again.broker.sessions.get('sub');
  expect(s?.inflightCount).toBe(0);
  expect(s?.queueLength).toBe(0);
  const back = await v5(again.port, 'sub', false, { sessionExpiryInterval: 600 });
  expect(await back.silent(300)).toBe(true);
}

describe('issue 12 (bridge): in-flight messages that cannot be re-sent leave the window', () => {
  it('issue 12 (bridge): an in-flight message that expired while its session was away is dropped at the re-send, counted, and frees its slot (also on disk)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bl-resend-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const tb = await broker(dir);
    const { sub, next } = await scenario(
      tb,
      { payload: 'old', props: { messageExpiryInterval: 1 } },
      // The message expires with time, not with an event: wait past its one second.
      () => new Promise((r) => setTimeout(r, 1100)),
      {},
    );
    expect(next).toBe('e/next=n');
    expect(tb.broker.counters.expired).toBe(1);
    expect(await sub.silent(200)).toBe(true);
    expect(tb.broker.sessions.get('sub')?.inflightCount).toBe(0);
    await expectGoneFromLog(dir);
  });

  it("issue 12 (bridge): an in-flight message larger than the returning client's new maximum packet size is dropped at the re-send, counted, and frees its slot", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bl-resend-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const tb = await broker(dir);
    const droppedBefore = tb.broker.counters.dropped;
    const { sub, next } = await scenario(tb, { payload: Buffer.alloc(2000, 0x62) }, async () => {}, {
      maximumPacketSize: 1000,
    });
    expect(next).toBe('e/next=n');
    expect(tb.broker.counters.dropped).toBe(droppedBefore + 1);
    expect(await sub.silent(200)).toBe(true);
    expect(tb.broker.sessions.get('sub')?.inflightCount).toBe(0);
    await expectGoneFromLog(dir);
  });
});
