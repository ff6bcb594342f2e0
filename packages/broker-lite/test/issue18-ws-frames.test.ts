/**
 * Issue 18.2: MQTT over WebSocket framed by broker-lite itself on the upgraded socket, over
 * real sockets: the handshake (RFC 6455 4.2), MQTT.js over ws://, and hostile frames before
 * authentication, each ending in a close frame with its code and a closed socket, the broker
 * holding nothing of them and serving the next client. Unit tests: issue18-ws-stream.test.ts.
 */
import { createHash } from 'node:crypto';
import { encode } from '@mqtt-edge/codec';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../src/index.ts';
import { frame, OP, RawWs, upgradeRequest } from './helpers/ws-raw.ts';

const USER = 'gw';
const PASS = 'secret';
const GOOD = { username: USER, password: Buffer.from(PASS) };

let broker: Broker;
let port: number;
beforeAll(async () => {
  broker = new Broker({
    listeners: [{ port: 0, host: '127.0.0.1', protocol: 'websockets' }],
    sysInterval: 0,
    authFailureDelayMs: 0,
    allowAnonymous: false,
    maxUnauthenticatedPacketSize: 8 * 1024,
    maxPacketSize: 256 * 1024,
    authenticator: {
      authenticate: ({ username, password }) =>
        username === USER && Buffer.from(password ?? []).toString() === PASS,
    },
  });
  await broker.listen();
  port = broker.addresses[0].port;
});
afterAll(() => broker.close());

async function expectAlive(): Promise<void> {
  const ws = await RawWs.upgraded(port);
  ws.sendPacket(ws.connectPacket({ protocolVersion: 5, ...GOOD }));
  expect(await ws.nextPacket()).toMatchObject({ type: 'connack', reasonCode: 0 });
  ws.close();
}

/** Nothing left of hostile clients: no connection, nothing charged before CONNACK. */
async function nothingHeld(): Promise<void> {
  await expect.poll(() => broker.connections.size + broker.pendingSockets.size).toBe(0);
  await expect.poll(() => broker.stats().unauthenticatedBytes).toBe(0);
}

const connectBytes = (clientId: string): Uint8Array =>
  encode({ type: 'connect', protocolVersion: 4, clientId, clean: true, keepalive: 30, ...GOOD }, 4);

describe('issue 18.2: the upgrade', () => {
  it("issue 18.2: Sec-WebSocket-Accept is RFC 6455's; the subprotocol mqtt; no extension even when offered", async () => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const ws = await RawWs.upgraded(port, {
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Protocol': 'mqttv3.1, mqtt',
      'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
    });
    // RFC 6455 1.3's own example
    expect(ws.responseHead).toMatch(/\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=(\r\n|$)/i);
    expect(createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64')).toBe(
      's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
    );
    expect(ws.responseHead).toMatch(/\r\nSec-WebSocket-Protocol: mqtt(\r\n|$)/i);
    expect(ws.responseHead).not.toMatch(/Sec-WebSocket-Extensions/i);
    ws.close();
    const none = await RawWs.upgraded(port, { 'Sec-WebSocket-Protocol': '' });
    expect(none.responseHead).not.toMatch(/Sec-WebSocket-Protocol/i);
    none.close();
  });

  it('issue 18.2: version 8 is refused with 400 naming version 13; Upgrade other than websocket: 400', async () => {
    const ws = await RawWs.open(port);
    ws.write(upgradeRequest({ 'Sec-WebSocket-Version': '8' }));
    expect(await ws.response()).toBe(400);
    expect(ws.responseHead).toMatch(/\r\nSec-WebSocket-Version: 13/i);
    await ws.waitClosed();
    const other = await RawWs.open(port);
    other.write(upgradeRequest({ Upgrade: 'h2c' }));
    expect(await other.response()).toBe(400);
    await other.waitClosed();
    await nothingHeld();
  });

  it('issue 18.2: frames sent right behind the request (in the same packet) are read', async () => {
    const ws = await RawWs.open(port);
    ws.write(Buffer.concat([Buffer.from(upgradeRequest()), frame(OP.binary, connectBytes('behind'))]));
    expect(await ws.response()).toBe(101);
    expect(await ws.nextPacket()).toMatchObject({ type: 'connack', reasonCode: 0 });
    ws.close();
  });
});

