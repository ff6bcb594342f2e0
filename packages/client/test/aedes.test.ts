/**
 * The Node client against aedes, in process: over TCP, and over WebSocket (the `ws` package
 * serves it; the client uses the global WebSocket where there is one, else `ws`).
 */
import { once } from 'node:events';
import https from 'node:https';
import net from 'node:net';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebSocketStream, WebSocketServer, WebSocket as WsWebSocket } from 'ws';
import { HAS_OPENSSL, TestPki } from '../../../test/helpers/tls.ts';
import { type ClientOptions, connect, type MqttClient } from '../src/node/index.ts';

let broker: Aedes;
let tcp: net.Server;
let wss: WebSocketServer;
let tcpPort = 0;
let wsPort = 0;

beforeAll(async () => {
  broker = await Aedes.createBroker();
  tcp = net.createServer(broker.handle);
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  tcpPort = (tcp.address() as net.AddressInfo).port;
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  wsPort = (wss.address() as net.AddressInfo).port;
  wss.on('connection', (ws, req) => {
    expect(ws.protocol).toBe('mqtt');
    broker.handle(createWebSocketStream(ws) as unknown as net.Socket, req);
  });
});

afterAll(async () => {
  for (const ws of wss?.clients ?? []) ws.terminate();
  await new Promise<void>((r) => (wss ? wss.close(() => r()) : r()));
  await new Promise<void>((r) => (tcp ? tcp.close(() => r()) : r()));
  await new Promise<void>((r) => (broker ? broker.close(() => r()) : r()));
});

async function pair(url: string, options: ClientOptions) {
  const sub = connect(url, { ...options, clientId: `s-${Math.random().toString(36).slice(2)}` });
  const pub = connect(url, { ...options, clientId: `p-${Math.random().toString(36).slice(2)}` });
  await Promise.all([once(sub, 'connect'), once(pub, 'connect')]);
  return { sub, pub };
}

async function roundTrip(sub: MqttClient, pub: MqttClient, prefix: string) {
  const got: string[] = [];
  const done = new Promise<void>((r) =>
    sub.on('message', (t, p, pk) => {
      got.push(`${t}:${new TextDecoder().decode(p)}:${pk.qos}`);
      if (got.length === 30) r();
    }),
  );
  const s = await sub.subscribe(`${prefix}/#`, { qos: 2 });
  expect(s.reasonCodes).toEqual([2]);
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      pub.publish(`${prefix}/${i % 3}`, `${i}`, { qos: (i % 3) as 0 | 1 | 2 }),
    ),
  );
  expect(results.filter((r) => r.packetId !== undefined)).toHaveLength(20);
  await done;
  expect(got.sort()).toEqual(Array.from({ length: 30 }, (_, i) => `${prefix}/${i % 3}:${i}:${i % 3}`).sort());
}

