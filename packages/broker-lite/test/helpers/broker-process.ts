/**
 * broker-lite as a child process (the `broker-lite` bin, JSON log on stderr), for tests that
 * need a real process: its own heap limit, its RSS read from /proc, its memory_limit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followJsonLog, type JsonLogState, type LogWaiter } from '../../../../test/helpers/json-log.ts';

const BIN = fileURLToPath(new URL('../../bin/broker-lite.js', import.meta.url));

export type BrokerLogLine = Record<string, unknown> & { msg?: string; level?: string };

export class BrokerProcess implements JsonLogState<BrokerLogLine> {
  lines: BrokerLogLine[] = [];
  waiters: Array<LogWaiter<BrokerLogLine>> = [];
  stderrTail = '';
  port = 0;
  private readonly exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    /** Where its config file (broker.conf) lives. */
    readonly dir: string,
    /** The config's fixed first lines (listener, anonymous access, no $SYS). */
    readonly baseConf: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    followJsonLog(child, this);
  }

  /** Starts the bin with `conf` (a `listener 0 127.0.0.1` is added) under `nodeArgs`. */
  static async start(conf: string, nodeArgs: string[] = []): Promise<BrokerProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'bl-proc-'));
    const file = join(dir, 'broker.conf');
    const base = 'listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 0\n';
    writeFileSync(file, `${base}${conf}\n`);
    const child = spawn(process.execPath, [...nodeArgs, BIN, '-c', file, '--log-format', 'json'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const bp = new BrokerProcess(child, dir, base);
    const ready = await bp.waitFor((l) => l.msg === 'ready', 20_000);
    bp.port = Number(ready.ports);
    return bp;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resident set now and its peak (VmHWM), bytes, from /proc (Linux). */
  memory(): { rss: number; peak: number } {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const kb = (key: string): number =>
      Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  }

  /** Resets VmHWM to the current RSS (Linux 4.0+: write 5 to clear_refs), so a peak is this test's. */
  resetPeak(): void {
    writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
  }

  waitFor(pred: (l: BrokerLogLine) => boolean, timeoutMs = 15_000): Promise<BrokerLogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w: LogWaiter<BrokerLogLine> = {
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no such log line within ${timeoutMs} ms; stderr: ${this.stderrTail}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** SIGTERM, then the exit code (SIGKILL after 10 s). */
  async stop(): Promise<number | null> {
    if (this.alive) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await this.exited;
    clearTimeout(timer);
    if (code !== 0)
      process.stderr.write(`broker exited ${code} (${this.child.signalCode}); stderr: ${this.stderrTail}\n`);
    rmSync(this.dir, { recursive: true, force: true });
    return code;
  }
}
