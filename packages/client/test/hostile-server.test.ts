/** The Node client against a raw TCP server that misbehaves: typed errors, a close, a reconnect. */
import type { EventEmitter } from 'node:events';
import net from 'node:net';
import { MqttError } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../src/node/index.ts';

let server: net.Server | null = null;
const sockets = new Set<net.Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

/** events.once rejects when 'error' fires first; here errors are expected and collected. */
function once(emitter: EventEmitter, event: string): Promise<unknown[]> {
  return new Promise((resolve) => emitter.once(event, (...args: unknown[]) => resolve(args)));
}

/** A server running `script` for each connection; resolves its port. */
async function serve(script: (socket: net.Socket, n: number) => void): Promise<number> {
  let n = 0;
  server = net.createServer((s) => {
    s.on('error', () => {});
    sockets.add(s);
    script(s, ++n);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

const CONNACK_OK_V5 = [0x20, 0x03, 0x00, 0x00, 0x00];

describe('hostile server', () => {
  it.each([
    ['garbage after CONNACK', [0x00, 0xff, 0xff], 0x81],
    ['PUBACK for an id never used', [0x40, 0x03, 0x00, 0x07, 0x00], 0x82],
    ['a PUBLISH of 300 MB announced', [0x30, 0xff, 0xff, 0xff, 0x7f], 0x95],
  ])('%s: error event, DISCONNECT with the reason, reconnect', async (_name, bytes, reason) => {
    const received: number[][] = [];
    const port = await serve((s, n) => {
      s.once('data', () => {
        s.write(Uint8Array.from(CONNACK_OK_V5));
        if (n === 1) s.write(Uint8Array.from(bytes));
      });
      s.on('data', (d) => received.push([...d]));
    });
    const c = connect(`mqtt://127.0.0.1:${port}`, {
      protocolVersion: 5,
      maximumPacketSize: 1 << 20,
      reconnectPeriod: 10,
      reconnectMaxDelay: 20,
    });
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    const [closed] = (await once(c, 'close')) as [{ reasonCode: number }];
    expect(closed.reasonCode).toBe(reason);
    expect(errors[0]).toBeInstanceOf(MqttError);
    expect((errors[0] as MqttError).reasonCode).toBe(reason);
    await once(c, 'connect'); // the second connection is a good one
    expect(received.some((d) => d[0] === 0xe0 && d[2] === reason)).toBe(true);
    await c.end();
  });

  it('a server that never answers CONNECT: CONNECT_TIMEOUT, then a retry', async () => {
    let connections = 0;
    const port = await serve(() => {
      connections++;
    });
    const c = connect(`mqtt://127.0.0.1:${port}`, { connectTimeout: 200, reconnectPeriod: 10 });
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    await once(c, 'close');
    expect((errors[0] as MqttError).code).toBe('CONNECT_TIMEOUT');
    await once(c, 'reconnect');
    await c.end({ force: true });
    expect(connections).toBeGreaterThanOrEqual(1);
  });

  it('keepalive: a server that goes silent is declared dead after 1.5x keepalive', async () => {
    const port = await serve((s) => {
      s.once('data', () => s.write(Uint8Array.from([0x20, 0x02, 0x00, 0x00])));
    });
    const c = connect(`mqtt://127.0.0.1:${port}`, { keepalive: 1, reconnect: false });
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    await once(c, 'connect');
    const t0 = Date.now();
    await once(c, 'close');
    const elapsed = Date.now() - t0;
    expect((errors[0] as MqttError).code).toBe('KEEPALIVE_TIMEOUT');
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(3000);
  });
});