describe('aedes', () => {
  it('3.1.1 over TCP: QoS 0/1/2 both ways', async () => {
    const { sub, pub } = await pair(`mqtt://127.0.0.1:${tcpPort}`, { protocolVersion: 4 });
    await roundTrip(sub, pub, 'tcp');
    await Promise.all([sub.end(), pub.end()]);
  });

  it('3.1.1 over WebSocket (ws package)', async () => {
    const { sub, pub } = await pair(`ws://127.0.0.1:${wsPort}/mqtt`, { protocolVersion: 4, wsModule: 'ws' });
    await roundTrip(sub, pub, 'ws');
    await Promise.all([sub.end(), pub.end()]);
  });

  it('WebSocket through a global WebSocket (browser-style API) when the runtime has one', async () => {
    const g = globalThis as { WebSocket?: unknown };
    const had = g.WebSocket;
    let constructed = 0;
    // Node 20 has no global WebSocket: stand one in (ws implements the browser API).
    g.WebSocket = class extends WsWebSocket {
      constructor(url: string, protocols: string[]) {
        super(url, protocols);
        constructed++;
      }
    };
    try {
      const { sub, pub } = await pair(`ws://127.0.0.1:${wsPort}/mqtt`, { protocolVersion: 4 });
      expect(constructed).toBe(2);
      await roundTrip(sub, pub, 'gws');
      await Promise.all([sub.end(), pub.end()]);
    } finally {
      g.WebSocket = had;
    }
  });

  it('reconnects after the server drops the connection, and delivers what was queued', async () => {
    const { sub, pub } = await pair(`mqtt://127.0.0.1:${tcpPort}`, {
      protocolVersion: 4,
      reconnectPeriod: 20,
      reconnectMaxDelay: 50,
    });
    await sub.subscribe('drop/#', { qos: 1 });
    const got = new Set<string>();
    const all = new Promise<void>((r) =>
      sub.on('message', (_t, p) => {
        got.add(new TextDecoder().decode(p));
        if (got.size === 50) r();
      }),
    );
    const offline = once(pub, 'offline');
    const reconnect = once(pub, 'reconnect');
    // aedes has no "kick": close the client's socket from the server side.
    for (const c of Object.values(
      (broker as unknown as { clients: Record<string, { id: string; close(): void }> }).clients,
    ))
      if (c.id === pub.session.clientId) c.close();
    await offline;
    const proms = Array.from({ length: 50 }, (_, i) => pub.publish('drop/x', `${i}`, { qos: 1 }));
    await reconnect;
    await Promise.all(proms);
    await all;
    expect(got.size).toBe(50);
    await Promise.all([sub.end(), pub.end()]);
  });

  it('reconnect() brings an ended client back, also when called while end() is closing', async () => {
    const { sub, pub } = await pair(`mqtt://127.0.0.1:${tcpPort}`, { protocolVersion: 4 });
    await sub.subscribe('again/#', { qos: 1 });
    const got: string[] = [];
    const last = new Promise<void>((r) =>
      sub.on('message', (_t, p) => {
        got.push(new TextDecoder().decode(p));
        if (got.at(-1) === 'x') r();
      }),
    );
    await pub.end();
    await expect(pub.publish('again/x', 'lost', { qos: 1 })).rejects.toMatchObject({ code: 'CLIENT_ENDED' });
    let connected = once(pub, 'connect');
    pub.reconnect();
    await connected;
    await pub.publish('again/x', 'one', { qos: 1 });
    // reconnect() while the graceful close is still in flight waits for it, then connects
    const ended = pub.end();
    connected = once(pub, 'connect');
    pub.reconnect();
    await ended;
    await connected;
    await pub.publish('again/x', 'two', { qos: 1 });
    await sub.publish('again/done', 'x', { qos: 1 });
    await last;
    expect(got).toEqual(['one', 'two', 'x']);
    await Promise.all([sub.end(), pub.end()]);
  });
});

if (!HAS_OPENSSL) console.warn('aedes.test.ts: openssl not found, skipping the wss:// test');

describe.skipIf(!HAS_OPENSSL)('aedes over wss://', () => {
  let pki: TestPki;
  let server: https.Server;
  let secure: WebSocketServer;
  let port = 0;
  beforeAll(async () => {
    pki = new TestPki('mqtt-wss-').ca().leaf('srv', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1' });
    server = https.createServer({
      key: pki.read('srv.key'),
      cert: pki.read('srv.crt'),
    });
    secure = new WebSocketServer({ server });
    secure.on('connection', (ws, req) =>
      broker.handle(createWebSocketStream(ws) as unknown as net.Socket, req),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    for (const ws of secure?.clients ?? []) ws.terminate();
    await new Promise<void>((r) => (secure ? secure.close(() => r()) : r()));
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    pki?.remove();
  });

  it('connects with the test CA and server name, QoS 0/1/2 both ways', async () => {
    const ca = pki.read('ca.crt');
    const { sub, pub } = await pair(`wss://127.0.0.1:${port}/mqtt`, {
      protocolVersion: 4,
      ca,
      servername: 'localhost',
    });
    await roundTrip(sub, pub, 'wss');
    await Promise.all([sub.end(), pub.end()]);
  });

  it('refuses a server certificate it cannot verify', async () => {
    const c = connect(`wss://127.0.0.1:${port}/mqtt`, {
      rejectUnauthorized: true,
      wsModule: 'ws',
      reconnectPeriod: 10,
    });
    let connected = false;
    c.on('connect', () => {
      connected = true;
    });
    await once(c, 'reconnect');
    expect(connected).toBe(false);
    await c.end({ force: true });
  });
});
