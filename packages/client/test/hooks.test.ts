/**
 * The client hooks a store-and-forward bridge needs, through the public API only: failover
 * across servers (and a resolveServer hook), the transport error of an attempt that failed
 * before MQTT, Mosquitto's bridge bit with its fallback, checkServerIdentity (the chain still
 * checked), and enqueue() while no connection is up or coming.
 */
import net from 'node:net';
import tls from 'node:tls';
import { encode, type Packet, PacketParser } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { HAS_OPENSSL, TestPki } from '../../../test/helpers/tls.ts';
import { ConnackError } from '../src/core/errors.ts';
import type { ClosedEvent } from '../src/core/events.ts';
import { setBridgeBit } from '../src/core/session.ts';
import { connect, MqttClient } from '../src/node/index.ts';
import { Peer } from './helpers/peer.ts';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

/** A port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

interface FakeBroker {
  port: number;
  /** Protocol level byte of each CONNECT, as received (bridge bit included). */
  levels: number[];
  publishes: string[];
  sockets: net.Socket[];
}

/**
 * A 3.1.1 broker just big enough for these tests: CONNACK (refusing a bridge-marked CONNECT
 * with return code 1 when `refuseMarker`), PUBACK for QoS 1. Over TLS when `secure` is given.
 */
async function fakeBroker(
  opts: { refuseMarker?: boolean; secure?: tls.TlsOptions } = {},
): Promise<FakeBroker> {
  const fb: FakeBroker = { port: 0, levels: [], publishes: [], sockets: [] };
  const onSocket = (s: net.Socket): void => {
    fb.sockets.push(s);
    s.on('error', () => {});
    let parser: PacketParser | null = null;
    s.on('data', (chunk: Buffer) => {
      const bytes = new Uint8Array(chunk);
      if (parser === null) {
        // "MQTT" with a one-byte remaining length: the level is byte 8.
        const level = bytes[8];
        fb.levels.push(level);
        if ((level & 0x80) !== 0 && opts.refuseMarker) {
          s.end(Uint8Array.from([0x20, 2, 0, 1]));
          return;
        }
        bytes[8] = level & 0x7f;
        parser = new PacketParser({ protocolVersion: 4 });
      }
      parser.push(bytes, (p: Packet) => {
        if (p.type === 'connect')
          s.write(encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, 4));
        else if (p.type === 'publish') {
          fb.publishes.push(p.topic);
          if (p.qos === 1) s.write(encode({ type: 'puback', packetId: p.packetId! }, 4));
        } else if (p.type === 'pingreq') s.write(encode({ type: 'pingresp' }, 4));
      });
    });
  };
  const server =
    opts.secure !== undefined ? tls.createServer(opts.secure, onSocket) : net.createServer(onSocket);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fb.port = (server.address() as net.AddressInfo).port;
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of fb.sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return fb;
}

/** Polls a state no event reports (the outbox emptied by acks), bounded in time. */
async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function track(c: MqttClient): MqttClient {
  closers.push(() => c.end({ force: true }));
  return c;
}

const once = <T>(c: MqttClient, event: 'connect' | 'end' | 'transportError' | 'error'): Promise<T> =>
  new Promise<T>((r) => c.once(event, ((v: T) => r(v)) as never));