describe('issue 18.2: MQTT.js over ws://', () => {
  it('issue 18.2: QoS 0/1 publish and subscribe, a 200 KB payload, ping, clean end', async () => {
    const opts = { ...GOOD, password: PASS, reconnectPeriod: 0, protocolVersion: 5 as const };
    const sub = await mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, { ...opts, clientId: 'sub' });
    const pub = await mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, {
      ...opts,
      clientId: 'pub',
      keepalive: 1,
    });
    await sub.subscribeAsync('t/#', { qos: 1 });
    const got: Buffer[] = [];
    const all = new Promise<void>((resolve) =>
      sub.on('message', (_t, payload) => {
        got.push(payload);
        if (got.length === 3) resolve();
      }),
    );
    const big = Buffer.alloc(200_000, 0x61);
    await pub.publishAsync('t/a', 'zero', { qos: 0 });
    await pub.publishAsync('t/b', 'one', { qos: 1 });
    await pub.publishAsync('t/c', big, { qos: 1 });
    await all;
    expect(got.map((p) => p.length)).toEqual([4, 3, 200_000]);
    expect(got[2].equals(big)).toBe(true);
    // keepalive 1 s: MQTT.js pings; the connection stays
    await new Promise<void>((resolve) => pub.once('packetreceive', (p) => p.cmd === 'pingresp' && resolve()));
    await Promise.all([pub.endAsync(), sub.endAsync()]);
    await nothingHeld();
  }, 20_000);
});

