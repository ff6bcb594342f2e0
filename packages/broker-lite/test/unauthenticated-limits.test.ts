/**
 * Issue 12.2: a connection that has not been sent its CONNACK holds little. One packet before
 * CONNACK is bounded by max_unauthenticated_packet_size, checked from its fixed header; all
 * pending connections together by max_unauthenticated_bytes (the biggest holder is closed);
 * and the codec bounds what a decoded packet costs (user properties per packet).
 */
import net from 'node:net';
import { encode, type Packet, PacketParser } from '@mqtt-edge/codec';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectWithUserProperties, fixedHeader } from '../../codec/test/hostile-packets.ts';
import { parseConfig } from '../src/config.ts';
import { buildBrokerOptions } from '../src/config-build.ts';
import { BrokerProcess } from './helpers/broker-process.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const MiB = 1024 * 1024;

/** A socket that sends `bytes` (all of them, as fast as the peer reads) and parses what comes back. */
class Attacker {
  readonly packets: Packet[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  private readonly parser = new PacketParser({ protocolVersion: 5 });
  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      try {
        this.parser.push(d, (p) => this.packets.push(p));
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }
  static open(port: number): Promise<Attacker> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new Attacker(s)));
      s.once('error', reject);
    });
  }
  /** Writes and resolves once the kernel took the bytes, or the peer closed. */
  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.write(bytes, () => resolve());
    });
  }
}

/** A 3.1.1 CONNECT header claiming `rem` bytes, with the start of its variable header. */
function connect311Header(rem: number): Uint8Array {
  return Uint8Array.from([...fixedHeader(0x10, rem), 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60]);
}

async function legitConnects(port: number, protocolVersion: 4 | 5 = 5): Promise<void> {
  const { client, connack } = await RawClient.connect(port, { clientId: 'legit', protocolVersion });
  expect(connack.reasonCode).toBe(0);
  await client.disconnect();
}

describe('issue 12.2: pre-CONNACK packet size (max_unauthenticated_packet_size)', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startBroker();
  });
  afterAll(() => tb.close());

  it('defaults: 256 KiB a packet, 16 MiB for all pending connections', () => {
    expect(tb.broker.maxPacketUnauthenticated).toBe(256 * 1024);
    expect(tb.broker.options.maxUnauthenticatedBytes).toBe(16 * MiB);
  });

  it('a 16 MB MQTT 5 CONNECT of user properties gets CONNACK 0x95 from its header, nothing buffered', async () => {
    const a = await Attacker.open(tb.port);
    const before = tb.broker.stats().bytesReceived;
    void a.write(connectWithUserProperties((16 * MiB) / 5));
    await a.closed;
    expect(a.packets).toEqual([{ type: 'connack', sessionPresent: false, reasonCode: 0x95 }]);
    // the broker stopped reading at the header: the first chunk or so, not 16 MB
    expect(tb.broker.stats().bytesReceived - before).toBeLessThan(MiB);
    expect(tb.broker.stats().unauthenticatedBytes).toBe(0);
    await legitConnects(tb.port);
  });

  it('a 3.1.1 CONNECT over the limit is closed without CONNACK (3.1.1 has no code for it)', async () => {
    const a = await Attacker.open(tb.port);
    void a.write(connect311Header(256 * 1024));
    await a.closed;
    expect(a.packets).toEqual([]);
    await legitConnects(tb.port, 4);
  });

  it('a CONNECT at the limit passes; after CONNACK the packet limit is max_packet_size again', async () => {
    const big = await startBroker({ maxUnauthenticatedPacketSize: 1000 });
    try {
      const c = await RawClient.open(big.port);
      // 3.1.1 CONNECT: 1 + 2 (remaining length) + 10 + 2 + client id bytes
      const ack = await c.handshake({ clientId: 'x'.repeat(1000 - 15), protocolVersion: 4 });
      expect(ack.reasonCode).toBe(0);
      expect(await c.subscribe('big', 0)).toEqual([0]);
      c.publish('big', new Uint8Array(100_000));
      expect((await c.expect('publish')).payload.length).toBe(100_000);
      c.close();
      const d = await RawClient.open(big.port);
      await expect(d.handshake({ clientId: 'x'.repeat(1001 - 15), protocolVersion: 4 })).rejects.toThrow(
        /close/,
      );
    } finally {
      await big.close();
    }
  });

  it('a packet pipelined behind CONNECT during authentication is held to the limit too (5.0: CONNACK 0x95)', async () => {
    let release: (ok: boolean) => void = () => {};
    const slow = await startBroker({
      maxUnauthenticatedPacketSize: 4096,
      allowAnonymous: false,
      authenticator: { authenticate: () => new Promise<boolean>((r) => (release = r)) },
    });
    try {
      const c = await RawClient.open(slow.port);
      c.version = 5;
      const connect = {
        type: 'connect',
        protocolVersion: 5,
        clientId: 'p',
        clean: true,
        keepalive: 0,
        username: 'u',
      } as const;
      c.sendBytes(
        Buffer.concat([
          Buffer.from(encode(connect, 5)),
          Buffer.from(
            encode(
              {
                type: 'publish',
                topic: 't',
                payload: new Uint8Array(5000),
                qos: 0,
                retain: false,
                dup: false,
              },
              5,
            ),
          ),
        ]),
      );
      await c.closed;
      release(true);
      expect(slow.broker.stats().unauthenticatedBytes).toBe(0);
      expect(slow.logs.some((l) => l.fields?.code === 'PACKET_TOO_LARGE')).toBe(true);
    } finally {
      await slow.close();
    }
  });

  it('packets pipelined during authentication are counted until CONNACK, then released and handled', async () => {
    let release: (ok: boolean) => void = () => {};
    const slow = await startBroker({
      allowAnonymous: false,
      // 'pub' waits for the test to let it in
      authenticator: {
        authenticate: ({ clientId }) => clientId !== 'pub' || new Promise<boolean>((r) => (release = r)),
      },
    });
    try {
      const sub = (await RawClient.connect(slow.port, { clientId: 'sub', username: 'u' })).client;
      expect(await sub.subscribe('early', 0)).toEqual([0]);
      const c = await RawClient.open(slow.port);
      const bytes = Buffer.concat([
        Buffer.from(
          encode(
            {
              type: 'connect',
              protocolVersion: 4,
              clientId: 'pub',
              clean: true,
              keepalive: 0,
              username: 'u',
            },
            4,
          ),
        ),
        Buffer.from(
          encode(
            {
              type: 'publish',
              topic: 'early',
              payload: Buffer.from('hi'),
              qos: 0,
              retain: false,
              dup: false,
            },
            4,
          ),
        ),
      ]);
      c.sendBytes(bytes);
      await vi.waitFor(() => expect(slow.broker.stats().unauthenticatedBytes).toBe(bytes.length));
      release(true);
      expect((await c.expect('connack')).reasonCode).toBe(0);
      expect(Buffer.from((await sub.expect('publish')).payload).toString()).toBe('hi');
      expect(slow.broker.stats().unauthenticatedBytes).toBe(0);
      c.close();
      sub.close();
    } finally {
      await slow.close();
    }
  });
});

