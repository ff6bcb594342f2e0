/**
 * Issue 12, point 4: WebSocket listeners under hostile clients, all before authentication.
 * Frames bounded by the packet limits (and small before CONNECT), slow or never-finished
 * upgrades closed at the connect timeout and counted in max_connections, malformed HTTP and
 * WebSocket input answered by a closed connection; the broker stays up for a good client.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode } from '@mqtt-edge/codec';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { followJsonLog, type JsonLogState } from '../../../test/helpers/json-log.ts';
import { Broker } from '../src/index.ts';
import { RawClient } from './helpers/raw-client.ts';
import { frame, maskedChunk, OP, RawWs, upgradeRequest } from './helpers/ws-raw.ts';

const USER = 'gw';
const PASS = 'secret';

interface Started {
  broker: Broker;
  ws: number;
  tcp: number;
  logs: string[];
}

async function start(options: Partial<ConstructorParameters<typeof Broker>[0]> = {}): Promise<Started> {
  const logs: string[] = [];
  const broker = new Broker({
    listeners: [
      { port: 0, host: '127.0.0.1', protocol: 'websockets' },
      { port: 0, host: '127.0.0.1', protocol: 'mqtt' },
    ],
    sysInterval: 0,
    authFailureDelayMs: 0,
    allowAnonymous: false,
    authenticator: {
      authenticate: ({ username, password }) =>
        username === USER && Buffer.from(password ?? []).toString() === PASS,
    },
    logger: { log: (_level, message) => logs.push(message) },
    ...options,
  });
  await broker.listen();
  return { broker, ws: broker.addresses[0].port, tcp: broker.addresses[1].port, logs };
}

const GOOD = { username: USER, password: Buffer.from(PASS) };

/** A well-behaved client over WebSocket: CONNECT with credentials, CONNACK 0. */
async function expectAlive(port: number): Promise<void> {
  const ws = await RawWs.upgraded(port);
  ws.sendPacket(ws.connectPacket({ protocolVersion: 5, ...GOOD }));
  const ack = await ws.nextPacket();
  expect(ack).toMatchObject({ type: 'connack', reasonCode: 0 });
  ws.close();
}

/** Milliseconds until `ws` closes (bounded by `ms`). */
async function closesAfter(ws: RawWs, since: number, ms: number): Promise<number> {
  await ws.waitClosed(ms);
  return Date.now() - since;
}

describe('issue 12.4: frames are bounded by the packet limits', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start();
  });
  afterAll(() => s.broker.close());

  it('issue 12.4: a 60 MB binary frame before CONNECT is refused after a bounded read; RSS grows little', async () => {
    const ws = await RawWs.upgraded(s.ws);
    const TOTAL = 60 * 1024 * 1024;
    const CHUNK = 64 * 1024;
    const rss0 = process.memoryUsage().rss;
    let rssMax = rss0;
    // The frame starts like a CONNECT announcing the largest remaining length, then zeros.
    // CHUNK is a multiple of 4, so one masked chunk serves every position of the frame.
    ws.write(frame(OP.binary, new Uint8Array(0), { declaredLength: TOTAL }));
    const plain = new Uint8Array(CHUNK);
    const zeros = maskedChunk(plain, 0);
    plain.set([0x10, 0xff, 0xff, 0xff, 0x7f]);
    const first = maskedChunk(plain, 0);
    let sent = 0;
    const deadline = Date.now() + 30_000;
    while (sent < TOTAL && !ws.isClosed && Date.now() < deadline) {
      const more = ws.write(sent === 0 ? first : zeros);
      sent += CHUNK;
      if (!more) await new Promise<void>((r) => ws.socket.once('drain', r).once('close', r));
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
    }
    await ws.waitClosed(5000);
    const growthMb = (rssMax - rss0) / 2 ** 20;
    // The broker read at most its pre-CONNECT allowance; the rest bounced off a closed socket.
    expect(ws.socket.bytesWritten).toBeLessThan(16 * 2 ** 20);
    expect(growthMb).toBeLessThan(24);
    expect(s.logs).toContain('WebSocket client sent too much before CONNECT, closing');
    console.log(
      `60 MB frame before CONNECT: closed after ${(ws.socket.bytesWritten / 2 ** 20).toFixed(2)} MB written, RSS +${growthMb.toFixed(1)} MB`,
    );
    await expectAlive(s.ws);
  }, 60_000);

  it('issue 12.4: a frame header announcing 2^63 bytes is refused', async () => {
    const ws = await RawWs.upgraded(s.ws);
    ws.write(frame(OP.binary, new Uint8Array(0), { declaredLength: 2n ** 63n }));
    await ws.waitClosed();
    await expectAlive(s.ws);
  });
});

