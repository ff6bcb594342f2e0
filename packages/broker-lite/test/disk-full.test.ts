/**
 * Issue 12.6: short writes and full disks, on a real full file system (a small tmpfs, so the
 * kernel decides where a write stops) with broker-lite as a child process of the real CLI. What
 * the broker acknowledged must be on disk; while the disk is full it refuses new QoS 1/2
 * messages (MQTT 5: 0x97) and keeps serving everything else; it recovers by itself when space
 * returns; a snapshot that did not fit never replaces the log; a full disk never ends the process.
 */
import { type PubackPacket, ReasonCode } from '@mqtt-edge/codec';
import { afterEach, describe, expect, it } from 'vitest';
import { mountTmpfs, type Tmpfs, tmpfsUnavailable } from '../../../test/helpers/tmpfs.ts';
import { type BrokerProcess, BrokerProcesses, persistentConf } from './helpers/broker-process.ts';
import { RawClient, text } from './helpers/raw-client.ts';
import { SnapshotWatch } from './helpers/snapshot-watch.ts';

const why = tmpfsUnavailable();
const procs = new BrokerProcesses();
afterEach(() => procs.cleanup());

/** An 8 MB tmpfs holding the config and the persistence directory. */
function setup(extra: string[]): { fs: Tmpfs; db: string; conf: string } {
  const t = procs.defer(mountTmpfs(8 << 20), (m) => m.unmount());
  return { fs: t, ...persistentConf(t.dir, extra) };
}

const start = (conf: string): Promise<BrokerProcess> => procs.start(conf);

async function client(port: number, clientId: string, version: 4 | 5 = 4, clean = true): Promise<RawClient> {
  const c = (await RawClient.connect(port, { clientId, protocolVersion: version, clean })).client;
  return procs.defer(c, (x) => x.close());
}

/** Everything a persistent session has queued: received, acknowledged, in order. */
async function drain(port: number, clientId: string): Promise<string[]> {
  const { client: c, connack } = await RawClient.connect(port, { clientId, clean: false });
  procs.defer(c, (x) => x.close());
  expect(connack.sessionPresent).toBe(true);
  const got: string[] = [];
  for (;;) {
    const p = await c.next(1000).catch(() => null);
    if (p === null) break;
    if (p.type !== 'publish') continue;
    got.push(p.topic);
    c.send({ type: 'puback', packetId: p.packetId as number });
  }
  return got;
}

const big = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

