/**
 * Sees broker-lite's snapshots from outside the process: a snapshot writes
 * `broker-lite.db.tmp` and then renames it over the log (or, when it fails, removes it), so the
 * temporary file appearing and going away are the start and the end of one attempt. inotify
 * (fs.watch) reports both as they happen; nothing is polled.
 */
import fs from 'node:fs';

export const TMP_NAME = 'broker-lite.db.tmp';

export class SnapshotWatch {
  /** Snapshot attempts started and ended so far. */
  started = 0;
  ended = 0;
  /** Milliseconds from the temporary file's creation to its rename, of the attempts seen whole. */
  readonly spans: number[] = [];
  private startedAt = 0;
  private readonly watcher: fs.FSWatcher;
  private waiters: Array<{ ok: () => boolean; resolve: () => void }> = [];

  constructor(readonly dir: string) {
    this.watcher = fs.watch(dir, (event, name) => {
      if (event !== 'rename' || name !== TMP_NAME) return;
      // Creation and removal (or rename away) alternate, one event each (writes are 'change').
      if (this.started === this.ended) {
        this.started++;
        this.startedAt = performance.now();
      } else {
        this.ended++;
        this.spans.push(performance.now() - this.startedAt);
      }
      for (const w of [...this.waiters])
        if (w.ok()) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve();
        }
    });
  }

  /** Resolves when `ok()` holds (checked on every event). */
  until(ok: () => boolean, timeoutMs = 15_000): Promise<void> {
    if (ok()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(`no snapshot event in ${timeoutMs} ms (started ${this.started}, ended ${this.ended})`),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.push({ ok, resolve: done });
    });
  }

  /** The next snapshot attempt that starts from now on, until it has ended. */
  async nextAttempt(timeoutMs = 15_000): Promise<void> {
    const from = this.started;
    await this.until(() => this.started > from && this.ended >= this.started, timeoutMs);
  }

  close(): void {
    this.watcher.close();
  }
}
