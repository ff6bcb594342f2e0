/**
 * Broker.accept(..., { internal, maxInflight }): the in-process peers (bridges) connect without
 * credentials, outside the ACL both ways, may publish under `$SYS/broker/connection/` (only
 * there), have their own in-flight window, are not counted against max_connections, and keep
 * their client id from outside clients. Outside clients gain none of that.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { duplexPair } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import type { ListenerInfo } from '../src/index.ts';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

const INFO: ListenerInfo = { protocol: 'mqtt', tls: false, useIdentityAsUsername: false };
const PUBACK_NOT_AUTHORIZED = 0x87;

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

/** Only alice/secret gets in; she may write and read data/#, nothing else. Nobody else may do anything. */
async function guarded(extra: Parameters<typeof startBroker>[0] = {}): Promise<TestBroker> {
  const tb = await startBroker({
    allowAnonymous: false,
    maxInflightMessages: 2,
    authenticator: {
      authenticate: ({ username, password }) =>
        username === 'alice' && password !== undefined && Buffer.from(password).toString() === 'secret',
    },
    accessControl: {
      allowed: (_access, client, topic) => client.username === 'alice' && topic.startsWith('data/'),
    },
    ...extra,
  });
  closers.push(() => tb.close());
  return tb;
}

function internal(
  tb: TestBroker,
  options: { internal?: boolean; maxInflight?: number } = { internal: true },
): RawClient {
  const [ours, theirs] = duplexPair();
  tb.broker.accept(theirs, INFO, 'test:internal', undefined, options);
  const c = RawClient.over(ours);
  closers.push(() => c.close());
  return c;
}

async function alice(tb: TestBroker, clientId = 'alice'): Promise<RawClient> {
  const { client, connack } = await RawClient.connect(tb.port, {
    protocolVersion: 5,
    clientId,
    username: 'alice',
    password: Buffer.from('secret'),
  });
  expect(connack.reasonCode).toBe(0);
  closers.push(() => client.close());
  return client;
}

