/**
 * Issue 12 (found while fixing 12.4): a TLS MQTT listener's sockets in their handshake were
 * neither counted in max_connections nor timed out (Node's own handshake timeout is 120 s), so a
 * few hundred sockets that never finish a handshake held the broker's descriptors. They are now
 * pending sockets, like a WebSocket listener's before its upgrade.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAS_OPENSSL, serverAndClientPki, type TestPki } from '../../../test/helpers/tls.ts';
import { type ConfiguredBroker, startConfigured, tlsConnect } from './helpers/config-broker.ts';

if (!HAS_OPENSSL) console.warn('openssl not installed: TLS handshake limit tests skipped');

function openRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

function closed(s: net.Socket): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    if (s.destroyed) resolve(0);
    s.on('error', () => {});
    s.once('close', () => resolve(Date.now() - t0));
  });
}

describe.skipIf(!HAS_OPENSSL)('issue 12: sockets in a TLS handshake on an MQTT listener', () => {
  let pki: TestPki;
  let b: ConfiguredBroker;
  beforeAll(async () => {
    pki = serverAndClientPki('bl-tls-handshake-');
    b = await startConfigured(
      pki.dir,
      [
        'allow_anonymous true',
        'max_connections 2',
        'listener 0 127.0.0.1',
        `certfile ${pki.file('server.crt')}`,
        `keyfile ${pki.file('server.key')}`,
        `cafile ${pki.file('ca.crt')}`,
        '',
      ].join('\n'),
      { connectTimeoutSeconds: 1 },
    );
  });
  afterAll(() => b?.close());

  it('count in max_connections and are closed at the connect timeout', async () => {
    const port = b.ports[0];
    // Two sockets that never send a ClientHello take both places.
    const a = await openRaw(port);
    const c = await openRaw(port);
    const aClosed = closed(a);
    const cClosed = closed(c);
    await expect.poll(() => b.broker.pendingSockets.size).toBe(2);
    const third = await openRaw(port);
    // refused at once, long before the connect timeout
    expect(await closed(third)).toBeLessThan(900);
    expect(b.logs.some((l) => l.message === 'connection refused: max_connections reached')).toBe(true);
    // the sweep runs once a second: closed after the 1 s timeout, within a second more
    const [ta, tc] = await Promise.all([aClosed, cClosed]);
    expect(ta).toBeGreaterThanOrEqual(500);
    expect(ta).toBeLessThan(3000);
    expect(tc).toBeLessThan(3000);
    expect(b.broker.pendingSockets.size).toBe(0);
    // A real client gets in afterwards and, once connected, is no longer pending.
    const { client, connack } = await tlsConnect(port, { ca: pki.read('ca.crt') }, { clientId: 'ok' });
    expect(connack?.reasonCode).toBe(0);
    expect(b.broker.pendingSockets.size).toBe(0);
    expect(b.broker.connections.size).toBe(1);
    await client.disconnect();
  });

  it('a handshake trickled slower than the connect timeout is cut', async () => {
    const port = b.ports[0];
    const raw = await openRaw(port);
    const done = closed(raw);
    // A TLS record header announcing a ClientHello, then one byte at a time.
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    let i = 0;
    const timer = setInterval(() => {
      if (!raw.destroyed) raw.write(hello.subarray(i % hello.length, (i % hello.length) + 1));
      i++;
    }, 100);
    try {
      const ms = await done;
      expect(ms).toBeGreaterThanOrEqual(500);
      expect(ms).toBeLessThan(3000);
    } finally {
      clearInterval(timer);
    }
    expect(b.logs.some((l) => l.message === 'no TLS handshake or WebSocket upgrade in time, closing')).toBe(
      true,
    );
  });
});