describe.skipIf(why !== undefined)(`issue 12.6: a full disk${why ? ` (skipped: ${why})` : ''}`, () => {
  it('issue 12.6: a short write is not acknowledged; while full QoS 1 gets 0x97 (v5) or no ack (3.1.1), QoS 0 and subscriptions still work; freed space is taken back by itself; after kill -9 every acknowledged message is there', async () => {
    const { fs: disk, conf } = setup(['autosave_interval 3600']);
    const a = await start(conf);
    // Two persistent sessions: one reads during the outage, one only after the restart.
    for (const id of ['reader', 'keeper']) {
      const s = await client(a.port, id, 4, false);
      await s.subscribe('d/#', 1);
      await s.disconnect();
    }
    const live = await client(a.port, 'live');
    await live.subscribe('d/#', 0);
    const p5 = await client(a.port, 'p5', 5);
    const q5 = await client(a.port, 'q5', 5);
    const p4 = await client(a.port, 'p4', 4);

    p5.publish('d/before', 'b', 1, false, 1);
    expect((await p5.expect('puback')).reasonCode ?? 0).toBe(0);
    expect((await live.expect('publish')).topic).toBe('d/before');

    // About one page left: the next 16 KB record is written in part, then the disk is full.
    disk.fill(6000);
    p5.publish('d/short', big(16_384, 0x73), 1, false, 2);
    const failed = await a.whileRunning(a.waitFor((l) => l.msg === 'persistence write failed'));
    expect(failed.level).toBe('error');
    // Routed before the write failed (live subscribers have it), acknowledged only once on disk.
    expect((await live.expect('publish')).topic).toBe('d/short');
    expect(await p5.silent(300)).toBe(true);

    // New QoS 1 while full: MQTT 5 hears 0x97 at once; p5's comes after its pending ack (order).
    q5.publish('d/refused5', 'r', 1, false, 1);
    const refused = await q5.expect('puback');
    expect(refused.reasonCode).toBe(ReasonCode.QuotaExceeded);
    p5.publish('d/refused5b', 'r', 1, false, 3);
    // 3.1.1 has no negative PUBACK: no ack (the client keeps the message), the connection stays.
    p4.publish('d/refused4', 'r4', 1, false, 1);
    expect(await p4.silent(300)).toBe(true);
    expect(p4.isClosed).toBe(false);
    // QoS 0 and subscriptions are served.
    p4.publish('d/zero', 'z', 0);
    expect((await live.expect('publish')).topic).toBe('d/zero');
    expect(await p4.subscribe('x/#', 0, 7)).toEqual([0]);
    // What is stored is delivered.
    expect(await drain(a.port, 'reader')).toEqual(['d/before', 'd/short']);
    expect(a.running).toBe(true);

    disk.free();
    // Recovers by itself: the withheld acks go out in order, the refusal after them.
    const ack2 = (await p5.expect('puback', 10_000)) as PubackPacket;
    expect([ack2.packetId, ack2.reasonCode ?? 0]).toEqual([2, 0]);
    const ack3 = await p5.expect('puback');
    expect([ack3.packetId, ack3.reasonCode]).toEqual([3, ReasonCode.QuotaExceeded]);
    await a.waitFor((l) => l.msg === 'persistence writable again');
    // The 3.1.1 publisher is closed so that it re-sends what was not acknowledged.
    await p4.closed;
    const p4b = await client(a.port, 'p4', 4);
    p4b.send({
      type: 'publish',
      topic: 'd/refused4',
      payload: Buffer.from('r4'),
      qos: 1,
      retain: false,
      dup: true,
      packetId: 1,
    });
    expect((await p4b.expect('puback')).packetId).toBe(1);
    q5.publish('d/after', 'a', 1, false, 2);
    expect((await q5.expect('puback')).reasonCode ?? 0).toBe(0);

    expect(await a.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    const b = await start(conf);
    expect(await drain(b.port, 'keeper')).toEqual(['d/before', 'd/short', 'd/refused4', 'd/after']);
  }, 60_000);

  it('issue 12.6: a snapshot that does not fit is never renamed over the log, and ENOSPC in autosave does not end the process', async () => {
    const { fs: disk, db, conf } = setup(['autosave_interval 1']);
    const a = await start(conf);
    const watch = procs.defer(new SnapshotWatch(db), (w) => w.close());
    const pub = await client(a.port, 'pub');
    const N = 30;
    for (let i = 1; i <= N; i++) {
      pub.publish(`r/${i}`, big(40_000, i), 1, true, i);
      expect((await pub.expect('puback')).packetId).toBe(i);
    }
    // Room for small appends, not for a 1.2 MB snapshot: the autosave's write comes up short.
    disk.fill(400_000);
    await a.whileRunning(watch.nextAttempt());
    expect(a.running).toBe(true);
    pub.publish('r/small', 'still', 1, true, 100);
    expect((await pub.expect('puback')).packetId).toBe(100);
    // Not a byte left: the autosave's first write fails outright.
    disk.fill(0);
    await a.whileRunning(watch.nextAttempt());
    await a.whileRunning(watch.nextAttempt());
    expect(a.running).toBe(true);
    expect(await pub.subscribe('z/#', 0, 5)).toEqual([0]);

    expect(await a.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    disk.free();
    const b = await start(conf);
    const check = await client(b.port, 'check');
    await check.subscribe('r/#', 0);
    const seen = new Map<string, Buffer>();
    for (let i = 0; i <= N; i++) {
      const p = await check.expect('publish');
      seen.set(p.topic, Buffer.from(p.payload));
    }
    for (let i = 1; i <= N; i++) expect(seen.get(`r/${i}`)?.equals(big(40_000, i))).toBe(true);
    expect(text({ payload: seen.get('r/small') as Buffer })).toBe('still');
    expect(await b.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 60_000);

  it('issue 12.6: a disk too full for the start-up snapshot: the broker starts on the recovered log and keeps what it acknowledges', async () => {
    const { fs: disk, conf } = setup(['autosave_interval 0']);
    const a = await start(conf);
    const keeper = await client(a.port, 'keeper', 4, false);
    await keeper.subscribe('k/#', 1);
    await keeper.disconnect();
    const pub = await client(a.port, 'pub');
    for (let i = 1; i <= 30; i++) {
      pub.publish(`r/${i}`, big(40_000, i), 1, true, i);
      await pub.expect('puback');
    }
    expect(await a.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    disk.fill(400_000); // room for appends, not for a 1.2 MB snapshot
    const b = await start(conf);
    await b.waitFor((l) => l.msg === 'persistence snapshot failed; the log is kept');
    const pub2 = await client(b.port, 'pub2');
    pub2.publish('k/1', 'after', 1, false, 1);
    expect((await pub2.expect('puback')).reasonCode ?? 0).toBe(0);
    expect(await b.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    disk.free();
    const c = await start(conf);
    expect(await drain(c.port, 'keeper')).toEqual(['k/1']);
  }, 60_000);
});
