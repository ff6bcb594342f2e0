/**
 * One process owns a queue directory. The lock file holds `pid boot-id`; a lock whose pid is
 * not running, or that was taken before the last reboot (pids are reused across boots, and a
 * power cut is exactly when a stale lock is left behind), is taken over.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DurableQueueError } from './errors.ts';

export const LOCK_FILE = 'LOCK';

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
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

/** Returns a release function. Throws DurableQueueError LOCKED when a live owner exists. */
export function acquireLock(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  const boot = bootId();
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let text = '';
      try {
        text = readFileSync(path, 'utf8');
      } catch {
        // vanished between open and read: the owner released it, try again
        continue;
      }
      const [pidText, ownerBoot] = text.trim().split(/\s+/);
      const pid = Number(pidText);
      const live = Number.isInteger(pid) && pid > 0 && ownerBoot === boot && alive(pid);
      if (live) {
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
      writeSync(fd, `${process.pid} ${boot}\n`);
    } finally {
      closeSync(fd);
    }
    return () => {
      try {
        if (readFileSync(path, 'utf8').startsWith(`${process.pid} `)) unlinkSync(path);
      } catch {
        // already gone
      }
    };
  }
  throw new DurableQueueError('LOCKED', `queue ${dir}: could not take over the stale lock ${path}`);
}
