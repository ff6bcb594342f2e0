/**
 * When bytes leave: acks that free in-flight slots towards a client send the next PUBLISHes
 * (and a PUBREC's PUBREL) at the end of the chunk that carried them, not after the rest of
 * the event-loop turn; and a connection does not keep its peer's address object once it has
 * been read for a log line.
 */
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Connection } from '../src/connection.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

async function broker(): Promise<TestBroker> {
  const tb = await startBroker({ maxInflightMessages: 2 });
  closers.push(() => tb.close());
  return tb;
}

async function client(tb: TestBroker, clientId: string): Promise<RawClient> {
  const { client: c, connack } = await RawClient.connect(tb.port, { clientId });
  expect(connack.reasonCode).toBe(0);
  closers.push(() => c.close());
  return c;
}

function serverSide(tb: TestBroker, clientId: string): Connection {
  for (const c of tb.broker.connections) if (c.clientId === clientId) return c;
  throw new Error(`no connection ${clientId}`);
}

/** Runs `fn` with the connection's socket writes recorded; returns those made during `fn` itself. */
function writesDuring(conn: Connection, fn: () => void): Uint8Array[] {
  const socket = conn.socket as net.Socket;
  const seen: Uint8Array[] = [];
  const original = socket.write;
  socket.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]): boolean {
    seen.push(Uint8Array.from(chunk as Uint8Array));
    return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof socket.write;
  try {
    fn();
  } finally {
    socket.write = original;
  }
  return seen;
}

/** First bytes of each packet in `bytes` (3.1.1, remaining length below 128). */
function packetTypes(bytes: Uint8Array): number[] {
  const types: number[] = [];
  for (let i = 0; i < bytes.length; i += 2 + bytes[i + 1]) types.push(bytes[i] & 0xf0);
  return types;
}

describe('ack-driven writes', () => {
  it('PUBACKs that free the window send the queued PUBLISHes within the same chunk', async () => {
    const tb = await broker();
    const sub = await client(tb, 'sub');
    await sub.subscribe('t', 1);
    const pub = await client(tb, 'pub');
    for (let i = 1; i <= 4; i++) {
      pub.publish('t', `m${i}`, 1, false, i);
      await pub.expect('puback');
    }
    const first = [await sub.expect('publish'), await sub.expect('publish')];
    expect(await sub.silent(100)).toBe(true); // window of 2: m3 and m4 wait in the queue
    const conn = serverSide(tb, 'sub');
    const acks = Buffer.from(first.flatMap((p) => [0x40, 2, 0, p.packetId as number]));
    const written = writesDuring(conn, () => conn.socket.emit('data', acks));
    expect(written.length).toBe(1);
    expect(packetTypes(written[0])).toEqual([0x30, 0x30]);
    const next = [await sub.expect('publish'), await sub.expect('publish')];
    expect(next.map((p) => Buffer.from(p.payload).toString())).toEqual(['m3', 'm4']);
  });

  it('a PUBREC gets its PUBREL within the same chunk', async () => {
    const tb = await broker();
    const sub = await client(tb, 'sub2');
    await sub.subscribe('t', 2);
    const pub = await client(tb, 'pub2');
    pub.publish('t', 'x', 2, false, 1);
    await pub.expect('pubrec');
    const p = await sub.expect('publish');
    const conn = serverSide(tb, 'sub2');
    const rec = Buffer.from([0x50, 2, 0, p.packetId as number]);
    const written = writesDuring(conn, () => conn.socket.emit('data', rec));
    expect(written.map((w) => Array.from(w))).toEqual([[0x62, 2, 0, p.packetId]]);
  });

  it('a publisher PUBACK still waits for the end of the turn (routed bytes first)', async () => {
    const tb = await broker();
    const pub = await client(tb, 'pub3');
    const conn = serverSide(tb, 'pub3');
    const bytes = Buffer.from([0x32, 5, 0, 1, 0x74, 0, 9]); // QoS 1 PUBLISH to "t", id 9, empty payload
    const written = writesDuring(conn, () => conn.socket.emit('data', bytes));
    expect(written).toEqual([]);
    const ack = await pub.expect('puback');
    expect(ack.packetId).toBe(9);
  });
});

describe('peer address', () => {
  it('is read for logs without the socket keeping the address object', async () => {
    const tb = await broker();
    const c = await client(tb, 'peer');
    const conn = serverSide(tb, 'peer');
    const local = (c.socket as net.Socket).localPort;
    expect(conn.remote).toBe(`127.0.0.1:${local}`);
    expect((conn.socket as net.Socket & { _peername?: unknown })._peername).toBeUndefined();
    expect(
      tb.logs.some((l) => l.message === 'client connected' && l.fields?.remote === `127.0.0.1:${local}`),
    ).toBe(true);
  });
});
