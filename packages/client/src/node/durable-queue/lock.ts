/**
 * One process owns a queue directory. The lock file holds `pid boot-id start-time`. A lock is
 * stale, and taken over, when its pid is not running, when it was taken before the last reboot
 * (pids are reused across boots, and a power cut is exactly when a stale lock is left behind),
 * or when the process now holding that pid started at another time (pid reuse; in a container
 * a restarted agent is pid 1 again). Within one process a directory can be opened once.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DurableQueueError } from './errors.ts';
import { FILE_MODE, readSmallFile } from './io.ts';

export const LOCK_FILE = 'LOCK';
const LOCK_MAX_BYTES = 256;
const heldHere = new Set<string>();

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '-';
  }
}

/** Start time of a process in clock ticks since boot (Linux), '-' where /proc is not there. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the parenthesised command name (which may hold spaces); starttime is field 22
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '-';
  } catch {
    return '-';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerLive(text: string, boot: string): number | null {
  const [pidText, ownerBoot, ownerStart] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || ownerBoot !== boot || !alive(pid)) return null;
  if (pid === process.pid) return null; // not held by this process (checked first): an earlier life of this pid
  const start = startTime(pid);
  if (ownerStart !== undefined && ownerStart !== '-' && start !== '-' && start !== ownerStart) return null;
  return pid;
}

/** Returns a release function. Throws DurableQueueError LOCKED when a live owner exists. */
export function acquireLock(dir: string): () => void {
  const key = resolve(dir);
  if (heldHere.has(key))
    throw new DurableQueueError('LOCKED', `queue ${dir} is already open in this process`);
  const path = join(dir, LOCK_FILE);
  const boot = bootId();
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let text = '';
      try {
        // "pid boot-id start-time" is under 100 bytes: anything much larger is not a lock of ours
        text = readSmallFile(path, LOCK_MAX_BYTES)?.toString('utf8') ?? '';
      } catch {
        continue; // vanished between open and read: the owner released it
      }
      const pid = ownerLive(text, boot);
      if (pid !== null) {
        throw new DurableQueueError('LOCKED', `queue ${dir} is locked by running process ${pid} (${path})`);
      }
      try {
        unlinkSync(path);
      } catch {
        // another process took it over first; the next O_EXCL open decides
      }
      continue;
    }
    try {
      writeSync(fd, `${process.pid} ${boot} ${startTime(process.pid)}\n`);
    } catch (err) {
      // a full disk: leave no empty lock behind (it would be taken over as stale, but say nothing)
      closeSync(fd);
      fd = -1;
      try {
        unlinkSync(path);
      } catch {
        // nothing more to undo
      }
      throw err;
    } finally {
      if (fd >= 0) closeSync(fd);
    }
    heldHere.add(key);
    return () => {
      heldHere.delete(key);
      try {
        if (readSmallFile(path, LOCK_MAX_BYTES)?.toString('utf8').startsWith(`${process.pid} `))
          unlinkSync(path);
      } catch {
        // already gone
      }
    };
  }
  throw new DurableQueueError('LOCKED', `queue ${dir}: could not take over the stale lock ${path}`);
}
