/**
 * A pseudo-terminal pair made by socat: `socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`.
 * Readiness is socat's own notice ("starting data transfer loop", after both ptys and links
 * exist), with a deadline; no sleeping and hoping.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { lstatSync } from 'node:fs';

export interface SocatPair {
  /** Link the firmware opens. */
  readonly devicePath: string;
  /** Link the agent opens. */
  readonly agentPath: string;
  /** The /dev/pts names behind the links, in that order. */
  readonly ptys: readonly [string, string];
  readonly pid: number;
  /** Resolves when socat has exited (for any reason). */
  readonly exited: Promise<void>;
  /** SIGTERM, then wait: socat removes both links as it exits (the port "goes away"). */
  close(): Promise<void>;
}

let socatChecked: boolean | undefined;
export function hasSocat(): boolean {
  if (socatChecked === undefined) {
    const r = spawnSync('socat', ['-V'], { stdio: 'ignore' });
    socatChecked = r.status === 0;
  }
  return socatChecked;
}

// socat outlives a parent that exits without closing it (an uncaught exception, process.exit):
// end every pair we started when this process exits. Only a SIGKILL of this process leaves one.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of live) c.kill('SIGTERM');
  });
}

export function createSocatPair(devicePath: string, agentPath: string, timeoutMs = 5000): Promise<SocatPair> {
  const child: ChildProcess = spawn(
    'socat',
    ['-d', '-d', `pty,raw,echo=0,link=${devicePath}`, `pty,raw,echo=0,link=${agentPath}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  track(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise<SocatPair>((resolve, reject) => {
    let stderr = '';
    const ptys: string[] = [];
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGTERM');
      reject(new Error(`socat: ${why}${stderr ? `; stderr: ${stderr.trim().slice(-500)}` : ''}`));
    };
    const timer = setTimeout(() => fail(`ptys not ready within ${timeoutMs} ms`), timeoutMs);
    child.once('error', (e) => fail(e.message));
    child.once('exit', (code, signal) => fail(`exited early (code ${code}, signal ${signal})`));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      if (stderr.length < 8192) stderr += s;
      if (settled || !stderr.includes('starting data transfer loop')) return;
      // Parsed from the whole text: a chunk boundary may fall inside a line.
      for (const m of stderr.matchAll(/PTY is (\/dev\/\S+)\n/g)) ptys.push(m[1]);
      try {
        lstatSync(devicePath);
        lstatSync(agentPath);
      } catch (e) {
        fail(`link missing after start: ${(e as Error).message}`);
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve({
        devicePath,
        agentPath,
        ptys: [ptys[0] ?? '', ptys[1] ?? ''],
        pid: child.pid ?? -1,
        exited,
        close: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      });
    });
  });
}