describe('issue 12.4: max_packet_size bounds a WebSocket frame after CONNECT', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({ maxPacketSize: 2048 });
  });
  afterAll(() => s.broker.close());

  it('a packet under the limit goes through; a frame over it closes with 1009', async () => {
    const sub = await RawClient.connect(s.tcp, { protocolVersion: 4, clientId: 'sub', ...GOOD });
    expect(await sub.client.subscribe('big/#', 0)).toEqual([0]);
    const ws = await RawWs.upgraded(s.ws);
    ws.sendPacket(ws.connectPacket({ clientId: 'pub', ...GOOD }));
    expect(await ws.nextPacket()).toMatchObject({ type: 'connack', reasonCode: 0 });
    const ok = new Uint8Array(1500).fill(0x61);
    ws.sendPacket({ type: 'publish', topic: 'big/ok', payload: ok, qos: 0, retain: false, dup: false });
    expect((await sub.client.expect('publish')).payload.length).toBe(1500);
    // one frame of 4096 bytes: more than any packet this broker accepts
    ws.write(frame(OP.binary, new Uint8Array(4096)));
    await ws.waitClosed();
    expect(ws.closeCode).toBe(1009);
    expect(await sub.client.silent(100)).toBe(true);
    await sub.client.disconnect();
    await expectAlive(s.ws);
  });
});

describe('issue 12.4: slow upgrades get the connect timeout and count in max_connections', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({ connectTimeoutSeconds: 1, maxConnections: 2 });
  });
  afterAll(() => s.broker.close());

  it('a socket that never sends, a trickled HTTP request and a silent upgraded socket close at the timeout', async () => {
    const t0 = Date.now();
    const silent = await RawWs.open(s.ws);
    const trickle = await RawWs.open(s.ws);
    const req = upgradeRequest();
    let i = 0;
    const timer = setInterval(() => {
      if (i < req.length - 4 && !trickle.isClosed) trickle.write(req[i++]);
    }, 50);
    try {
      const [a, b] = await Promise.all([closesAfter(silent, t0, 5000), closesAfter(trickle, t0, 5000)]);
      // the sweep runs once a second: closed after the timeout, within a second more
      for (const ms of [a, b]) {
        expect(ms).toBeGreaterThanOrEqual(900);
        expect(ms).toBeLessThan(3000);
      }
      expect(trickle.status).toBe(0);
      expect(s.logs).toContain('no TLS handshake or WebSocket upgrade in time, closing');
    } finally {
      clearInterval(timer);
    }
    const t1 = Date.now();
    const upgraded = await RawWs.upgraded(s.ws);
    const c = await closesAfter(upgraded, t1, 5000);
    expect(c).toBeGreaterThanOrEqual(900);
    expect(c).toBeLessThan(3000);
    await expect.poll(() => s.broker.connections.size + s.broker.pendingSockets.size).toBe(0);
  });

  it('sockets not yet upgraded count in max_connections, on every listener', async () => {
    const p1 = await RawWs.open(s.ws);
    const p2 = await RawWs.open(s.ws);
    p2.write('GET /mqtt HTTP/1.1\r\nHost: x\r\n'); // half an upgrade request
    // A third socket on either listener is refused while those two wait.
    await expect.poll(() => s.broker.pendingSockets.size).toBe(2);
    const tcp = await RawClient.open(s.tcp);
    expect(await tcp.next()).toBeNull();
    const third = await RawWs.open(s.ws);
    await third.waitClosed();
    expect(
      s.logs.filter((m) => m === 'connection refused: max_connections reached').length,
    ).toBeGreaterThanOrEqual(2);
    await expect(
      mqtt.connectAsync(`ws://127.0.0.1:${s.ws}`, { ...GOOD, reconnectPeriod: 0, connectTimeout: 2000 }),
    ).rejects.toBeTruthy();
    // One leaves: a client gets in.
    p1.close();
    await expect.poll(() => s.broker.pendingSockets.size).toBe(1);
    const c = await mqtt.connectAsync(`ws://127.0.0.1:${s.ws}`, { ...GOOD, reconnectPeriod: 0 });
    expect(c.connected).toBe(true);
    expect(s.broker.connections.size + s.broker.pendingSockets.size).toBe(2);
    await c.endAsync();
    p2.close();
    await expect.poll(() => s.broker.pendingSockets.size).toBe(0);
  });
});

