/**
 * Start Debian's mosquitto on a free loopback port for a test, and stop, SIGKILL or restart it.
 * Readiness is a successful TCP connect to the port, never a sleep.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';
const LOG_LIMIT = 256 * 1024;

/** Children still running (brokers, cluster nodes): killed if this process exits without stop(), so none outlive it. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
export function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
}

export function hasMosquitto(): boolean {
  return existsSync(MOSQUITTO_BIN);
}

/** A port the kernel just handed out (bind 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface MosquittoOptions {
  /**
   * Extra mosquitto.conf lines, written after `listener PORT 127.0.0.1` (so listener settings
   * such as cafile / certfile / require_certificate apply to it). `allow_anonymous true` is
   * added unless these lines set allow_anonymous.
   */
  config?: string;
  port?: number;
  /** Where config, persistence and logs go; default a fresh tmp dir removed by stop(). */
  dir?: string;
}

export interface Mosquitto {
  port: number;
  dir: string;
  readonly pid: number | undefined;
  /** What mosquitto wrote to stderr/stdout (its log; the last 128..256 KiB). */
  log(): string;
  /** SIGTERM (mosquitto saves persistence), wait for exit, remove the tmp dir. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit; the dir stays for restart(). */
  kill(): Promise<void>;
  /** Send a signal (SIGSTOP, SIGCONT, SIGUSR1 to save persistence, ...). */
  signal(sig: NodeJS.Signals): void;
  /** Start again on the same port with the same config (after kill() or stop without cleanup). */
  restart(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, log: () => string, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}) before listening:\n${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until)
      throw new Error(`mosquitto did not listen on ${port} in ${timeoutMs} ms:\n${log()}`);
    // Bounded poll: nothing signals "listening" except the port itself.
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const port = options.port ?? (await freePort());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(path.join(os.tmpdir(), 'mosquitto-'));
  const extra = options.config ?? '';
  const lines = [
    // Running as root, mosquitto would drop to the `mosquitto` user and fail to read our files.
    'user root',
    `listener ${port} 127.0.0.1`,
    /^\s*allow_anonymous\b/m.test(extra) ? '' : 'allow_anonymous true',
    // Persistence files go to the tmp dir, never the caller's working directory.
    /^\s*persistence_location\b/m.test(extra) ? '' : `persistence_location ${dir}/`,
    extra,
  ];
  const confPath = path.join(dir, 'mosquitto.conf');
  writeFileSync(confPath, `${lines.join('\n')}\n`);
  let output = '';
  let child: ChildProcess;
  const spawnIt = async () => {
    child = spawn(MOSQUITTO_BIN, ['-c', confPath], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    // The log is kept for error messages, bounded: a long test must not grow it without end.
    const keep = (d: Buffer) => {
      output += d;
      if (output.length > LOG_LIMIT) output = output.slice(-LOG_LIMIT / 2);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    await waitForPort(port, child, () => output);
  };
  await spawnIt();
  return {
    port,
    dir,
    get pid() {
      return child.pid;
    },
    log: () => output,
    async stop() {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      await exited(child);
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
    signal(sig) {
      child.kill(sig);
    },
    async restart() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited(child);
      }
      await spawnIt();
    },
  };
}