describe('issue 18.2: hostile WebSocket input before authentication', () => {
  /** A binary frame header announcing (hi << 32) + lo bytes in the 64-bit form. */
  const u64 = (hi: number, lo: number): Buffer =>
    frame(OP.binary, new Uint8Array(0), { declaredLength: (BigInt(hi) << 32n) | BigInt(lo) });
  const cases: Array<[string, Buffer, number]> = [
    ['an unmasked frame', frame(OP.binary, connectBytes('u'), { mask: false }), 1002],
    ['a 2^63 length', frame(OP.binary, new Uint8Array(0), { declaredLength: 2n ** 63n }), 1002],
    ['a 64-bit length with the high bit set', u64(0x80000000, 5), 1002],
    ['a 64-bit length of 2^62', u64(0x40000000, 0), 1009],
    ['a control frame over 125 bytes', frame(OP.ping, new Uint8Array(126)), 1002],
    ['a fragmented control frame', frame(OP.ping, new Uint8Array(3), { fin: false }), 1002],
    ['reserved bits', frame(OP.binary, connectBytes('r'), { rsv: 7 }), 1002],
    ['a reserved opcode', frame(0xb, new Uint8Array(1)), 1002],
    ['a text frame', frame(OP.text, connectBytes('t')), 1003],
    // max_unauthenticated_packet_size 8 KiB + 64 KiB of framing: refused from the header
    [
      'an oversized frame before CONNACK',
      frame(OP.binary, new Uint8Array(0), { declaredLength: 80 * 1024 }),
      1009,
    ],
  ];
  for (const [name, bytes, code] of cases) {
    it(`issue 18.2: ${name}: close ${code}, closed, nothing held`, async () => {
      const ws = await RawWs.upgraded(port);
      ws.write(bytes);
      await ws.waitClosed();
      expect(ws.closeCode).toBe(code);
      expect(ws.frames.some((f) => f.opcode === OP.binary)).toBe(false);
      await nothingHeld();
    });
  }

  it('issue 18.2: the same, trickled one byte at a time', async () => {
    for (const [name, bytes, code] of cases) {
      const ws = await RawWs.upgraded(port);
      ws.socket.setNoDelay(true);
      for (let i = 0; i < bytes.length && !ws.isClosed && ws.closeCode === undefined; i++) {
        ws.write(bytes.subarray(i, i + 1));
        await new Promise((r) => setTimeout(r, 1));
      }
      await ws.waitClosed();
      expect(ws.closeCode, name).toBe(code);
    }
    await nothingHeld();
  });

  it('issue 18.2: a whole session trickled one byte at a time works', async () => {
    const ws = await RawWs.upgraded(port);
    ws.socket.setNoDelay(true);
    const session = Buffer.concat([
      frame(OP.binary, connectBytes('trickle')),
      frame(OP.ping, Uint8Array.of(1, 2)),
      frame(
        OP.binary,
        encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'x', qos: 0 }] }, 4),
        {
          fin: false,
        },
      ),
      frame(
        OP.continuation,
        encode(
          { type: 'publish', topic: 'x', payload: Buffer.from('hi'), qos: 0, retain: false, dup: false },
          4,
        ),
      ),
    ]);
    for (let i = 0; i < session.length; i++) {
      ws.write(session.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(await ws.nextPacket()).toMatchObject({ type: 'connack', reasonCode: 0 });
    expect(await ws.nextPacket()).toMatchObject({ type: 'suback', reasonCodes: [0] });
    expect(await ws.nextPacket()).toMatchObject({ type: 'publish', topic: 'x' });
    expect(ws.frames.find((f) => f.opcode === OP.pong)?.payload).toEqual(Buffer.of(1, 2));
    ws.close();
    await nothingHeld();
  });

  it('issue 18.2: truncated frames, then the client closes: the broker closes and holds nothing', async () => {
    const whole = frame(OP.binary, connectBytes('cut'));
    for (const cut of [1, 2, 4, 6, 10, whole.length - 1]) {
      const ws = await RawWs.upgraded(port);
      ws.write(whole.subarray(0, cut));
      ws.socket.end();
      await ws.waitClosed();
      expect(ws.frames.some((f) => f.opcode === OP.binary)).toBe(false);
    }
    await nothingHeld();
    await expectAlive();
  });

  it("issue 18.2: the client's close is echoed with its code, then the broker ends the socket", async () => {
    const ws = await RawWs.upgraded(port);
    ws.sendPacket(ws.connectPacket({ clientId: 'bye', ...GOOD }));
    expect(await ws.nextPacket()).toMatchObject({ type: 'connack' });
    ws.write(frame(OP.close, Uint8Array.of(0x03, 0xe9)));
    await ws.waitClosed();
    expect(ws.closeCode).toBe(1001);
    await nothingHeld();
  });

  it('issue 18.2: after CONNACK a message is bounded by max_packet_size (1009), not the pre-CONNACK limit', async () => {
    const ws = await RawWs.upgraded(port);
    ws.sendPacket(ws.connectPacket({ clientId: 'big', ...GOOD }));
    expect(await ws.nextPacket()).toMatchObject({ type: 'connack' });
    ws.sendPacket({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'big', qos: 0 }] });
    expect(await ws.nextPacket()).toMatchObject({ type: 'suback' });
    const payload = Buffer.alloc(100_000, 0x62);
    ws.sendPacket({ type: 'publish', topic: 'big', payload, qos: 0, retain: false, dup: false });
    const back = await ws.nextPacket();
    expect(back).toMatchObject({ type: 'publish', topic: 'big' });
    ws.write(frame(OP.binary, new Uint8Array(0), { declaredLength: 256 * 1024 + 1 }));
    await ws.waitClosed();
    expect(ws.closeCode).toBe(1009);
    await nothingHeld();
    await expectAlive();
  });
});