describe('issue 12.4: hostile WebSocket input before authentication', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({ connectTimeoutSeconds: 2 });
  });
  afterAll(() => s.broker.close());

  async function httpRefused(request: string | Buffer, status: number | null): Promise<void> {
    const ws = await RawWs.open(s.ws);
    ws.write(request);
    const got = await ws.response();
    if (status !== null) expect(got).toBe(status);
    await ws.waitClosed();
    await expectAlive(s.ws);
  }

  it('malformed upgrade requests: answered 4xx and closed', async () => {
    await httpRefused(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), 400);
    await httpRefused('\x00\xff\xfe garbage\r\n\r\n', 400);
    await httpRefused(upgradeRequest({ 'Sec-WebSocket-Key': '' }), 400);
    await httpRefused(upgradeRequest({ 'Sec-WebSocket-Key': 'short' }), 400);
    await httpRefused(upgradeRequest({ 'Sec-WebSocket-Version': '99' }), 400);
    await httpRefused(upgradeRequest({}, 'POST'), 405);
    await httpRefused(upgradeRequest({ 'Sec-WebSocket-Protocol': 'mqtt,,;' }), 400);
    await httpRefused(upgradeRequest({ 'X-Filler': 'a'.repeat(20_000) }), 431);
    // not an upgrade: told so, and the socket is not kept alive for more requests
    await httpRefused('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 426);
  });

  it('a subprotocol list without mqtt is refused; one with mqtt is accepted', async () => {
    await httpRefused(upgradeRequest({ 'Sec-WebSocket-Protocol': 'chat' }), 400);
    await httpRefused(upgradeRequest({ 'Sec-WebSocket-Protocol': 'chat, superchat' }), 400);
    const ws = await RawWs.upgraded(s.ws, { 'Sec-WebSocket-Protocol': 'chat, mqtt' });
    expect(ws.responseHead).toMatch(/\r\nSec-WebSocket-Protocol: mqtt/i);
    ws.close();
  });

  it('a CONNECT in 1-byte fragments is legal; trickled slower than the connect timeout it is closed', async () => {
    const bytes = encodeConnect();
    const fast = await RawWs.upgraded(s.ws);
    for (let i = 0; i < bytes.length; i++)
      fast.write(
        frame(i === 0 ? OP.binary : OP.continuation, bytes.subarray(i, i + 1), {
          fin: i === bytes.length - 1,
        }),
      );
    expect(await fast.nextPacket()).toMatchObject({ type: 'connack', reasonCode: 0 });
    fast.close();

    const slow = await RawWs.upgraded(s.ws);
    const t0 = Date.now();
    let i = 0;
    const timer = setInterval(() => {
      if (i < bytes.length && !slow.isClosed) {
        slow.write(
          frame(i === 0 ? OP.binary : OP.continuation, bytes.subarray(i, i + 1), {
            fin: i === bytes.length - 1,
          }),
        );
        i++;
      }
    }, 200);
    try {
      const ms = await closesAfter(slow, t0, 6000);
      expect(ms).toBeGreaterThanOrEqual(1900);
      expect(i).toBeLessThan(bytes.length);
    } finally {
      clearInterval(timer);
    }
    await expectAlive(s.ws);
  });

  it('a flood of 1-byte fragments that never ends the message is cut off', async () => {
    const ws = await RawWs.upgraded(s.ws);
    const one = frame(OP.continuation, new Uint8Array([0]), { fin: false });
    ws.write(frame(OP.binary, new Uint8Array([0x10]), { fin: false }));
    let sent = 0;
    while (sent < 40_000 && !ws.isClosed) {
      const batch = Buffer.concat(new Array(1000).fill(one));
      sent += 1000;
      if (!ws.write(batch)) await new Promise<void>((r) => ws.socket.once('drain', r).once('close', r));
    }
    await ws.waitClosed();
    await expectAlive(s.ws);
  });

  it('a ping flood before CONNECT is cut off at the pre-CONNECT allowance', async () => {
    const ws = await RawWs.upgraded(s.ws);
    const ping = frame(OP.ping, new Uint8Array(125));
    let sent = 0;
    while (sent < 40_000 && !ws.isClosed) {
      sent += 500;
      if (!ws.write(Buffer.concat(new Array(500).fill(ping))))
        await new Promise<void>((r) => ws.socket.once('drain', r).once('close', r));
    }
    await ws.waitClosed();
    expect(sent).toBeLessThan(40_000);
    await expectAlive(s.ws);
  });

  it('a text frame carrying a CONNECT is refused (binary frames only) with no CONNACK', async () => {
    const ws = await RawWs.upgraded(s.ws);
    ws.answerClose = false; // and a peer that never answers the close frame: cut after 2 s
    const t0 = Date.now();
    // Anonymous 3.1.1 CONNECT: every byte ASCII, so the frame is valid UTF-8 text. Read as
    // MQTT it would be answered by a CONNACK refusal (anonymous access is off).
    const anonymous = encode(
      { type: 'connect', protocolVersion: 4, clientId: 'txt', clean: true, keepalive: 30 },
      4,
    );
    expect(anonymous.every((b) => b < 0x80)).toBe(true);
    ws.write(frame(OP.text, anonymous));
    expect(await ws.nextPacket()).toBeNull();
    expect(ws.closeCode).toBe(1003);
    expect(Date.now() - t0).toBeLessThan(3500);
    await expectAlive(s.ws);
  });

  it('oversized and fragmented control frames, unmasked frames, reserved bits: closed', async () => {
    const cases: Array<[string, Buffer]> = [
      ['ping of 126 bytes', frame(OP.ping, new Uint8Array(126))],
      ['close of 200 bytes', frame(OP.close, new Uint8Array(200))],
      ['fragmented ping', frame(OP.ping, new Uint8Array(4), { fin: false })],
      ['unmasked binary', frame(OP.binary, encodeConnect(), { mask: false })],
      ['RSV1 without an extension', frame(OP.binary, encodeConnect(), { rsv: 4 })],
      ['reserved opcode 3', frame(3, new Uint8Array(1))],
      ['continuation with nothing to continue', frame(OP.continuation, new Uint8Array(1))],
    ];
    for (const [name, bytes] of cases) {
      const ws = await RawWs.upgraded(s.ws);
      ws.write(bytes);
      await ws.waitClosed().catch((err: Error) => {
        throw new Error(`${name}: ${err.message}`);
      });
      expect(
        ws.frames.some((f) => f.opcode === OP.binary),
        name,
      ).toBe(false);
    }
    await expectAlive(s.ws);
  });

  it('a bad password over WebSocket: CONNACK refusal, closed', async () => {
    const ws = await RawWs.upgraded(s.ws);
    ws.sendPacket(ws.connectPacket({ protocolVersion: 5, username: USER, password: Buffer.from('nope') }));
    expect(await ws.nextPacket()).toMatchObject({ type: 'connack', reasonCode: 0x87 });
    await ws.waitClosed();
    await expectAlive(s.ws);
  });
});

