/**
 * A power-loss model of the 'batch' policy: only bytes written before an fdatasync() that has
 * completed survive, and a new file survives only after its directory was fsynced. node:fs is
 * wrapped to track exactly that; every put() must resolve only when its record is covered.
 */
import type * as fsTypes from 'node:fs';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

const fdPath = new Map<number, string>();
/** Bytes of each file known to be on stable storage. */
const durableSize = new Map<string, number>();
/** Files whose directory entry is on stable storage. */
const durableEntry = new Set<string>();

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof fsTypes>();
  const wrapped = { ...real };
  wrapped.openSync = ((path: fsTypes.PathLike, ...rest: unknown[]) => {
    const fd = (real.openSync as (...a: unknown[]) => number)(path, ...rest);
    fdPath.set(fd, String(path));
    return fd;
  }) as typeof real.openSync;
  wrapped.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    const path = fdPath.get(fd)!;
    const covered = real.fstatSync(fd).size;
    real.fdatasync(fd, (err) => {
      if (!err) durableSize.set(path, Math.max(durableSize.get(path) ?? 0, covered));
      cb(err);
    });
  }) as typeof real.fdatasync;
  wrapped.fsync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    const path = fdPath.get(fd)!;
    const isDir = real.fstatSync(fd).isDirectory();
    const entries = isDir ? real.readdirSync(path).map((n) => join(path, n)) : [];
    const covered = isDir ? 0 : real.fstatSync(fd).size;
    real.fsync(fd, (err) => {
      if (!err) {
        for (const e of entries) durableEntry.add(e);
        if (!isDir) durableSize.set(path, Math.max(durableSize.get(path) ?? 0, covered));
      }
      cb(err);
    });
  }) as typeof real.fsync;
  return { ...wrapped, default: wrapped };
});

const { DurableQueue } = await import('../src/node/durable-queue/index.ts');
const { recordSeqAt } = await import('./helpers/dq-files.ts');

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('batch policy under a power-loss model', () => {
  it.each([1, 4])(
    'resolves each put only after its bytes and its directory entry were fsynced (%i fsync rounds)',
    async (parallelFsyncs) => {
      const dirOf = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-dur-'));
      dirs.push(dirOf);
      const q = await DurableQueue.open(dirOf, { fsync: 'batch', segmentBytes: 64 << 10, parallelFsyncs });
      // seq -> whether its record was covered when put() resolved; checked against the files after
      const snapshots = new Map<number, { sizes: Map<string, number>; entries: Set<string> }>();
      const payload = new Uint8Array(200);
      let inflight: Promise<void>[] = [];
      for (let i = 0; i < 3000; i++) {
        inflight.push(
          q.put({ topic: 'd/t', payload, qos: 1, retain: false }).then((seq) => {
            snapshots.set(seq, { sizes: new Map(durableSize), entries: new Set(durableEntry) });
          }),
        );
        if (inflight.length === 100 + (i % 300)) {
          await Promise.all(inflight);
          inflight = [];
        }
      }
      await Promise.all(inflight);
      expect(snapshots.size).toBe(3000);
      // where each record ends, from the files
      const ends = new Map<number, { path: string; end: number }>();
      for (const name of readdirSync(dirOf).filter((n) => n.endsWith('.log'))) {
        const path = join(dirOf, name);
        const b = readFileSync(path);
        for (let p = 8; p + 21 <= b.length; p += b.readUInt32LE(p)) {
          ends.set(recordSeqAt(b, p, name), { path, end: p + b.readUInt32LE(p) });
        }
      }
      expect(readdirSync(dirOf).filter((n) => n.endsWith('.log')).length).toBeGreaterThan(5);
      for (const [seq, snap] of snapshots) {
        const where = ends.get(seq)!;
        expect(where, `seq ${seq}`).toBeDefined();
        if ((snap.sizes.get(where.path) ?? 0) < where.end) {
          throw new Error(`seq ${seq} resolved before ${basename(where.path)} was fsynced past ${where.end}`);
        }
        if (!snap.entries.has(where.path)) {
          throw new Error(
            `seq ${seq} resolved before the directory entry of ${basename(where.path)} was fsynced`,
          );
        }
      }
      await q.close();
    },
  );
});

