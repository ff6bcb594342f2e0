/**
 * Real pseudo-terminals for the port tests: a socat pair, a deadline for promises, and what the
 * event loop's epoll set watches a descriptor for (read from /proc, as one would by hand).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { SerialPortStream } from '@serialport/stream';

export const hasSocat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
export const linux = process.platform === 'linux';
export const hasPython = spawnSync('python3', ['-c', 'import pty, tty'], { stdio: 'ignore' }).status === 0;

export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** socat's two ptys behind links a and b; ready once socat says its transfer loop started. */
export async function socatPair(
  a: string,
  b: string,
): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let err = '';
  await within(
    new Promise<void>((resolve, reject) => {
      child.stderr?.setEncoding('utf8').on('data', (s: string) => {
        err += s;
        if (err.includes('starting data transfer loop')) resolve();
      });
      child.once('exit', () => reject(new Error(`socat exited: ${err}`)));
    }),
    5000,
    'socat ready',
  );
  return { child, exited };
}

export function closePort(port: SerialPortStream): Promise<void> {
  if (!port.isOpen) return Promise.resolve();
  return new Promise((resolve) => port.close(() => resolve()));
}

/**
 * What this process's epoll sets watch `fd` for (`in`: EPOLLIN, `out`: EPOLLOUT), from
 * /proc/self/fdinfo; undefined when no epoll set holds it. libuv applies a changed interest at
 * its next poll, so read this after the loop has turned.
 */
export function epollInterest(fd: number): { in: boolean; out: boolean } | undefined {
  for (const name of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue;
    }
    if (target !== 'anon_inode:[eventpoll]') continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${name}`, 'utf8');
    } catch {
      continue;
    }
    const m = new RegExp(`^tfd:\\s+${fd}\\s+events:\\s+([0-9a-f]+)`, 'm').exec(info);
    if (m === null) continue;
    const events = Number.parseInt(m[1], 16);
    return { in: (events & 0x1) !== 0, out: (events & 0x4) !== 0 };
  }
  return undefined;
}

/** Waits until `cond` holds, checking every `everyMs` (the loop turns in between), at most `ms`. */
export async function until(cond: () => boolean, ms: number, everyMs = 5): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}

// The far end of a pty held by python3: the master side, full duplex like a UART (socat, by
// contrast, blocks its one loop on a full side and stops the other direction with it).
const PTY_FAR_END = `
import os, pty, select, sys, tty
m, s = pty.openpty()
tty.setraw(s)
os.set_blocking(m, False)
print(os.ttyname(s), flush=True)
reading, total, out = False, 0, b""
while True:
    r, w, _ = select.select([sys.stdin] + ([m] if reading else []), [m] if out else [], [])
    if m in r:
        try:
            total += len(os.read(m, 65536))
            print("got", total, flush=True)
        except BlockingIOError:
            pass
    if m in w:
        # What the tty does not take now waits for room, in order (a write can be partial).
        try:
            out = out[os.write(m, out):]
        except BlockingIOError:
            pass
    if sys.stdin in r:
        cmd = sys.stdin.readline().split()
        if not cmd:
            break
        if cmd[0] == "write":
            out += bytes.fromhex(cmd[1])
        elif cmd[0] == "read":
            reading = cmd[1] == "on"
`;

/**
 * A pty whose far end (python3's master side) reads only when told to and writes on request (what
 * the tty cannot take at once is kept and written, in order, as room appears).
 */
export interface FarEnd {
  /** The tty to open (/dev/pts/N). */
  path: string;
  /** Bytes the far end has read so far. */
  readonly received: number;
  /** Start or stop reading: stopped, what is written at `path` backs up. */
  reading(on: boolean): void;
  write(bytes: Uint8Array): void;
  close(): Promise<void>;
}

export async function ptyWithFarEnd(): Promise<FarEnd> {
  const child = spawn('python3', ['-u', '-c', PTY_FAR_END], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let received = 0;
  const lines = createInterface({ input: child.stdout! });
  const path = await within(
    new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`python3 exited (${code})`)));
    }),
    5000,
    'pty far end ready',
  );
  lines.on('line', (l) => {
    const m = /^got (\d+)$/.exec(l);
    if (m !== null) received = Number(m[1]);
  });
  const send = (line: string) => child.stdin!.write(`${line}\n`);
  return {
    path,
    get received() {
      return received;
    },
    reading: (on) => send(`read ${on ? 'on' : 'off'}`),
    write: (bytes) => send(`write ${Buffer.from(bytes).toString('hex')}`),
    close: async () => {
      child.stdin!.end();
      child.kill('SIGKILL');
      await exited;
    },
  };
}
