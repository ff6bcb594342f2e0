/**
 * A small, real file system that a test can fill: a tmpfs mounted on a fresh directory. Full-disk
 * behaviour (ENOSPC on write, on fsync, in the middle of a record) cannot be faked honestly with
 * a mock: the kernel decides where a write stops. Mounting needs root (CI runs as root); anything
 * else gets a reason to skip with.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Tmpfs {
  /** The mount point. */
  readonly dir: string;
  /** Fills the free space with a ballast file, leaving about `leaveBytes` (default 0). */
  fill(leaveBytes?: number): void;
  /** Deletes the ballast: space is back. */
  free(): void;
  /** Bytes free now. */
  freeBytes(): number;
  unmount(): void;
}

/** Why a tmpfs cannot be mounted here, or undefined when it can. */
export function tmpfsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'tmpfs mounts need Linux';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    return 'mounting a tmpfs needs root (CI runs the tests as root)';
  return undefined;
}

/** Mounts a tmpfs of `sizeBytes` (rounded up to pages) on a new directory. */
export function mountTmpfs(sizeBytes: number): Tmpfs {
  const why = tmpfsUnavailable();
  if (why !== undefined) throw new Error(why);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mqtt-edge-tmpfs-'));
  execFileSync('mount', [
    '-t',
    'tmpfs',
    '-o',
    `size=${Math.ceil(sizeBytes / 4096) * 4096},mode=0700`,
    'tmpfs',
    dir,
  ]);
  const ballast = path.join(dir, '.ballast');
  let mounted = true;
  const freeBytes = (): number => {
    const out = execFileSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' });
    return Number(out.trim().split('\n').pop());
  };
  return {
    dir,
    freeBytes,
    fill(leaveBytes = 0) {
      const n = freeBytes() - leaveBytes;
      if (n <= 0) return;
      try {
        writeFileSync(ballast, Buffer.alloc(n), { flag: 'a' });
      } catch (err) {
        // ENOSPC after writing what fits is what we want: the disk is full.
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    },
    free() {
      rmSync(ballast, { force: true });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      try {
        execFileSync('umount', ['-l', dir]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
