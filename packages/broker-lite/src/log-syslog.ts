/**
 * `log_dest syslog`: each line one message to the local syslog socket (`/dev/log`), as
 * Mosquitto's syslog(3) sends it: `<PRI>`, facility daemon (or `log_facility` N: localN), the
 * severity of the line's log_type, tagged with the program and its pid.
 *
 * Node cannot send a unix datagram (its `dgram` is UDP only, and /dev/log is a datagram socket
 * wherever journald or rsyslog owns it), so the lines go through util-linux's `logger`, started
 * once and fed one line per message on its stdin (`--prio-prefix` takes each line's `<PRI>`).
 * It speaks the local syslog protocol, opens the socket again when the daemon restarts, and
 * waits quietly for a socket that is not there yet. Native modules that do this (unix-dgram)
 * need a compiler on the gateway; `logger` is in every Debian (bsdutils, essential).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { delimiter, join } from 'node:path';
import type { LogType } from './log.ts';

export const DEFAULT_SYSLOG_SOCKET = '/dev/log';
export const SYSLOG_IDENT = 'broker-lite';

/** Severity of each log_type, as Mosquitto maps them (subscribe lines are notices). */
export const SYSLOG_SEVERITY: Readonly<Record<LogType, number>> = {
  error: 3,
  warning: 4,
  notice: 5,
  information: 6,
  debug: 7,
  subscribe: 5,
  unsubscribe: 5,
  websockets: 7,
};

const FACILITY_DAEMON = 3;
const FACILITY_LOCAL0 = 16;
/** Bytes queued for `logger` before lines are dropped (a syslog daemon that stopped reading). */
const MAX_PENDING = 256 * 1024;
/** The longest message `logger` sends (its default, RFC 3164's 1 KiB, would cut stack traces). */
const MAX_MESSAGE = 8192;

/** The syslog facility code: daemon, or local0..local7 for `log_facility 0..7`. */
export function syslogFacility(logFacility: number | undefined): number {
  return logFacility === undefined ? FACILITY_DAEMON : FACILITY_LOCAL0 + logFacility;
}

/** The `logger` command on PATH, or undefined. */
export function findLoggerCommand(path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const f = join(dir, 'logger');
    try {
      if (!statSync(f).isFile()) continue;
      accessSync(f, constants.X_OK);
      return f;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

export interface SyslogOptions {
  /** The `logger` command (findLoggerCommand). */
  command: string;
  facility: number;
  socket: string;
  pid?: number;
}

export class SyslogWriter {
  private child: ChildProcess | null = null;
  private closed = false;
  private restartTimer: NodeJS.Timeout | null = null;
  /** Lines not sent: `logger` gone or too far behind. */
  dropped = 0;

  constructor(private readonly o: SyslogOptions) {
    this.start();
  }

  private start(): void {
    const o = this.o;
    const child = spawn(
      o.command,
      [
        `--id=${o.pid ?? process.pid}`,
        '-t',
        SYSLOG_IDENT,
        '--prio-prefix',
        '-u',
        o.socket,
        '--socket-errors=off',
        '--size',
        String(MAX_MESSAGE),
      ],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    this.child = child;
    child.on('error', () => {});
    child.stdin?.on('error', () => {});
    child.once('exit', () => {
      if (this.child === child) this.child = null;
      if (this.closed) return;
      // Killed or crashed: start it again, at most once a second.
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (!this.closed) this.start();
      }, 1000);
      this.restartTimer.unref();
    });
    // The broker's life, not logger's, decides when the process ends.
    child.unref();
    // stdin is a pipe socket (typed as a plain Writable).
    (child.stdin as unknown as Socket | null)?.unref();
  }

  write(type: LogType, line: string): void {
    const stdin = this.child?.stdin;
    if (stdin == null || stdin.writableLength > MAX_PENDING) {
      this.dropped++;
      return;
    }
    stdin.write(`<${this.o.facility * 8 + SYSLOG_SEVERITY[type]}>${line}\n`);
  }

  /** Ends `logger`'s input: it sends what it has and exits. */
  close(): void {
    this.closed = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.child?.stdin?.end();
  }
}
