/**
 * Issue 12.10 over real TCP: a flood of bad logins from other loopback addresses
 * (127.0.0.2, ...) must not lock out a real user logging in from 127.0.0.3. The password file
 * uses a realistic cost (10,000 PBKDF2 iterations, a few ms a hash), so a login queued behind
 * the flood first-come-first-served would wait seconds.
 */
import net from 'node:net';
import type { ConnectPacket } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { createWebSocketStream, WebSocket } from 'ws';
import {
  createAuthenticator,
  hashLoad,
  hashPassword,
  MAX_QUEUED_PER_SOURCE,
  PasswordFile,
} from '../src/passwd.ts';
import { RawClient, startBroker, type TestBroker } from './helpers/raw-client.ts';

const ITERATIONS = 10_000;
/** For tests that need a queue to stay full a while (a waiting login leaves it when its client goes). */
const SLOW_ITERATIONS = 500_000;
const brokers: TestBroker[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const b of brokers.splice(0)) await b.close();
});

/** alice and carol (password s3cret) at `iterations` PBKDF2 iterations. */
async function passwordBroker(iterations = ITERATIONS): Promise<TestBroker> {
  const hash = await hashPassword('s3cret', { iterations });
  const passwords = PasswordFile.parse(`alice:${hash}\ncarol:${hash}\n`, 'passwd');
  const tb = await startBroker({
    allowAnonymous: false,
    authenticator: createAuthenticator({ allowAnonymous: false, passwords }),
  });
  brokers.push(tb);
  return tb;
}

/** A TCP connection to the broker from `localAddress` (a loopback address of its own). */
function openFrom(port: number, localAddress: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
    sockets.push(s);
  });
}

const CONNECT = (clientId: string, username: string, password: string): ConnectPacket => ({
  type: 'connect',
  protocolVersion: 4,
  clientId,
  clean: true,
  keepalive: 60,
  username,
  password: Buffer.from(password),
});

/**
 * `count` bad logins spread over `addresses`, opened in bounded batches (the listen backlog),
 * each sending its CONNECT at once; resolves when the broker has taken every CONNECT in (each
 * is hashing, waiting for a hash, or answered).
 */
