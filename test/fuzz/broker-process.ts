/**
 * broker-lite as the user runs it: a child process of its CLI (bin/broker-lite.js) with a
 * mosquitto.conf, a password file hashed by broker-lite's own `passwd` code and an ACL file,
 * all written here. Listeners bind port 0 on 127.0.0.1; the ports come from the CLI's `ready`
 * log line (`ports`, in listener order), read from its JSON log on stderr. Start, SIGTERM, kill -9, restart on the same storage,
 * and the process's resident set size from /proc.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashPassword } from '@mqtt-edge/broker-lite';
import { followJsonLog, type JsonLogState, type LogWaiter } from '../helpers/json-log.ts';
import type { Credentials } from './wire.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');

/**
 * Who may do what. The fuzz logs in as alice and bob; `probe` and `keeper` belong to the
 * invariants, and nothing the fuzz is allowed to do touches their topics.
 */
export const ACL = `# written by test/fuzz/broker-process.ts
user alice
topic readwrite alice/#
topic read public/#
topic deny alice/secret/#
user bob
topic readwrite bob/#
topic write public/#
user probe
topic readwrite probe/#
user keeper
topic readwrite keep/#
pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write users/%u/outbox/+
`;

export interface BrokerFiles {
  dir: string;
  conf: string;
  store: string;
  creds: Credentials;
}

/**
 * Writes the configuration, password and ACL files under `dir` (`extraConfig`: lines appended to
 * the configuration, which override earlier ones). Queues are bounded in bytes
 * (`max_queued_bytes`) so that what the fuzz's persistent sessions may legitimately hold stays
 * well inside the RSS bound; snapshots run every 2 s so that kill -9 can land in one.
 */
export async function writeBrokerFiles(dir: string, extraConfig: string[] = []): Promise<BrokerFiles> {
  const creds: Credentials = {
    alice: randomBytes(9).toString('base64url'),
    bob: randomBytes(9).toString('base64url'),
    probe: randomBytes(12).toString('base64url'),
    keeper: randomBytes(12).toString('base64url'),
  };
  const lines: string[] = [];
  for (const [user, password] of Object.entries(creds)) lines.push(`${user}:${await hashPassword(password)}`);
  const passwd = path.join(dir, 'passwd');
  const acl = path.join(dir, 'acl');
  const conf = path.join(dir, 'mosquitto.conf');
  const store = path.join(dir, 'store');
  mkdirSync(store, { recursive: true, mode: 0o700 });
  writeFileSync(passwd, `${lines.join('\n')}\n`, { mode: 0o600 });
  writeFileSync(acl, ACL, { mode: 0o600 });
  writeFileSync(
    conf,
    [
      '# written by test/fuzz/broker-process.ts',
      'per_listener_settings false',
      'listener 0 127.0.0.1',
      'listener 0 127.0.0.1',
      'protocol websockets',
      'allow_anonymous false',
      `password_file ${passwd}`,
      `acl_file ${acl}`,
      'persistence true',
      `persistence_location ${store}`,
      'autosave_interval 2',
      'max_queued_messages 100',
      'max_queued_bytes 1048576',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'connection_messages false',
      ...extraConfig,
      '',
    ].join('\n'),
  );
  return { dir, conf, store, creds };
}

interface LogLine {
  level?: string;
  msg?: string;
  [k: string]: unknown;
}

export class BrokerProcess implements JsonLogState<LogLine> {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  mqttPort = 0;
  wsPort = 0;
  /** @internal followJsonLog's: JSON log lines not yet scanned by takeErrors(). */
  lines: LogLine[] = [];
  /** @internal followJsonLog's */
  waiters: Array<LogWaiter<LogLine>> = [];
  /** @internal followJsonLog's: the last 4,000 characters of stderr (the log, and any crash). */
  stderrTail = '';
  starts = 0;

  constructor(readonly files: BrokerFiles) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    const c = this.child;
    if (c === null || c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return false;
    try {
      process.kill(c.pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** How the process ended, for messages. */
  get exitStatus(): string {
    const c = this.child;
    if (c === null) return 'not started';
    if (c.exitCode === null && c.signalCode === null) return 'running';
    return c.signalCode !== null ? `killed by ${c.signalCode}` : `exited with code ${c.exitCode}`;
  }

  /** Resident set size in bytes (VmRSS), or undefined when the process is gone. */
  rssBytes(): number | undefined {
    const pid = this.child?.pid;
    if (pid === undefined) return undefined;
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The error-level log lines since the last call (the broker's own word that something went
   * wrong inside it); forgets the lines scanned, so a long run holds no log.
   */
  takeErrors(): string[] {
    const errors = this.lines.filter((l) => l.level === 'error').map((l) => JSON.stringify(l).slice(0, 2000));
    this.lines = [];
    return errors;
  }

  /** The end of stderr (log lines and any crash), for a failure message. */
  diagnostics(): string {
    return `broker ${this.exitStatus}; end of its stderr:\n${this.stderrTail.slice(-3000) || '(nothing)'}`;
  }

  /** Starts the broker (on the storage left by the last run, if any); resolves once it is ready. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.alive) throw new Error('broker already running');
    this.starts++;
    const child = spawn(process.execPath, [BROKER_BIN, '-c', this.files.conf, '--log-format', 'json'], {
      cwd: this.files.dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    followJsonLog(child, this);
    let timer: NodeJS.Timeout | undefined;
    try {
      const l = await new Promise<LogLine>((resolve, reject) => {
        const w: LogWaiter<LogLine> = { pred: (l) => l.msg === 'ready', resolve };
        this.waiters.push(w);
        const fail = (why: string) => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`broker ${why}: ${this.diagnostics()}`));
        };
        child.once('exit', () => fail('exited before it was ready'));
        timer = setTimeout(() => fail(`not ready in ${timeoutMs} ms`), timeoutMs);
      });
      const [mqtt, ws] = String(l.ports).split(',').map(Number);
      if (!(mqtt > 0 && ws > 0)) throw new Error(`unexpected ready line ${JSON.stringify(l)}`);
      this.mqttPort = mqtt;
      this.wsPort = ws;
    } catch (err) {
      await this.kill9();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async kill9(): Promise<void> {
    if (this.alive) this.child?.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM; resolves with the exit code, or null (after a SIGKILL) if it did not exit in time. */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    const c = this.child;
    if (c === null || !this.alive) return c?.exitCode ?? null;
    c.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    const r = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (r === 'late') {
      await this.kill9();
      return null;
    }
    return c.exitCode;
  }

  /** Throws the storage away and starts on an empty one (after a failure, so the next case is clean). */
  async fresh(): Promise<void> {
    await this.kill9();
    rmSync(this.files.store, { recursive: true, force: true });
    mkdirSync(this.files.store, { recursive: true, mode: 0o700 });
    this.stderrTail = '';
    await this.start();
  }
}
