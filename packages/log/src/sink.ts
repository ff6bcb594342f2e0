/**
 * Where lines go, and in which form. Written synchronously: a line logged just before a crash
 * must be in the log (the last words are the ones that explain it). A destination is a file
 * descriptor (stderr, stdout, a file), or a function (tests, the demo).
 */
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { formatJson, formatText } from './format.ts';
import { type Level, PRIORITY } from './levels.ts';

export type LogFormat = 'json' | 'text';

export interface LogDestination {
  /** A descriptor written with writeSync, or a function given each line (without its newline). */
  fd?: number;
  write?: (line: string) => void;
  /** Text lines in `auto` format (a terminal). */
  isTty: boolean;
  /**
   * The descriptor is journald's stream (systemd's JOURNAL_STREAM names it): each line starts
   * with `<N>`, its syslog priority, which journald takes off and files the line under.
   */
  journal: boolean;
  /** A file (log_dest file): closed and reopened by reopen(), for log rotation. */
  path?: string;
}

/**
 * True when `fd` is the stream systemd connected to journald: JOURNAL_STREAM is `DEV:INODE` of
 * that stream. Comparing it with the descriptor, not only its presence, keeps a child process
 * whose stderr goes elsewhere (a pipe, a file) from writing prefixes into it.
 */
export function isJournalStream(fd: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const js = env.JOURNAL_STREAM;
  if (js === undefined || js === '') return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return js === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

export function stdDestination(which: 'stdout' | 'stderr'): LogDestination {
  const fd = which === 'stdout' ? 1 : 2;
  const stream = which === 'stdout' ? process.stdout : process.stderr;
  return { fd, isTty: stream.isTTY === true, journal: isJournalStream(fd) };
}

/** Opens PATH for appending (0640). Throws what open(2) throws. */
export function fileDestination(path: string): LogDestination {
  return { fd: openSync(path, 'a', 0o640), isTty: false, journal: false, path };
}

export function functionDestination(write: (line: string) => void, isTty = false): LogDestination {
  return { write, isTty, journal: false };
}

export interface SinkOptions {
  destinations: LogDestination[];
  /** `auto`: text where the destination is a terminal, JSON elsewhere. */
  format: LogFormat | 'auto';
  /** Write a timestamp (default true). */
  timestamp?: boolean;
  /** Fields every line carries (after `msg`, before the event's own). */
  base?: Record<string, unknown>;
  /** The clock, for tests. */
  now?: () => Date;
  /** How text lines write the time (default ISO 8601 in UTC); JSON's `time` stays ISO 8601. */
  timeText?: (d: Date) => string;
}

export interface Sink {
  write(level: Level, msg: string, fields?: Record<string, unknown>): void;
  /** Reopens file destinations (SIGHUP, log rotation); a file that cannot be opened keeps the old one. */
  reopen(): void;
  close(): void;
}

function writeFd(d: LogDestination, s: string): void {
  try {
    writeSync(d.fd as number, s);
  } catch (err) {
    // A stdio pipe left non-blocking by whoever made it: let Node's stream queue the line.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' && d.fd === 2) process.stderr.write(s);
    else if (code === 'EAGAIN' && d.fd === 1) process.stdout.write(s);
    // Anything else (a full disk, a closed pipe) must not take the process down with it.
  }
}

export function createSink(options: SinkOptions): Sink {
  const dests = options.destinations.map((d) => ({ ...d }));
  const now = options.now ?? (() => new Date());
  const stamp = options.timestamp !== false;
  const base = options.base;
  return {
    write(level, msg, fields) {
      const time = stamp ? now() : undefined;
      const all = base === undefined ? fields : fields === undefined ? base : { ...base, ...fields };
      let text: string | undefined;
      let json: string | undefined;
      for (const d of dests) {
        const useText = options.format === 'text' || (options.format === 'auto' && d.isTty);
        const line = useText
          ? (text ??= formatText(time, level, msg, all, options.timeText))
          : (json ??= formatJson(time, level, msg, all));
        if (d.write !== undefined) {
          try {
            d.write(line);
          } catch {
            // A log line must never take the process down.
          }
        } else writeFd(d, d.journal ? `<${PRIORITY[level]}>${line}\n` : `${line}\n`);
      }
    },
    reopen() {
      for (const d of dests) {
        if (d.path === undefined || d.fd === undefined) continue;
        try {
          const fd = openSync(d.path, 'a', 0o640);
          const old = d.fd;
          d.fd = fd;
          closeSync(old);
        } catch {
          // Keep writing to the old descriptor: losing the log is worse than a stale file.
        }
      }
    },
    close() {
      for (const d of dests) if (d.path !== undefined && d.fd !== undefined) closeSync(d.fd);
    },
  };
}
