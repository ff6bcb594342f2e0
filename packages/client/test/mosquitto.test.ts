/**
 * The Node client against Debian's mosquitto, started per test on a free loopback port.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasMosquitto, type Mosquitto, startMosquitto } from '../../../test/helpers/mosquitto.ts';
import { HAS_OPENSSL, serverAndClientPki, type TestPki } from '../../../test/helpers/tls.ts';
import { ConnackError } from '../src/core/errors.ts';
import { MemoryOutbox } from '../src/core/memory-outbox.ts';
import { OutboxFullError } from '../src/core/outbox.ts';
import { type ClientOptions, connect, DurableQueue, type MqttClient } from '../src/node/index.ts';

const HAS = hasMosquitto();
if (!HAS) console.warn('mosquitto.test.ts: /usr/sbin/mosquitto not found, skipping broker interop tests');

const text = (b: Uint8Array) => new TextDecoder().decode(b);

function client(port: number, options: ClientOptions = {}, scheme = 'mqtt'): MqttClient {
  return connect(`${scheme}://127.0.0.1:${port}`, {
    reconnectPeriod: 50,
    reconnectMaxDelay: 200,
    ...options,
  });
}

async function connected(c: MqttClient) {
  const [ev] = await once(c, 'connect');
  return ev;
}

describe.skipIf(!HAS)('mosquitto 3.1.1 / 5.0', () => {
  let broker: Mosquitto;
  beforeAll(async () => {
    broker = await startMosquitto();
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it.each([3, 4, 5] as const)('protocol %i: QoS 0/1/2 both ways, subscribe, unsubscribe', async (v) => {
    const sub = client(broker.port, { protocolVersion: v, clientId: `sub-${v}` });
    const pub = client(broker.port, { protocolVersion: v, clientId: `pub-${v}` });
    await Promise.all([connected(sub), connected(pub)]);
    const got: string[] = [];
    const all = new Promise<void>((resolve) =>
      sub.on('message', (topic, payload, packet) => {
        got.push(`${topic} ${text(payload)} q${packet.qos}`);
        if (got.length === 3) resolve();
      }),
    );
    const granted = await sub.subscribe([{ filter: `v${v}/+/x`, qos: 2 }]);
    expect(granted.reasonCodes).toEqual([2]);
    const results = await Promise.all(
      [0, 1, 2].map((q) => pub.publish(`v${v}/${q}/x`, `m${q}`, { qos: q as 0 | 1 | 2 })),
    );
    expect(results.map((r) => r.reasonCode)).toEqual([0, 0, 0]);
    expect(results[0].packetId).toBeUndefined();
    expect(results[1].packetId).toBeGreaterThan(0);
    await all;
    expect(got.sort()).toEqual([`v${v}/0/x m0 q0`, `v${v}/1/x m1 q1`, `v${v}/2/x m2 q2`]);
    const un = await sub.unsubscribe(`v${v}/+/x`);
    expect(un.reasonCodes).toEqual(v === 5 ? [0] : undefined);
    await Promise.all([sub.end(), pub.end()]);
  });

  it('the packet id is known at once when connected', async () => {
    const c = client(broker.port, { clientId: 'pid' });
    await connected(c);
    const p = c.publish('pid/t', 'x', { qos: 1 });
    expect(p.packetId).toBeGreaterThan(0);
    expect((await p).packetId).toBe(p.packetId);
    await c.end();
  });

  it('5.0: the server assigns a client id; a session is resumed with clean false', async () => {
    const c = client(broker.port, { protocolVersion: 5 });
    const ev = await connected(c);
    expect(ev.clientId).toMatch(/.+/);
    expect(c.session.clientId).toBe(ev.clientId);
    await c.end();
    const opts = { protocolVersion: 5 as const, clientId: 'resume', clean: false, sessionExpiryInterval: 60 };
    const a = client(broker.port, opts);
    expect((await connected(a)).sessionPresent).toBe(false);
    await a.end();
    const b = client(broker.port, opts);
    expect((await connected(b)).sessionPresent).toBe(true);
    await b.end();
  });

  it('publishing while offline queues; the queue is sent once connected', async () => {
    const sub = client(broker.port, { protocolVersion: 5, clientId: 'q-sub' });
    await connected(sub);
    await sub.subscribe({ filter: 'queued/#', qos: 1 });
    const got: string[] = [];
    const done = new Promise<void>((r) =>
      sub.on('message', (_t, p) => {
        got.push(text(p));
        if (got.length === 20) r();
      }),
    );
    const pub = client(broker.port, { protocolVersion: 5, clientId: 'q-pub' });
    expect(pub.connected).toBe(false);
    const proms = Array.from({ length: 20 }, (_, i) =>
      pub.publish('queued/x', `${i}`, { qos: (i % 3) as 0 | 1 | 2 }),
    );
    await Promise.all(proms);
    await done;
    // Per QoS in order (mosquitto forwards a QoS 2 message at PUBREL, so QoS levels interleave).
    for (const q of [0, 1, 2])
      expect(got.filter((m) => Number(m) % 3 === q)).toEqual(
        Array.from({ length: 20 }, (_, i) => `${i}`).filter((m) => Number(m) % 3 === q),
      );
    await Promise.all([sub.end(), pub.end()]);
  });

  it('5.0 end({ reasonCode: 0x04 }) makes the broker publish the will', async () => {
    const watcher = client(broker.port, { protocolVersion: 5, clientId: 'will-watch' });
    await connected(watcher);
    await watcher.subscribe({ filter: 'will/+', qos: 1 });
    const will = new Promise<string>((r) => watcher.on('message', (t, p) => r(`${t} ${text(p)}`)));
    const c = client(broker.port, {
      protocolVersion: 5,
      clientId: 'will-owner',
      will: { topic: 'will/owner', payload: 'gone', qos: 1 },
    });
    await connected(c);
    await c.end({ reasonCode: 0x04 });
    expect(await will).toBe('will/owner gone');
    await watcher.end();
  });

  it('a DurableQueue as the outbox: publishes complete, the queue ends empty', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-dq-'));
    const outbox = await DurableQueue.open(dir, { fsync: 'never' });
    try {
      const c = client(broker.port, { protocolVersion: 5, clientId: 'dq', outbox });
      // queued before the connection is up, then more once connected
      const early = Array.from({ length: 50 }, (_, i) =>
        c.publish('dq/x', `${i}`, { qos: (1 + (i % 2)) as 1 | 2 }),
      );
      await connected(c);
      const late = Array.from({ length: 50 }, (_, i) => c.publish('dq/x', `${i}`, { qos: 1 }));
      // an asynchronous outbox gives the packet id with the result, not at once
      expect(late[0].packetId).toBeUndefined();
      const results = await Promise.all([...early, ...late]);
      expect(results.every((r) => (r.packetId ?? 0) > 0 && r.reasonCode < 0x80)).toBe(true);
      expect(outbox.stats().count).toBe(0);
      await c.end();
    } finally {
      await outbox.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a full drop-oldest outbox rejects the dropped messages; the rest go out', async () => {
    const c = client(broker.port, { clientId: 'full', outbox: new MemoryOutbox({ maxCount: 5 }) });
    const proms = Array.from({ length: 8 }, (_, i) => c.publish('full/x', `${i}`, { qos: 1 }));
    const settled = await Promise.allSettled(proms);
    expect(settled.map((r) => r.status)).toEqual([
      'rejected',
      'rejected',
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    expect((settled[0] as PromiseRejectedResult).reason).toBeInstanceOf(OutboxFullError);
    expect(c.outbox.stats()).toMatchObject({ count: 0, droppedOldest: 3 });
    await c.end();
  });

  it('queueWhileDisconnected false rejects at once', async () => {
    const c = client(broker.port, { queueWhileDisconnected: false });
    await expect(c.publish('a', 'b', { qos: 1 })).rejects.toMatchObject({ code: 'NOT_CONNECTED' });
    await expect(c.subscribe('a')).rejects.toMatchObject({ code: 'NOT_CONNECTED' });
    await connected(c);
    await c.end();
  });
});

describe.skipIf(!HAS)('mosquitto with a password file', () => {
  let broker: Mosquitto;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-pw-'));
    const pw = path.join(dir, 'passwd');
    execFileSync('mosquitto_passwd', ['-b', '-c', pw, 'alice', 's3cret']);
    broker = await startMosquitto({ config: `allow_anonymous false\npassword_file ${pw}` });
  });
  afterAll(async () => {
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('right credentials connect', async () => {
    const c = connect(`mqtt://alice:s3cret@127.0.0.1:${broker.port}`);
    await connected(c);
    await c.end();
  });

  it.each([
    [4, 'bad password', { username: 'alice', password: 'wrong' }, 5],
    [4, 'anonymous', {}, 5],
    // mosquitto 2.0.11 answers a wrong password with 0x87, not 0x86
    [5, 'bad password', { username: 'alice', password: 'wrong' }, 0x87],
    [5, 'anonymous', {}, 0x87],
  ] as const)('protocol %i, %s: a ConnackError, no reconnect loop', async (v, _what, creds, expected) => {
    const c = client(broker.port, { protocolVersion: v, ...creds });
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    await new Promise<void>((r) => c.once('end', () => r()));
    expect(errors).toHaveLength(1);
    const err = errors[0] as ConnackError;
    expect(err).toBeInstanceOf(ConnackError);
    if (v === 5) expect(err.reasonCode).toBe(expected);
    else expect(err.returnCode).toBe(expected);
    // Requests made meanwhile fail with the refusal rather than hang.
    await expect(c.publish('x', 'y', { qos: 1 })).rejects.toBe(err);
  });
});

describe.skipIf(!HAS || !HAS_OPENSSL)('mosquitto over TLS with certificates made by openssl', () => {
  let broker: Mosquitto;
  let pki: TestPki;
  const f = (n: string) => pki.file(n);
  beforeAll(async () => {
    pki = serverAndClientPki('mqtt-tls-');
    broker = await startMosquitto({
      config: [
        `cafile ${f('ca.crt')}`,
        `certfile ${f('server.crt')}`,
        `keyfile ${f('server.key')}`,
        'require_certificate true',
      ].join('\n'),
    });
  });
  afterAll(async () => {
    await broker?.stop();
    pki?.remove();
  });

  it('connects with CA, client certificate and key, server name checked', async () => {
    const c = client(
      broker.port,
      {
        protocolVersion: 5,
        ca: readFileSync(f('ca.crt')),
        cert: readFileSync(f('client.crt')),
        key: readFileSync(f('client.key')),
        servername: 'localhost',
      },
      'mqtts',
    );
    await connected(c);
    const r = await c.publish('tls/x', 'secure', { qos: 1 });
    expect(r.reasonCode).toBeLessThan(0x80);
    await c.end();
  });

  it('an untrusted server certificate is an error, not a connection', async () => {
    const c = client(
      broker.port,
      { cert: readFileSync(f('client.crt')), key: readFileSync(f('client.key')) },
      'mqtts',
    );
    let connectedOnce = false;
    c.on('connect', () => {
      connectedOnce = true;
    });
    await once(c, 'reconnect');
    expect(connectedOnce).toBe(false);
    await c.end({ force: true });
  });

  it('without a client certificate the broker refuses the handshake', async () => {
    const c = client(broker.port, { ca: readFileSync(f('ca.crt')), servername: 'localhost' }, 'mqtts');
    let connectedOnce = false;
    c.on('connect', () => {
      connectedOnce = true;
    });
    await once(c, 'reconnect');
    expect(connectedOnce).toBe(false);
    await c.end({ force: true });
  });
});