async function flood(tb: TestBroker, addresses: string[], count: number): Promise<void> {
  const before = tb.broker.stats().authFailures;
  for (let i = 0; i < count; i += 200) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(count, i + 200); j++) {
      batch.push(
        openFrom(tb.port, addresses[j % addresses.length]).then((s) => {
          s.on('error', () => {});
          s.on('data', () => {});
          RawClient.over(s).send(CONNECT(`flood-${j}`, j % 2 === 0 ? 'alice' : `nobody-${j}`, 'guess'));
        }),
      );
    }
    await Promise.all(batch);
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { running, waiting } = hashLoad();
    if (tb.broker.stats().authFailures - before + running + waiting >= count) return;
    if (Date.now() > deadline) throw new Error('the broker did not take in the flood within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** carol logs in from 127.0.0.3: the CONNACK, how long it took, how many hashes ran before hers. */
async function realLogin(tb: TestBroker): Promise<{ code: number; ms: number; hashesAhead: number }> {
  const c = RawClient.over(await openFrom(tb.port, '127.0.0.3'));
  const failuresBefore = tb.broker.stats().authFailures;
  const t0 = performance.now();
  c.send(CONNECT('carol-1', 'carol', 's3cret'));
  const ack = await c.expect('connack', 30_000);
  const ms = performance.now() - t0;
  const hashesAhead = tb.broker.stats().authFailures - failuresBefore;
  c.close();
  return { code: ack.reasonCode, ms, hashesAhead };
}

describe('issue 12.10: a flood of bad logins does not lock out a real user', () => {
  it('issue 12.10: 2,000 bad logins from one address; a real user from another logs in at once', async () => {
    const tb = await passwordBroker();
    const t0 = performance.now();
    await flood(tb, ['127.0.0.2'], 2000);
    const floodMs = performance.now() - t0;
    const load = hashLoad();
    const login = await realLogin(tb);
    console.log(
      `issue 12.10 one address: flood of 2000 taken in ${floodMs.toFixed(0)} ms, queue then ${JSON.stringify(load)}; ` +
        `real login CONNACK ${login.code} after ${login.ms.toFixed(1)} ms, ${login.hashesAhead} failed logins answered meanwhile`,
    );
    expect(login.code).toBe(0);
    // Its turn comes after the two hashes running and one of the flood's (round robin) once the
    // broker has read its CONNECT; on a loaded machine that read can come a few hashes late (seen:
    // 8 in a CI run). Without round robin it would wait out the address's 32 queued, before the
    // fix the whole flood (1,151).
    expect(login.hashesAhead).toBeLessThanOrEqual(12);
    expect(login.ms).toBeLessThan(2000);
  }, 60_000);

  it('issue 12.10: 2,000 bad logins from 40 addresses; the real user waits about one hash per address', async () => {
    const tb = await passwordBroker();
    const attackers = Array.from({ length: 40 }, (_, i) => `127.0.1.${i + 1}`);
    await flood(tb, attackers, 2000);
    const load = hashLoad();
    const login = await realLogin(tb);
    console.log(
      `issue 12.10 40 addresses: queue ${JSON.stringify(load)}; real login CONNACK ${login.code} after ` +
        `${login.ms.toFixed(1)} ms, ${login.hashesAhead} failed logins answered meanwhile`,
    );
    expect(login.code).toBe(0);
    expect(login.hashesAhead).toBeLessThanOrEqual(attackers.length + 4);
    expect(login.ms).toBeLessThan(5000);
  }, 60_000);

  it('issue 12.10: past its bound an address is told "busy" (3 / 0x9F), not "bad password"', async () => {
    // Costly hashes (~0.4 s), so that the address's queue is still full when the next login comes.
    const tb = await passwordBroker(SLOW_ITERATIONS);
    await flood(tb, ['127.0.0.2'], 60);
    expect(hashLoad().waiting).toBe(MAX_QUEUED_PER_SOURCE);
    const c = RawClient.over(await openFrom(tb.port, '127.0.0.2'));
    expect((await c.handshake(CONNECT('late-4', 'carol', 's3cret'))).reasonCode).toBe(3);
    const c5 = RawClient.over(await openFrom(tb.port, '127.0.0.2'));
    const ack5 = await c5.handshake({ ...CONNECT('late-5', 'carol', 's3cret'), protocolVersion: 5 });
    expect(ack5.reasonCode).toBe(0x9f);
    expect(ack5.properties?.reasonString).toMatch(/too many logins from this address/);
  }, 60_000);
});

describe('issue 12.10: abandoned logins', () => {
  it('issue 12.10: connections that hang up while waiting for a hash leave the queue, costing no hash', async () => {
    const tb = await passwordBroker(SLOW_ITERATIONS);
    await flood(tb, ['127.0.0.2'], 20);
    // a hash takes ~0.4 s: most of the twenty are still waiting
    expect(hashLoad().waiting).toBeGreaterThan(10);
    const failures = tb.broker.stats().authFailures;
    for (const s of sockets.splice(0)) s.destroy();
    const deadline = Date.now() + 10_000;
    while (hashLoad().waiting > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(hashLoad()).toMatchObject({ waiting: 0, sources: 0 });
    // Only the two hashes already running can still finish (and be answered, if they beat the
    // server side's close); the waiting ones were dropped unhashed.
    expect(tb.broker.stats().authFailures - failures).toBeLessThanOrEqual(2);
  }, 30_000);
});

describe('issue 12.10: the source address reaches the authenticator', () => {
  it('issue 12.10: over TCP and over WebSocket (the upgraded socket address)', async () => {
    const seen: Array<string | undefined> = [];
    const tb = await startBroker({
      listeners: [
        { port: 0, host: '127.0.0.1', protocol: 'mqtt' },
        { port: 0, host: '127.0.0.1', protocol: 'websockets' },
      ],
      allowAnonymous: false,
      authenticator: {
        authenticate: (req) => {
          seen.push(req.remoteAddress);
          return true;
        },
      },
    });
    brokers.push(tb);
    const tcp = RawClient.over(await openFrom(tb.port, '127.0.0.4'));
    expect((await tcp.handshake({ clientId: 't', username: 'u' })).reasonCode).toBe(0);
    const ws = new WebSocket(`ws://127.0.0.1:${tb.broker.addresses[1].port}`, 'mqtt', {
      localAddress: '127.0.0.5',
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const overWs = RawClient.over(createWebSocketStream(ws));
    expect((await overWs.handshake({ clientId: 'w', username: 'u' })).reasonCode).toBe(0);
    expect(seen).toEqual(['127.0.0.4', '127.0.0.5']);
    tcp.close();
    ws.terminate();
  });
});