describe('failover across servers', () => {
  it('moves on after a failed attempt and stays on a server that worked', async () => {
    const dead = await deadPort();
    const live = await fakeBroker();
    const c = track(
      connect({
        servers: [
          { host: '127.0.0.1', port: dead },
          { host: '127.0.0.1', port: live.port },
        ],
        reconnectPeriod: 20,
        keepalive: 0,
      }),
    );
    const errors: Error[] = [];
    c.on('transportError', (e) => errors.push(e));
    await once(c, 'connect');
    expect(c.server).toEqual({ host: '127.0.0.1', port: live.port });
    expect((errors[0] as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    // The connection drops: the next attempt goes to the same server, not back to the dead one.
    const again = once(c, 'connect');
    live.sockets[0].destroy();
    await again;
    expect(live.levels.length).toBe(2);
    expect(errors.length).toBe(1);
  });

  it('resolveServer is asked before every attempt and wins over host/port', async () => {
    const live = await fakeBroker();
    const asked: number[] = [];
    const c = track(
      connect({
        host: '127.0.0.1',
        port: await deadPort(), // never used: the hook answers
        resolveServer: () => {
          asked.push(asked.length);
          return { host: '127.0.0.1', port: live.port };
        },
        reconnectPeriod: 10,
        keepalive: 0,
      }),
    );
    await once(c, 'connect');
    expect(asked.length).toBe(1);
    const again = once(c, 'connect');
    live.sockets[0].destroy();
    await again;
    expect(asked.length).toBe(2);
  });

  it('a throwing resolveServer is reported, not a crash; bad server lists are refused up front', async () => {
    const live = await fakeBroker();
    let n = 0;
    const c = track(
      connect({
        resolveServer: () => {
          if (++n === 2) throw new Error('no address today');
          return { host: '127.0.0.1', port: live.port };
        },
        reconnect: false,
        keepalive: 0,
      }),
    );
    await once(c, 'connect');
    const ended = once(c, 'end');
    live.sockets[0].destroy();
    await ended;
    const err = new Promise<Error>((r) => c.once('error', r));
    c.reconnect();
    expect((await err).message).toBe('no address today');
    // That attempt went where the last one went.
    await once(c, 'connect');
    expect(live.levels.length).toBe(2);
    expect(
      () =>
        new MqttClient({
          resolveServer: () => {
            throw new Error('at once');
          },
        }),
    ).toThrow('at once');
    expect(() => new MqttClient({ servers: [] })).toThrow(RangeError);
    expect(() => new MqttClient({ servers: [{ host: '' }] })).toThrow(RangeError);
    expect(() => new MqttClient({ servers: [{ host: 'h', port: 70_000 }] })).toThrow(RangeError);
  });
});

describe('transportError', () => {
  it('carries the socket error of an attempt that never reached MQTT, before end', async () => {
    const c = track(connect({ host: '127.0.0.1', port: await deadPort(), reconnect: false }));
    const seen: string[] = [];
    c.on('transportError', (e) => seen.push(`transportError:${(e as NodeJS.ErrnoException).code}`));
    c.on('close', () => seen.push('close'));
    await once(c, 'end');
    // No MQTT close event: the session never started, the reason is in transportError only.
    expect(seen).toEqual(['transportError:ECONNREFUSED']);
  });

  it('a handshake that never completes ends with HANDSHAKE_TIMEOUT', async () => {
    const port = await mutePort();
    const c = track(
      connect({
        protocol: 'mqtts',
        host: '127.0.0.1',
        port,
        connectTimeout: 150,
        reconnect: false,
      }),
    );
    const ended = once(c, 'end');
    const err = await once<Error & { code?: string }>(c, 'transportError');
    expect(err.code).toBe('HANDSHAKE_TIMEOUT');
    await ended;
  });

  it('issue 16.3: handshakeTimeout times the handshake alone, shorter than connectTimeout', async () => {
    const port = await mutePort();
    const started = Date.now();
    const c = track(
      connect({
        protocol: 'mqtts',
        host: '127.0.0.1',
        port,
        connectTimeout: 20_000,
        handshakeTimeout: 150,
        reconnect: false,
      }),
    );
    const err = await once<Error & { code?: string }>(c, 'transportError');
    expect(err.code).toBe('HANDSHAKE_TIMEOUT');
    expect(err.message).toContain('within 150 ms');
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

/** A port that accepts TCP and says nothing: a TLS handshake there hangs. */
async function mutePort(): Promise<number> {
  const held: net.Socket[] = [];
  const mute = net.createServer((s) => {
    s.on('error', () => {});
    held.push(s);
  });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of held) s.destroy();
        mute.close(() => r());
      }),
  );
  return (mute.address() as net.AddressInfo).port;
}

function levelOf(peer: Peer): number {
  const bytes = peer.session.takeOutput()!;
  return bytes[2 + 2 + ((bytes[2] << 8) | bytes[3])];
}

describe('bridgeMode (Mosquitto bridge bit)', () => {
  it('marks 3.1.1 and 3.1 CONNECTs, never 5.0 or without the option', () => {
    const cases: Array<[3 | 4 | 5, boolean, number]> = [
      [4, true, 0x84],
      [3, true, 0x83],
      [5, true, 5],
      [4, false, 4],
    ];
    for (const [v, bridgeMode, level] of cases) {
      const peer = new Peer({ protocolVersion: v, bridgeMode, clientId: 'b' });
      peer.session.open(peer.now);
      expect(levelOf(peer)).toBe(level);
      expect(peer.session.bridgeMarker).toBe(bridgeMode && v !== 5);
    }
  });

  it('return code 1 to a marked CONNECT drops the marker and asks for an immediate retry', () => {
    const peer = new Peer({ bridgeMode: true, clientId: 'b' });
    peer.session.open(peer.now);
    expect(levelOf(peer)).toBe(0x84);
    peer.sendRaw([0x20, 2, 0, 1]);
    const closed = peer.events().find((e) => e.type === 'closed') as ClosedEvent;
    expect(closed.error).toBeInstanceOf(ConnackError);
    expect(closed.retryNow).toBe(true);
    expect(peer.session.bridgeMarker).toBe(false);
    peer.drop();
    peer.session.open(peer.now);
    expect(levelOf(peer)).toBe(4);
  });

  it('issue 16.3: the marker can be set per attempt (a bridge remembers which server refused it), never over 5.0', () => {
    const peer = new Peer({ bridgeMode: true, clientId: 'b' });
    peer.session.open(peer.now);
    peer.sendRaw([0x20, 2, 0, 1]);
    expect(peer.session.bridgeMarker).toBe(false);
    peer.drop();
    peer.session.bridgeMarker = true;
    peer.session.open(peer.now);
    expect(levelOf(peer)).toBe(0x84);
    const v5 = new Peer({ protocolVersion: 5, bridgeMode: true, clientId: 'b' });
    v5.session.bridgeMarker = true;
    expect(v5.session.bridgeMarker).toBe(false);
    const off = new Peer({ clientId: 'b' });
    off.session.bridgeMarker = true;
    expect(off.session.bridgeMarker).toBe(false);
  });

  it('other refusals, and return code 1 without the marker, keep things as they are', () => {
    const marked = new Peer({ bridgeMode: true, clientId: 'b' });
    marked.session.open(marked.now);
    marked.session.takeOutput();
    marked.sendRaw([0x20, 2, 0, 5]);
    expect((marked.events().find((e) => e.type === 'closed') as ClosedEvent).retryNow).toBeUndefined();
    expect(marked.session.bridgeMarker).toBe(true);
    const plain = new Peer({ clientId: 'b' });
    plain.session.open(plain.now);
    plain.session.takeOutput();
    plain.sendRaw([0x20, 2, 0, 1]);
    expect((plain.events().find((e) => e.type === 'closed') as ClosedEvent).retryNow).toBeUndefined();
  });

  it('setBridgeBit leaves anything but a 3.x CONNECT alone, truncated or hostile', () => {
    const samples = [
      [],
      [0x10],
      [0x10, 0xff, 0xff, 0xff, 0xff, 0xff],
      [0x10, 4, 0, 200, 0x4d],
      [0x30, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4],
      [0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 0, 0, 0],
      [0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54],
    ];
    for (const s of samples) {
      const b = Uint8Array.from(s);
      expect(setBridgeBit(b)).toBe(false);
      expect([...b]).toEqual(s);
    }
    for (let i = 0; i < 500; i++) {
      const b = Uint8Array.from({ length: 1 + (i % 40) }, (_, j) =>
        j === 0 ? 0x10 : (i * 31 + j * 17) & 0xff,
      );
      setBridgeBit(b); // never throws, never reads past the end
    }
  });

  it('end to end: a server refusing the marker gets a plain CONNECT at once, without backoff', async () => {
    const fb = await fakeBroker({ refuseMarker: true });
    // A backoff of a minute would time the test out: the retry must not wait for it.
    const c = track(
      connect({
        host: '127.0.0.1',
        port: fb.port,
        clientId: 'br',
        bridgeMode: true,
        reconnectPeriod: 60_000,
        keepalive: 0,
      }),
    );
    await once(c, 'connect');
    expect(fb.levels).toEqual([0x84, 4]);
  });
});

if (!HAS_OPENSSL) console.warn('hooks.test.ts: openssl not found, checkServerIdentity tests skipped');

describe.skipIf(!HAS_OPENSSL)('checkServerIdentity', () => {
  it('skips the host-name check only: the chain is still verified', async () => {
    const pki = new TestPki('client-csi-')
      .selfSigned('server', 'wrong.example')
      .selfSigned('other', 'other.example');
    closers.push(() => pki.remove());
    const server = { cert: pki.read('server.crt'), key: pki.read('server.key') };
    const other = { cert: pki.read('other.crt') };
    const fb = await fakeBroker({ secure: { cert: server.cert, key: server.key } });
    const base = {
      protocol: 'mqtts' as const,
      host: '127.0.0.1',
      port: fb.port,
      reconnect: false,
      keepalive: 0,
    };

    // Trusted chain, wrong name: refused by default, with the reason in transportError.
    const strict = track(connect({ ...base, ca: server.cert }));
    const e1 = await once<NodeJS.ErrnoException>(strict, 'transportError');
    expect(e1.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');

    // Trusted chain, name check replaced: connects, and the hook saw the certificate.
    const names: string[] = [];
    const lax = track(
      connect({
        ...base,
        ca: server.cert,
        checkServerIdentity: (_host, cert) => {
          names.push(String(cert.subject.CN));
          return undefined;
        },
      }),
    );
    await once(lax, 'connect');
    expect(names).toEqual(['wrong.example']);

    // Untrusted chain: the hook does not make it trusted (unlike rejectUnauthorized false).
    const untrusted = track(connect({ ...base, ca: other.cert, checkServerIdentity: () => undefined }));
    const e3 = await once<NodeJS.ErrnoException>(untrusted, 'transportError');
    expect(e3.code).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
    expect(fb.levels.length).toBe(1);

    // The hook's own refusal is the error reported.
    const picky = track(
      connect({ ...base, ca: server.cert, checkServerIdentity: () => new Error('not you') }),
    );
    const e4 = await once<Error>(picky, 'transportError');
    expect(e4.message).toBe('not you');
  });
});

describe('enqueue()', () => {
  it('queues while no connection is up or coming, and sends once connected', async () => {
    const fb = await fakeBroker();
    let port = await deadPort();
    const c = track(
      connect({
        resolveServer: () => ({ host: '127.0.0.1', port }),
        reconnect: false,
        keepalive: 0,
        clientId: 'q',
      }),
    );
    await once(c, 'end');
    // Ended (reconnect false): publish() refuses, enqueue() stores.
    await expect(c.publish('t/pub', 'x', { qos: 1 })).rejects.toMatchObject({ code: 'CLIENT_ENDED' });
    const seqs = await Promise.all([c.enqueue('t/a', 'a', { qos: 1 }), c.enqueue('t/b', 'b', { qos: 1 })]);
    expect(seqs[1]).toBeGreaterThan(seqs[0]);
    expect(c.outbox.stats().count).toBe(2);
    port = fb.port;
    c.reconnect();
    await once(c, 'connect');
    // Sent and acknowledged: the outbox is empty again.
    await until(() => c.outbox.stats().count === 0, 'the outbox emptied by PUBACKs');
    expect(fb.publishes).toEqual(['t/a', 't/b']);
    // While connected it goes out without any other call.
    await c.enqueue('t/c', 'c', { qos: 1 });
    await until(() => fb.publishes.length === 3, 'the third publish');
    expect(fb.publishes[2]).toBe('t/c');
  });

  it('issue 13: settled tells when an enqueued message left the outbox (publish() has its promise)', async () => {
    const fb = await fakeBroker();
    const c = track(connect({ host: '127.0.0.1', port: fb.port, keepalive: 0, clientId: 's' }));
    const settled: Array<[number, number, Error | undefined]> = [];
    c.on('settled', (seq, rc, err) => settled.push([seq, rc, err]));
    await once(c, 'connect');
    const a = await c.enqueue('t/a', 'a', { qos: 1 });
    await c.publish('t/p', 'p', { qos: 1 });
    const b = await c.enqueue('t/b', 'b', { qos: 0 });
    await until(() => settled.length === 2, 'two settled events');
    expect(settled).toEqual([
      [a, 0, undefined],
      [b, 0, undefined],
    ]);
    expect(fb.publishes).toEqual(['t/a', 't/p', 't/b']);
  });

  it('refuses a bad topic or QoS without touching the outbox', async () => {
    const c = track(connect({ host: '127.0.0.1', port: await deadPort(), reconnect: false }));
    await expect(c.enqueue('a/+', 'x', { qos: 1 })).rejects.toThrow();
    await expect(c.enqueue('a', 'x', { qos: 3 as 1 })).rejects.toThrow(RangeError);
    expect(c.outbox.stats().count).toBe(0);
  });
});
