/**
 * Issue 18.2: what an idle connection holds. The figures themselves are measured in
 * `npm run bench -- --only conns`; these tests keep the causes found there from coming back.
 */
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { encode } from '@mqtt-edge/codec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../src/index.ts';
import { PendingSockets } from '../src/pending-sockets.ts';
import { frame, OP, upgradeRequest } from './helpers/ws-raw.ts';

describe('issue 18.2: per-connection memory', () => {
  it('issue 18.2: an assigned client id is one flat string, not a tree of concatenations', () => {
    const child = fileURLToPath(new URL('./idle-memory.child.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', child], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const { bytesPerId } = JSON.parse(r.stdout) as { bytesPerId: number };
    // 'auto-' + a UUID, flat: ~56 bytes of string and an array slot; randomUUID()'s own result
    // is ~15 cons strings (~480 bytes) that the session would keep for the connection's life.
    // Measured 117-134 with the heap's own noise (the array's growth, randomUUID's batch): the
    // bound sits halfway between that and the tree, so only the tree fails it.
    expect(bytesPerId).toBeLessThan(300);
  });

  it('issue 18.2: an idle WebSocket connection holds no more JS heap than a TCP one', () => {
    const child = fileURLToPath(new URL('./ws-idle-memory.child.ts', import.meta.url));
    const r = spawnSync(
      process.execPath,
      ['--conditions=mqtt-edge-source', '--expose-gc', '--import', 'tsx', child],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.stderr).toBe('');
    const { tcp, ws } = JSON.parse(r.stdout) as { tcp: number; ws: number };
    console.log(`JS heap per idle connection: TCP ${tcp.toFixed(0)} B, WebSocket ${ws.toFixed(0)} B`);
    // With ws's WebSocket, Receiver (a stream.Writable) and Sender it was ~900 bytes more than
    // TCP (3,950-4,016 against 3,076-3,118 here); framing on the socket itself, 550-700 less.
    expect(ws - tcp).toBeLessThan(300);
  }, 90_000);

  it('issue 18.2: a socket that became a connection keeps no listener of its pending time', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const socket = await accepted;
    const before = socket.listenerCount('close');
    const pending = new PendingSockets();
    expect(pending.add(socket, 0)).toBe(true);
    expect(pending.size).toBe(1);
    pending.upgraded(socket);
    expect(pending.size).toBe(0);
    // its close listener (a closure over the 4-tuple key and the entry) would live as long as
    // the connection
    expect(socket.listenerCount('close')).toBe(before);
    client.destroy();
    socket.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  describe('a WebSocket connection', () => {
    let broker: Broker;
    beforeAll(async () => {
      broker = new Broker({
        listeners: [{ port: 0, host: '127.0.0.1', protocol: 'websockets' }],
        sysInterval: 0,
      });
      await broker.listen();
    });
    afterAll(() => broker.close());

    it('issue 18.2: keeps no per-connection extras for its peer address, still told on demand', async () => {
      const s = net.connect(broker.addresses[0].port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      let got = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
      });
      s.write(upgradeRequest());
      s.write(
        frame(
          OP.binary,
          encode({ type: 'connect', protocolVersion: 4, clientId: 'ws-idle', clean: true, keepalive: 0 }),
        ),
      );
      // the CONNACK, in a binary frame after the 101
      while (got.indexOf(Buffer.from([0x82, 4, 0x20, 2, 0, 0])) < 0)
        await new Promise((r) => setTimeout(r, 10));
      const [conn] = broker.connections;
      expect(conn.clientId).toBe('ws-idle');
      expect((conn as unknown as { x: unknown }).x).toBeNull();
      expect(conn.remote).toBe(`127.0.0.1:${s.localPort}`);
      s.destroy();
    });
  });
});