describe('issue 12.2: all pending connections together (max_unauthenticated_bytes)', () => {
  it('what a pipelined packet costs decoded is charged too (a 4-byte subscription is a 72-byte object)', async () => {
    let release: (ok: boolean) => void = () => {};
    const slow = await startBroker({
      allowAnonymous: false,
      authenticator: { authenticate: () => new Promise<boolean>((r) => (release = r)) },
    });
    try {
      const c = await Attacker.open(slow.port);
      const connect = encode(
        { type: 'connect', protocolVersion: 5, clientId: 'p', clean: true, keepalive: 0, username: 'u' },
        5,
      );
      const subscriptions = Array.from({ length: 1000 }, () => ({ topicFilter: 'a', qos: 0 as const }));
      const sub = encode({ type: 'subscribe', packetId: 1, subscriptions }, 5);
      const bytes = Buffer.concat([connect, sub]);
      void c.write(bytes);
      // 80 bytes a subscription on top of the bytes sent
      await vi.waitFor(() => expect(slow.broker.stats().unauthenticatedBytes).toBe(bytes.length + 80 * 1000));
      release(true);
      await vi.waitFor(() => expect(c.packets.map((p) => p.type)).toEqual(['connack', 'suback']));
      expect(c.packets[0]).toMatchObject({ type: 'connack', reasonCode: 0 });
      expect(c.packets[1]).toMatchObject({ type: 'suback', reasonCodes: subscriptions.map(() => 0) });
      expect(slow.broker.stats().unauthenticatedBytes).toBe(0);
      c.socket.destroy();
    } finally {
      await slow.close();
    }
  });

  it('slow connections each trickling a large CONNECT: the total held stays under the bound, a legit client connects', async () => {
    const bound = MiB;
    const tb = await startBroker({
      maxUnauthenticatedPacketSize: 256 * 1024,
      maxUnauthenticatedBytes: bound,
      connectTimeoutSeconds: 60,
    });
    try {
      const size = 200 * 1024;
      const packet = connectWithUserProperties(Math.floor((size - 20) / 5)).subarray(0, size - 1);
      const attackers = await Promise.all(Array.from({ length: 20 }, () => Attacker.open(tb.port)));
      // round robin, 8 KiB at a time: every connection grows slowly and together
      for (let at = 0; at < packet.length; at += 8192) {
        await Promise.all(attackers.map((a) => a.write(packet.subarray(at, at + 8192))));
      }
      // 20 x 200 KiB cannot fit in 1 MiB: at least 15 are closed, the biggest holders first
      await vi.waitFor(() => expect(attackers.filter((a) => a.isClosed).length).toBeGreaterThanOrEqual(15), {
        timeout: 10_000,
      });
      const stats = tb.broker.stats();
      expect(stats.unauthenticatedBytesPeak).toBeLessThanOrEqual(bound);
      expect(stats.unauthenticatedBytes).toBeLessThanOrEqual(bound);
      // the closed ones were told (5.0 CONNECT: CONNACK 0x89 server busy)
      for (const a of attackers.filter((x) => x.isClosed))
        expect(a.packets).toEqual([{ type: 'connack', sessionPresent: false, reasonCode: 0x89 }]);
      expect(tb.logs.some((l) => /max_unauthenticated_bytes/.test(l.message))).toBe(true);
      await legitConnects(tb.port);
      for (const a of attackers) a.socket.destroy();
      await Promise.all(attackers.map((a) => a.closed));
      await vi.waitFor(() => expect(tb.broker.stats().unauthenticatedBytes).toBe(0));
    } finally {
      await tb.close();
    }
  });
});