describe('internal connections', () => {
  it('connect without credentials where outside clients need them', async () => {
    const tb = await guarded();
    const c = internal(tb);
    expect((await c.handshake({ protocolVersion: 5, clientId: 'bridge-1' })).reasonCode).toBe(0);
    // The same CONNECT over the same kind of stream, not internal: refused.
    const plain = internal(tb, {});
    expect((await plain.handshake({ protocolVersion: 5, clientId: 'bridge-2' })).reasonCode).toBe(0x87);
  });

  it('subscribe to and receive what the ACL refuses everyone else, retained included', async () => {
    const tb = await guarded();
    const a = await alice(tb);
    a.publish('data/r', 'kept', 1, true, 7);
    // 0x10: no subscription matched yet (issue 15: as Mosquitto); the message is retained.
    expect((await a.expect('puback')).reasonCode ?? 0).toBe(0x10);
    const c = internal(tb);
    await c.handshake({ protocolVersion: 5, clientId: 'bridge-1' });
    expect(await c.subscribe('data/#', 1)).toEqual([1]);
    const retained = await c.expect('publish');
    expect([retained.topic, text(retained), retained.retain]).toEqual(['data/r', 'kept', true]);
    c.send({ type: 'puback', packetId: retained.packetId! });
    a.publish('data/live', 'now', 1, false, 8);
    const live = await c.expect('publish');
    expect([live.topic, text(live)]).toEqual(['data/live', 'now']);
    // A filter nobody may subscribe to.
    expect(await c.subscribe('secret/#', 0, 2)).toEqual([0]);
  });

  it('publish where the ACL refuses, and under $SYS/broker/connection/ but not elsewhere in $SYS', async () => {
    const tb = await guarded();
    const c = internal(tb);
    await c.handshake({ protocolVersion: 5, clientId: 'bridge-1' });
    const sub = internal(tb);
    await sub.handshake({ protocolVersion: 5, clientId: 'bridge-2' });
    await sub.subscribe('secret/#', 1);
    c.publish('secret/x', 'hidden', 1, false, 1);
    expect((await c.expect('puback')).reasonCode ?? 0).toBe(0);
    expect(text(await sub.expect('publish'))).toBe('hidden');

    const state = '$SYS/broker/connection/up/state';
    c.publish(state, '1', 1, true, 2);
    expect((await c.expect('puback')).reasonCode ?? 0).toBe(0x10);
    expect(tb.broker.retain.get(state)).toBeDefined();
    c.publish('$SYS/broker/uptime', '0', 1, true, 3);
    expect((await c.expect('puback')).reasonCode).toBe(PUBACK_NOT_AUTHORIZED);
    expect(tb.broker.retain.get('$SYS/broker/uptime')).toBeUndefined();

    // An outside client, even one the ACL lets write elsewhere, may not forge bridge state.
    const a = await alice(tb);
    a.publish('$SYS/broker/connection/up/state', '0', 1, true, 4);
    expect((await a.expect('puback')).reasonCode).toBe(PUBACK_NOT_AUTHORIZED);
    expect(Buffer.from(tb.broker.retain.get(state)!.payload).toString()).toBe('1');
  });

  it('keep their client id: an outside client claiming it is refused and the session stays', async () => {
    const tb = await guarded();
    const c = internal(tb);
    await c.handshake({ protocolVersion: 5, clientId: 'bridge-1' });
    const { client, connack } = await RawClient.connect(tb.port, {
      protocolVersion: 5,
      clientId: 'bridge-1',
      username: 'alice',
      password: Buffer.from('secret'),
    });
    closers.push(() => client.close());
    expect(connack.reasonCode).toBe(0x85);
    await client.closed;
    c.send({ type: 'pingreq' });
    await c.expect('pingresp');
    expect(c.isClosed).toBe(false);
  });

  it('have their own in-flight window; outside clients keep max_inflight_messages', async () => {
    const tb = await guarded();
    const c = internal(tb, { internal: true, maxInflight: 10 });
    await c.handshake({ protocolVersion: 5, clientId: 'bridge-1' });
    await c.subscribe('data/#', 1);
    const control = await alice(tb, 'control');
    await control.subscribe('data/#', 1);
    const a = await alice(tb);
    for (let i = 1; i <= 6; i++) {
      a.publish('data/w', String(i), 1, false, i);
      await a.expect('puback');
    }
    // Nobody acknowledges: the internal peer has all six, the outside one max_inflight_messages (2).
    for (let i = 1; i <= 6; i++) expect(text(await c.expect('publish'))).toBe(String(i));
    expect(text(await control.expect('publish'))).toBe('1');
    expect(text(await control.expect('publish'))).toBe('2');
    expect(await control.silent(200)).toBe(true);
  });

  it('a reserved client id: its recovered session is internal before the peer is back, and cannot be taken', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bl-internal-'));
    closers.push(() => rmSync(dir, { recursive: true, force: true }));
    const persistent = {
      protocolVersion: 5 as const,
      clientId: 'bridge-p',
      clean: false,
      properties: { sessionExpiryInterval: 0xffff_ffff },
    };
    const first = await guarded({ persistenceDir: dir });
    const c = internal(first);
    await c.handshake(persistent);
    expect(await c.subscribe('data/#', 1)).toEqual([1]);
    c.close();
    await first.close();

    // Restarted: the peer is not back yet, a message for its session arrives meanwhile.
    const second = await guarded({ persistenceDir: dir });
    second.broker.reserveClientId('bridge-p');
    const a = await alice(second);
    a.publish('data/while-away', 'kept', 1, false, 1);
    expect((await a.expect('puback')).reasonCode ?? 0).toBe(0);
    const thief = await RawClient.connect(second.port, {
      protocolVersion: 5,
      clientId: 'bridge-p',
      username: 'alice',
      password: Buffer.from('secret'),
    });
    closers.push(() => thief.client.close());
    expect(thief.connack.reasonCode).toBe(0x85);
    const back = internal(second);
    expect((await back.handshake(persistent)).sessionPresent).toBe(true);
    const m = await back.expect('publish');
    expect([m.topic, text(m)]).toEqual(['data/while-away', 'kept']);
  });

  it('are not counted against max_connections; a bad maxInflight is refused', async () => {
    const tb = await guarded({ maxConnections: 1 });
    await alice(tb);
    const c = internal(tb);
    expect((await c.handshake({ protocolVersion: 5, clientId: 'bridge-1' })).reasonCode).toBe(0);
    for (const maxInflight of [0, 65_536, 1.5]) {
      const [, theirs] = duplexPair();
      expect(() => tb.broker.accept(theirs, INFO, 'bad', undefined, { internal: true, maxInflight })).toThrow(
        RangeError,
      );
      expect(theirs.destroyed).toBe(true);
    }
  });
});
