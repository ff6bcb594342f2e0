/**
 * Issue 18.4: persistence format 2 (compact queue records, persist-entry.ts) reads format 1. The
 * broker-lite of FORMAT1 (the last commit that wrote it) writes a log and a snapshot; this code
 * recovers each to the state FORMAT1 itself recovers, writes it as format 2, and recovers that
 * again; older code moves a format 2 file aside rather than cutting it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { mountTmpfs, tmpfsUnavailable } from '../../../test/helpers/tmpfs.ts';
import {
  type BrokerCtor,
  bundle,
  FORMAT1,
  format1Files,
  scenario,
  start,
  storedState,
} from './helpers/persist-versions.ts';
import { RawClient } from './helpers/raw-client.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'persist-format1-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const OLD = format1Files();
const run = OLD === undefined ? describe.skip : describe;
if (OLD === undefined)
  console.warn(`issue 18.4 format 1 test skipped: git cannot show ${FORMAT1} (a shallow clone?)`);

const DB = 'broker-lite.db';
let bundles: { Old: BrokerCtor; New: BrokerCtor } | undefined;
async function brokers(): Promise<{ Old: BrokerCtor; New: BrokerCtor }> {
  bundles ??= {
    Old: await bundle(tmp, 'format1', OLD as Record<string, string>),
    New: await bundle(tmp, 'format2', {}),
  };
  return bundles;
}

/** Starts `B` on a copy of `file`: the recovered state, and the file it leaves at close. */
async function recover(
  B: BrokerCtor,
  file: Buffer,
  name: string,
): Promise<{ state: unknown; closed: Buffer }> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, DB), file);
  const { broker } = await start(B, dir);
  const state = storedState(broker);
  await broker.close();
  return { state, closed: fs.readFileSync(path.join(dir, DB)) };
}

run('issue 18.4: format 2 reads format 1', () => {
  it('issue 18.4: a format 1 log and snapshot are recovered to the state the format 1 code recovers, and kept through format 2 snapshots', async () => {
    vi.spyOn(Date, 'now').mockReturnValue(1_800_000_000_000);
    try {
      const { Old, New } = await brokers();
      const dir = path.join(tmp, 'written-by-format1');
      const { broker, port } = await start(Old, dir);
      await scenario(broker, port);
      const log = fs.readFileSync(path.join(dir, DB));
      await broker.close();
      const snap = fs.readFileSync(path.join(dir, DB));
      expect(log.subarray(0, 8).toString()).toBe('BLITEDB1');
      expect(snap.subarray(0, 8).toString()).toBe('BLITEDB1');

      const want = (await recover(Old, log, 'log-by-format1')).state;
      // what the scenario leaves: s1 with 3 in flight and 1 queued, retained, a will waiting
      const s1 = (want as { sessions: Record<string, { inflight: unknown[]; queue: unknown[] }> }).sessions
        .s1;
      expect(s1.inflight).toHaveLength(3);
      expect(s1.queue).toHaveLength(0);
      expect((await recover(Old, snap, 'snap-by-format1')).state).toEqual(want);

      for (const [name, file] of [
        ['log', log],
        ['snap', snap],
      ] as const) {
        const r = await recover(New, file, `${name}-by-format2`);
        expect(r.state, name).toEqual(want);
        // written again as format 2 at start and at close, and read back the same
        expect(r.closed.subarray(0, 8).toString()).toBe('BLITEDB2');
        expect(r.closed.length).toBeLessThan(file.length);
        const again = await recover(New, r.closed, `${name}-by-format2-again`);
        expect(again.state, `${name} again`).toEqual(want);
        // FORMAT1 moves a format 2 file aside (unknown magic) instead of cutting it
        const odir = path.join(tmp, `${name}-format2-by-format1`);
        fs.mkdirSync(odir);
        fs.writeFileSync(path.join(odir, DB), r.closed);
        const o = await start(Old, odir);
        await o.broker.close();
        const aside = fs.readdirSync(odir).filter((f) => f.startsWith(`${DB}.corrupt-`));
        expect(aside).toHaveLength(1);
        expect(fs.readFileSync(path.join(odir, aside[0])).equals(r.closed)).toBe(true);
      }

      // This code's own log of the same scenario holds the same state.
      const ndir = path.join(tmp, 'written-by-format2');
      const n = await start(New, ndir);
      await scenario(n.broker, n.port);
      const nlog = fs.readFileSync(path.join(ndir, DB));
      await n.broker.close();
      expect(nlog.subarray(0, 8).toString()).toBe('BLITEDB2');
      expect((await recover(New, nlog, 'format2-log')).state).toEqual(want);
    } finally {
      vi.restoreAllMocks();
    }
  }, 60_000);

  const why = tmpfsUnavailable();
  it.skipIf(why !== undefined)(
    `issue 18.4: a format 1 log kept as the store (no room for the start-up snapshot) is marked format 2 before format 2 records are appended${why === undefined ? '' : ` (skipped: ${why})`}`,
    async () => {
      const { Old, New } = await brokers();
      const disk = mountTmpfs(4 << 20);
      try {
        const dir = path.join(disk.dir, 'db');
        const a = await start(Old, dir);
        const keeper = (await RawClient.connect(a.port, { clientId: 'keeper', clean: false })).client;
        await keeper.subscribe('k/#', 1);
        await keeper.disconnect();
        const pub = (await RawClient.connect(a.port, { clientId: 'pub' })).client;
        for (let i = 1; i <= 20; i++) {
          pub.publish(`r/${i}`, Buffer.alloc(40_000, i), 1, true, i);
          await pub.expect('puback');
        }
        pub.publish('k/old', 'queued by format 1', 1, false, 21);
        await pub.expect('puback');
        pub.close();
        // the log as a kill -9 leaves it: no snapshot at close
        const log = fs.readFileSync(path.join(dir, DB));
        await a.broker.close();
        fs.writeFileSync(path.join(dir, DB), log);
        expect(log.subarray(0, 8).toString()).toBe('BLITEDB1');
        disk.fill(300_000); // room for appends, not for an 800 KB snapshot

        const b = await start(New, dir);
        const head = Buffer.alloc(8);
        const fd = fs.openSync(path.join(dir, DB), 'r');
        fs.readSync(fd, head, 0, 8, 0);
        fs.closeSync(fd);
        expect(head.toString()).toBe('BLITEDB2');
        const pub2 = (await RawClient.connect(b.port, { clientId: 'pub2' })).client;
        pub2.publish('k/new', 'queued by format 2', 1, false, 1);
        await pub2.expect('puback');
        pub2.close();
        await b.broker.close();
        // no snapshot fitted: the format 1 records are still the file, format 2 ones after them
        const kept = fs.readFileSync(path.join(dir, DB));
        expect(kept.subarray(8, log.length).equals(log.subarray(8))).toBe(true);
        expect(kept.length).toBeGreaterThan(log.length);
        disk.free();

        // the kept log, format 1 records then format 2 ones, recovered whole
        fs.writeFileSync(path.join(dir, DB), kept);
        const c = await start(New, dir);
        try {
          expect(c.broker.retain.get('r/20')?.payload.length).toBe(40_000);
          const k = (await RawClient.connect(c.port, { clientId: 'keeper', clean: false })).client;
          const got = [await k.expect('publish'), await k.expect('publish')];
          expect(got.map((p) => Buffer.from(p.payload).toString())).toEqual([
            'queued by format 1',
            'queued by format 2',
          ]);
          k.close();
        } finally {
          await c.broker.close();
        }
      } finally {
        disk.unmount();
      }
    },
    60_000,
  );
});