describe('issue 12.2: config keys', () => {
  it('max_unauthenticated_packet_size and max_unauthenticated_bytes reach the broker (0 = no limit)', async () => {
    const cfg = parseConfig(
      'listener 0 127.0.0.1\nallow_anonymous true\nmax_unauthenticated_packet_size 4096\nmax_unauthenticated_bytes 0\n',
      '/tmp/x.conf',
    );
    expect(cfg.maxUnauthenticatedPacketSize).toBe(4096);
    expect(cfg.maxUnauthenticatedBytes).toBe(0);
    const { options } = await buildBrokerOptions(cfg, { log() {} });
    expect(options.maxUnauthenticatedPacketSize).toBe(4096);
    expect(options.maxUnauthenticatedBytes).toBe(0);
    expect(() => parseConfig('max_unauthenticated_packet_size 10\n', '/tmp/x.conf')).toThrow(/too small/);
  });
});

describe('issue 12.2: a broker process with a 512 MB heap', () => {
  const hostile = async (port: number, mb: number): Promise<Attacker> => {
    const a = await Attacker.open(port);
    void a.write(connectWithUserProperties(Math.floor((mb * MiB) / 5)));
    return a;
  };

  it('survives 16 MB and 64 MB user-property CONNECTs with defaults; RSS barely moves; a legit client connects', async () => {
    const bp = await BrokerProcess.startText('', ['--max-old-space-size=512']);
    try {
      const base = bp.memory().rss;
      bp.resetPeak();
      const attacks = await Promise.all([hostile(bp.port, 16), hostile(bp.port, 64), hostile(bp.port, 64)]);
      await Promise.all(attacks.map((a) => a.closed));
      for (const a of attacks)
        expect(a.packets).toEqual([{ type: 'connack', sessionPresent: false, reasonCode: 0x95 }]);
      await legitConnects(bp.port);
      expect(bp.running).toBe(true);
      expect(bp.memory().peak - base).toBeLessThan(32 * MiB);
    } finally {
      expect((await bp.stop()).code).toBe(0);
    }
  });

  it('with both pre-CONNACK limits off, the codec bound still keeps a 64 MB CONNECT from killing it', async () => {
    // before issue 12.2 this decoded 13 million user properties (~1 GB of heap) and died
    const bp = await BrokerProcess.startText(
      'max_unauthenticated_packet_size 0\nmax_unauthenticated_bytes 0\n',
      ['--max-old-space-size=512'],
    );
    try {
      const base = bp.memory().rss;
      bp.resetPeak();
      const a = await hostile(bp.port, 64);
      await a.closed;
      expect(a.packets).toEqual([{ type: 'connack', sessionPresent: false, reasonCode: 0x95 }]);
      await bp.waitFor((l) => l.code === 'USER_PROPERTIES_TOO_MANY');
      await legitConnects(bp.port);
      expect(bp.running).toBe(true);
      // the packet itself is buffered (64 MB, growing by doubling); its decoded pairs are not
      expect(bp.memory().peak - base).toBeLessThan(4 * 64 * MiB);
    } finally {
      expect((await bp.stop()).code).toBe(0);
    }
  });
});
