/**
 * broker-lite as a user runs it: `bin/broker-lite.js -c CONF --log-format json` in a child
 * process, its JSON log parsed as it comes (a test awaits a line, never sleeps), stopped with a
 * real signal. For what only a separate process shows: the exit code, SIGKILL at a chosen
 * moment, the broker's memory apart from the test's.
 */
import { type ChildProcess, spawn } from 'node:child_process';
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

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    followJsonLog(child, this);
  }

  /** Starts the CLI on `conf`; resolves once it logged `ready` (rejects if it exits first). */
  static async start(conf: string, timeoutMs = 20_000): Promise<BrokerProcess> {
    const child = spawn(process.execPath, [BIN, '-c', conf, '--log-format', 'json'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const p = new BrokerProcess(child);
    const ready = await Promise.race([
      p.waitFor((l) => l.msg === 'ready', timeoutMs),
      p.exited.then(({ code }) => {
        throw new Error(`broker-lite exited ${code} before ready:\n${p.stderrTail}`);
      }),
    ]);
    p.port = Number(String(ready.ports).split(',')[0]);
    return p;
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
