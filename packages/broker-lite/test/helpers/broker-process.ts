/**
 * broker-lite as a user runs it: `bin/broker-lite.js -c CONF --log-format json` in a child
 * process, its JSON log parsed as it comes (a test awaits a line, never sleeps), stopped with a
 * real signal. For what only a separate process shows: the exit code, SIGKILL at a chosen
 * moment, the broker's memory apart from the test's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followJsonLog, type LogWaiter } from '../../../../test/helpers/json-log.ts';

const BIN = fileURLToPath(new URL('../../bin/broker-lite.js', import.meta.url));

export interface BrokerLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export class BrokerProcess {
  readonly lines: BrokerLine[] = [];
  /** @internal followJsonLog's */
  waiters: Array<LogWaiter<BrokerLine>> = [];
  /** @internal followJsonLog's */
  stderrTail = '';
  /** The first listener's port, from the `ready` line. */
  port = 0;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /** startText's: the directory of its config file (removed at stop) and the config's first lines. */
  dir = '';
  baseConf = '';

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    followJsonLog(child, this);
  }

  /**
   * Writes `dir/broker.conf` in a new temporary directory (a loopback listener on an ephemeral
   * port, anonymous clients, no `$SYS`, then `extra`) and starts the CLI on it under `nodeArgs`.
   */
  static async startText(extra: string, nodeArgs: string[] = []): Promise<BrokerProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'bl-proc-'));
    const base = 'listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 0\n';
    const conf = join(dir, 'broker.conf');
    writeFileSync(conf, `${base}${extra}\n`);
    const p = BrokerProcess.launch(conf, nodeArgs);
    p.dir = dir;
    p.baseConf = base;
    void p.exited.then(() => rmSync(dir, { recursive: true, force: true }));
    await p.ready();
    return p;
  }

  /** Starts the CLI on `conf`; resolves once it logged `ready` (rejects if it exits first). */
  static async start(conf: string, timeoutMs = 20_000): Promise<BrokerProcess> {
    const p = BrokerProcess.launch(conf);
    await p.ready(timeoutMs);
    return p;
  }

  /** Starts the CLI on `conf` and returns at once (for a kill during start-up). */
  static launch(conf: string, nodeArgs: string[] = []): BrokerProcess {
    const child = spawn(process.execPath, [...nodeArgs, BIN, '-c', conf, '--log-format', 'json'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return new BrokerProcess(child);
  }

  /** Resolves once it logged `ready` (with `port` set); rejects if it exits first. */
  async ready(timeoutMs = 20_000): Promise<void> {
    const line = await this.whileRunning(this.waitFor((l) => l.msg === 'ready', timeoutMs));
    this.port = Number(String(line.ports).split(',')[0]);
  }

  get pid(): number {
    return this.child.pid as number;
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

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first log line matching `pred`, already seen or still to come. */
  waitFor(pred: (l: BrokerLine) => boolean, timeoutMs = 15_000): Promise<BrokerLine> {
    const hit = this.lines.find(pred);
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w: LogWaiter<BrokerLine> = {
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`broker-lite: no matching log line in ${timeoutMs} ms:\n${this.stderrTail}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** `p`, or a rejection naming the exit (and the log's tail) if the process ends first. */
  whileRunning<T>(p: Promise<T>): Promise<T> {
    return Promise.race([
      p,
      this.exited.then(({ code, signal }) => {
        throw new Error(`broker-lite exited (${code ?? signal}):\n${this.stderrTail}`);
      }),
    ]);
  }

  /** Sends `signal` (unless it has exited) and resolves with how it exited. */
  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

/**
 * Writes `dir/broker.conf`: one loopback listener on an ephemeral port, anonymous clients, no
 * `$SYS`, persistence in `dir/db`, then `extra` lines. Returns both paths.
 */
export function persistentConf(dir: string, extra: string[] = []): { conf: string; db: string } {
  const db = join(dir, 'db');
  const conf = join(dir, 'broker.conf');
  writeFileSync(
    conf,
    [
      'listener 0 127.0.0.1',
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${db}`,
      'sys_interval 0',
      ...extra,
      '',
    ].join('\n'),
  );
  return { conf, db };
}

/**
 * The broker processes a test file started, and whatever else it wants undone after each test
 * (`defer`): `cleanup()` in afterEach kills them, then runs the deferred steps in reverse.
 */
export class BrokerProcesses {
  private readonly list: BrokerProcess[] = [];
  private deferred: Array<() => void> = [];

  /** Registers a cleanup step (closing a client, a watcher, unmounting); returns `value`. */
  defer<T>(value: T, undo: (value: T) => void): T {
    this.deferred.push(() => undo(value));
    return value;
  }

  async start(conf: string): Promise<BrokerProcess> {
    const p = this.launch(conf);
    await p.ready();
    return p;
  }

  launch(conf: string): BrokerProcess {
    const p = BrokerProcess.launch(conf);
    this.list.push(p);
    return p;
  }

  async cleanup(): Promise<void> {
    for (const p of this.list.splice(0)) await p.stop('SIGKILL');
    const steps = this.deferred.reverse();
    this.deferred = [];
    for (const undo of steps) undo();
  }
}