describe('issue 12.4: SIGTERM with a half-open upgrade (the broker-lite process)', () => {
  const BIN = fileURLToPath(new URL('../bin/broker-lite.js', import.meta.url));

  it('exits 0 within 5 s while sockets wait to upgrade (connect timeout 10 s)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bl-ws-term-'));
    const conf = join(dir, 'broker.conf');
    writeFileSync(
      conf,
      'listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\nlog_dest stderr\nsys_interval 0\n',
    );
    const child = spawn(process.execPath, [BIN, '-c', conf, '--log-format', 'json'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const log: JsonLogState<Record<string, unknown>> = { lines: [], waiters: [], stderrTail: '' };
    followJsonLog(child, log);
    const sockets: RawWs[] = [];
    try {
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no ready line: ${log.stderrTail}`)), 20_000);
        log.waiters.push({
          pred: (l) => l.msg === 'ready',
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
      const port = Number(ready.ports);
      // Half an upgrade request, and a socket that sends nothing.
      const half = await RawWs.open(port);
      half.write('GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
      const silent = await RawWs.open(port);
      sockets.push(half, silent);
      // Accepted in order: once a later socket is answered, the broker holds both.
      const probe = await RawWs.open(port);
      probe.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(await probe.response()).toBe(426);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await Promise.race([
        exited,
        new Promise<string>((r) => setTimeout(() => r('still running after 5 s'), 5000).unref()),
      ]);
      expect(code).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
      await Promise.all([half.waitClosed(), silent.waitClosed()]);
      expect(half.status).toBe(0);
    } finally {
      for (const w of sockets) w.close();
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);
});

/** The bytes of a 3.1.1 CONNECT with good credentials. */
function encodeConnect(): Uint8Array {
  return encode(
    { type: 'connect', protocolVersion: 4, clientId: 'frag', clean: true, keepalive: 30, ...GOOD },
    4,
  );
}

describe('issue 12.2 + 12.4: what WebSocket clients hold before CONNACK is in the unauthenticated budget', () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({ maxUnauthenticatedPacketSize: 64 * 1024, maxUnauthenticatedBytes: 1024 * 1024 });
  });
  afterAll(() => s.broker.close());

  /** Upgrades and starts one binary frame announcing `declared` bytes, then sends `send` of them. */
  async function partialFrame(declared: number, send: number): Promise<RawWs> {
    const ws = await RawWs.upgraded(s.ws);
    ws.write(frame(OP.binary, new Uint8Array(0), { declaredLength: declared }));
    const plain = new Uint8Array(send);
    plain.set([0x10, 0xff, 0xff, 0x0f]);
    ws.write(maskedChunk(plain, 0));
    return ws;
  }

  it('a frame before CONNECT is bounded by max_unauthenticated_packet_size (plus framing), not 1 MiB', async () => {
    const ws = await partialFrame(400 * 1024, 300 * 1024);
    await ws.waitClosed(5000);
    expect(ws.isClosed).toBe(true);
    await expectAlive(s.ws);
  });

  it('partial frames held by ws count against max_unauthenticated_bytes: the biggest holders go', async () => {
    // 16 connections each holding 100 KiB of an unfinished frame: 1.6 MiB against a 1 MiB budget.
    const held: RawWs[] = [];
    for (let i = 0; i < 16; i++) held.push(await partialFrame(120 * 1024, 100 * 1024));
    await expect
      .poll(() => held.filter((w) => w.isClosed).length, { timeout: 5000 })
      .toBeGreaterThanOrEqual(6);
    expect(s.broker.stats().unauthenticatedBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(s.broker.stats().unauthenticatedBytesPeak).toBeLessThanOrEqual(1024 * 1024 + 128 * 1024);
    // An ordinary client still gets in meanwhile.
    await expectAlive(s.ws);
    for (const w of held) w.close();
    await expect.poll(() => s.broker.stats().unauthenticatedBytes).toBe(0);
  });
});
