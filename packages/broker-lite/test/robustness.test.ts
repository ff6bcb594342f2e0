import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, startBroker, type TestBroker, text } from './helpers/raw-client.ts';

let tb: TestBroker;
let bystander: RawClient;
let publisher: RawClient;
beforeAll(async () => {
  tb = await startBroker({ messageSizeLimit: 1000 });
  bystander = (await RawClient.connect(tb.port, { clientId: 'bystander' })).client;
  await bystander.subscribe('alive/#', 0);
  publisher = (await RawClient.connect(tb.port, { clientId: 'bystander-pub' })).client;
});
afterAll(async () => {
  bystander.close();
  publisher.close();
  await tb.close();
});

/** The other clients are still served after the bad one was closed. */
async function othersUnaffected(tag: string): Promise<void> {
  publisher.publish('alive/check', tag, 0);
  const m = await bystander.expect('publish');
  expect(text(m)).toBe(tag);
}

/** A TLS 1.2 ClientHello's first bytes, as a TLS client would send to the plain port. */
const TLS_HELLO = new Uint8Array([
  0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x5e, 0x2a, 0x11, 0x9c, 0x00, 0x11, 0x22,
  0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x00, 0x20, 0xc0, 0x2b,
]);

const cases: Array<[string, Uint8Array, boolean]> = [
  ['a TLS ClientHello on the plain port', TLS_HELLO, false],
  ['random garbage', new Uint8Array([0x00, 0xff, 0x13, 0x37, 0x42, 0x42, 0x42, 0x42]), false],
  [
    'a CONNECT with a bad protocol name',
    new Uint8Array([0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x58, 4, 2, 0, 60, 0, 0]),
    false,
  ],
  [
    'a CONNECT with the reserved flag set',
    new Uint8Array([0x10, 0x0c, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 3, 0, 60, 0, 0]),
    false,
  ],
  ['a remaining length of five bytes', new Uint8Array([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]), false],
  ['a PUBLISH with a wildcard topic', new Uint8Array([0x30, 0x05, 0, 3, 0x61, 0x2f, 0x23]), true],
  ['a PUBLISH with QoS 3', new Uint8Array([0x36, 0x05, 0, 1, 0x61, 0, 1]), true],
  ['a SUBSCRIBE with no filters', new Uint8Array([0x82, 0x02, 0, 1]), true],
  ['a SUBSCRIBE with bad flags', new Uint8Array([0x80, 0x06, 0, 1, 0, 1, 0x61, 0]), true],
  ['a SUBSCRIBE with an invalid filter', new Uint8Array([0x82, 0x08, 0, 1, 0, 3, 0x61, 0x23, 0x62, 0]), true],
  ['a PUBLISH with invalid UTF-8 in the topic', new Uint8Array([0x30, 0x04, 0, 2, 0xc0, 0xaf]), true],
  ['a packet type 0', new Uint8Array([0x00, 0x00]), true],
  ['a CONNACK sent to the server', new Uint8Array([0x20, 0x02, 0, 0]), true],
];

describe('bad input closes only that connection', () => {
  for (const [name, bytes, afterConnect] of cases) {
    it(name, async () => {
      const c = afterConnect
        ? (await RawClient.connect(tb.port, { clientId: `bad-${name}` })).client
        : await RawClient.open(tb.port);
      c.sendBytes(bytes);
      await c.closed;
      expect(c.isClosed).toBe(true);
      await othersUnaffected(name);
    });
  }

  it('5.0: a malformed packet gets DISCONNECT with 0x81 before the close', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 'bad5', protocolVersion: 5 })).client;
    c.sendBytes(new Uint8Array([0x36, 0x05, 0, 1, 0x61, 0, 1])); // QoS 3
    const d = await c.expect('disconnect');
    expect(d.reasonCode).toBe(0x81);
    await c.closed;
  });

  it('a truncated packet followed by silence is closed by the keepalive, not held for ever', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 'trunc', keepalive: 1 })).client;
    c.sendBytes(new Uint8Array([0x30, 0x20, 0, 3, 0x61])); // 32-byte PUBLISH, 5 bytes sent
    await c.closed;
    await othersUnaffected('truncated');
  });

  it('an oversized packet is refused from its fixed header, before the body arrives', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 'huge', protocolVersion: 5 })).client;
    // PUBLISH claiming 200 MB; only the header is sent
    c.sendBytes(new Uint8Array([0x30, 0x80, 0x80, 0x80, 0x60]));
    const d = await c.expect('disconnect');
    expect(d.reasonCode).toBe(0x95);
    await c.closed;
    await othersUnaffected('oversized');
  });

  it('a payload over message_size_limit is dropped and counted, the client stays', async () => {
    const c = (await RawClient.connect(tb.port, { clientId: 'big-payload', protocolVersion: 5 })).client;
    const before = tb.broker.stats().messagesDropped;
    c.publish('alive/big', new Uint8Array(1500), 1, false, 8);
    expect((await c.expect('puback')).reasonCode).toBe(0x97);
    expect(tb.broker.stats().messagesDropped).toBe(before + 1);
    await othersUnaffected('after-big');
    c.close();
  });

  it('byte-at-a-time delivery of valid packets works', async () => {
    const c = await RawClient.open(tb.port);
    const { encode } = await import('@mqtt-edge/codec');
    const bytes = [
      ...encode({ type: 'connect', protocolVersion: 4, clientId: 'slowpoke', clean: true, keepalive: 30 }),
      ...encode({
        type: 'publish',
        topic: 'alive/bytes',
        payload: Buffer.from('dribble'),
        qos: 0,
        retain: false,
        dup: false,
      }),
    ];
    for (const b of bytes) {
      c.sendBytes(new Uint8Array([b]));
      await new Promise((r) => setImmediate(r));
    }
    await c.expect('connack');
    expect(text(await bystander.expect('publish'))).toBe('dribble');
    c.close();
  });

  it('a flood of connections without CONNECT beyond max_connections is refused', async () => {
    const limited = await startBroker({ maxConnections: 2 });
    try {
      const a = await RawClient.open(limited.port);
      const b = await RawClient.open(limited.port);
      await new Promise((r) => setTimeout(r, 50));
      const c = await RawClient.open(limited.port);
      await c.closed;
      expect(a.isClosed || b.isClosed).toBe(false);
      a.close();
      b.close();
    } finally {
      await limited.close();
    }
  });
});

describe('max_packet_size and connection_messages', () => {
  it('a packet over maxPacketSize is refused (5.0: 0x95) and the limit is announced in CONNACK', async () => {
    const small = await startBroker({ maxPacketSize: 200, connectionMessages: false });
    try {
      const { client, connack } = await RawClient.connect(small.port, {
        clientId: 'mps',
        protocolVersion: 5,
      });
      expect(connack.properties?.maximumPacketSize).toBe(200);
      client.publish('t', new Uint8Array(100), 0);
      client.send({ type: 'pingreq' });
      await client.expect('pingresp');
      client.publish('t', new Uint8Array(300), 0);
      expect((await client.expect('disconnect')).reasonCode).toBe(0x95);
      await client.closed;
      expect(small.logs.some((l) => l.message === 'client connected')).toBe(false);
    } finally {
      await small.close();
    }
  });
});
