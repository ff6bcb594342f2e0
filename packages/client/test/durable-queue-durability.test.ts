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
        for (let p = 8; p + 28 <= b.length; p += b.readUInt32LE(p)) {
          ends.set(b.readUInt32LE(p + 8), { path, end: p + b.readUInt32LE(p) });
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