describe('issue 18.4: batch with a commit window under the power-loss model', () => {
  it('issue 18.4: the window bounds fsyncs/s and no put resolves before the fsync that covers it', async () => {
    const dirOf = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-win-'));
    dirs.push(dirOf);
    const windowMs = 100;
    const q = await DurableQueue.open(dirOf, { fsync: 'batch', commitWindowMs: windowMs });
    const payload = new Uint8Array(120);
    const covered: boolean[] = [];
    const waits: number[] = [];
    const puts: Promise<void>[] = [];
    const t0 = Date.now();
    // a device frame every 10 ms for ~1 s: without a window, about one fsync per frame
    for (let i = 0; i < 100; i++) {
      const at = Date.now();
      puts.push(
        q.put({ topic: 'd/t', payload, qos: 1, retain: false }).then((seq) => {
          waits.push(Date.now() - at);
          covered.push(isCovered(dirOf, seq));
        }),
      );
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(puts);
    const seconds = (Date.now() - t0) / 1000;
    expect(covered.length).toBe(100);
    expect(covered.every(Boolean)).toBe(true);
    const { fsyncs } = q.stats();
    // one round per window at most, plus the one the last puts' window starts
    expect(fsyncs).toBeLessThanOrEqual(Math.ceil((seconds * 1000) / windowMs) + 1);
    expect(fsyncs).toBeGreaterThanOrEqual(3);
    // the window is the latency it costs: no put waits much longer than one window plus an fsync
    expect(Math.max(...waits)).toBeLessThan(windowMs + 1000);
    await q.close();
  });

  it('issue 18.4: a put arriving while the queue is idle waits for the window, then one fsync covers all of it', async () => {
    const dirOf = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-win-'));
    dirs.push(dirOf);
    const q = await DurableQueue.open(dirOf, { fsync: 'batch', commitWindowMs: 300 });
    const at = Date.now();
    const first = q.put({ topic: 'd/t', payload: new Uint8Array(10), qos: 1, retain: false });
    await new Promise((r) => setTimeout(r, 100));
    const second = q.put({ topic: 'd/t', payload: new Uint8Array(10), qos: 1, retain: false });
    const before = q.stats().fsyncs;
    const seqs = await Promise.all([first, second]);
    expect(Date.now() - at).toBeGreaterThanOrEqual(290);
    expect(q.stats().fsyncs - before).toBe(1);
    for (const seq of seqs) expect(isCovered(dirOf, seq)).toBe(true);
    await q.close();
  });

  it('issue 18.4: under a window the records reach the segment file at the commit, not before (a tail page dirtied once per commit)', async () => {
    const dirOf = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-win-'));
    dirs.push(dirOf);
    const q = await DurableQueue.open(dirOf, { fsync: 'batch', commitWindowMs: 400 });
    const segment = () => readdirSync(dirOf).find((f) => f.endsWith('.log'))!;
    const sizeNow = () => readFileSync(join(dirOf, segment())).length;
    const empty = sizeNow();
    const puts = [1, 2, 3].map(() =>
      q.put({ topic: 'd/t', payload: new Uint8Array(100), qos: 1, retain: false }),
    );
    // several turns of the event loop: a write scheduled for the next turn would have happened
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    // kept in the queue's buffer until the window ends: the kernel cannot write the tail page
    // back (and the next append dirty it again) in the middle of a long window
    expect(sizeNow()).toBe(empty);
    const seqs = await Promise.all(puts);
    expect(sizeNow()).toBeGreaterThan(empty + 300);
    for (const seq of seqs) expect(isCovered(dirOf, seq)).toBe(true);
    // and the records are read back after the commit
    expect(q.read(0, 10).map((e) => e.seq)).toEqual(seqs);
    await q.close();
  });

  it('issue 18.4: the window is for batch only, and bounded', async () => {
    const dirOf = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-win-'));
    dirs.push(dirOf);
    await expect(
      DurableQueue.open(dirOf, { fsync: { intervalMs: 100 }, commitWindowMs: 100 }),
    ).rejects.toThrow(/commitWindowMs/);
    await expect(DurableQueue.open(dirOf, { commitWindowMs: 300_001 })).rejects.toThrow(/commitWindowMs/);
  });
});

/** Whether seq's record, found in the files, lies within what the model says is durable. */
function isCovered(dirOf: string, seq: number): boolean {
  for (const name of readdirSync(dirOf).filter((n) => n.endsWith('.log'))) {
    const path = join(dirOf, name);
    const b = readFileSync(path);
    for (let p = 8; p + 21 <= b.length; p += b.readUInt32LE(p)) {
      if (recordSeqAt(b, p, name) !== seq) continue;
      return (durableSize.get(path) ?? 0) >= p + b.readUInt32LE(p) && durableEntry.has(path);
    }
  }
  return false;
}
