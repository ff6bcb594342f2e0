/**
 * The running agent rewrites `{stateDir}/status.json` every few seconds, in place (issue 18.4):
 * the same file, the new JSON over the old, padded with spaces to the old length. A temp file
 * renamed over it cost a new file, so a new flash page, every rewrite (2 KB a second at the
 * default 2 s); rewriting a page still dirty costs nothing until the kernel writes it back
 * (every ~30 s). A reader that catches a rewrite half done reads again. `mqtt-edge-agent status` reads it: no socket to
 * secure, works for any user who can read the state dir, and tells a dead agent (stale file,
 * no such pid) from a live one.
 */
import { closeSync, fstatSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

export const STATUS_FILE = 'status.json';

export interface PortStatus {
  name: string;
  path: string | undefined;
  framing: string;
  state: string;
  since: number;
  device: string | undefined;
  bootId: number | undefined;
  /** The interval the device should report at (HELLO `p` or config), ms; 0: not watched (issue 19). */
  expectedIntervalMs?: number;
  /** A silent spell under way: since the last frame heard (ms since the epoch). */
  silentSince?: number | undefined;
  lastError: string | undefined;
  counters: Record<string, number>;
  /** A Modbus line (issue 20): its devices, whether each answers (null: not yet known), its polls missed in a row. */
  devices?: Array<{
    id: string;
    unit: number;
    online: boolean | null;
    missedPolls: number;
    lastError?: string | undefined;
  }>;
}

export interface AgentStatus {
  pid: number;
  agentId: string;
  startedAt: number;
  updatedAt: number;
  broker: {
    url: string;
    connected: boolean;
    since: number;
    reconnects: number;
    lastError: string | undefined;
  };
  queue: {
    dir: string;
    count: number;
    bytes: number;
    oldestAgeMs: number;
    droppedOldest: number;
    rejectedNew: number;
    segments: number;
    /** A write or fsync failed and no reading has been stored since (readings are not ACKed). */
    failed: boolean;
    writeError?: { code: string; message: string; since: number };
    writeFailures?: number;
    /** Readings refused because of a failed write since the start (never ACKed). */
    failedPuts?: number;
  };
  ports: PortStatus[];
  counters: Record<string, number>;
}

interface OpenStatusFile {
  fd: number;
  ino: number;
  /** Bytes in the file: a shorter status is padded to it (never truncated: that frees the page). */
  size: number;
}
const openFiles = new Map<string, OpenStatusFile>();

export function writeStatus(stateDir: string, s: AgentStatus): void {
  const file = path.join(stateDir, STATUS_FILE);
  let f = openFiles.get(file);
  if (f !== undefined && !sameFile(file, f.ino)) {
    closeStatusFile(stateDir);
    f = undefined;
  }
  if (f === undefined) {
    const fd = openSync(file, 'w');
    f = { fd, ino: fstatSync(fd).ino, size: 0 };
    openFiles.set(file, f);
  }
  const text = Buffer.from(`${JSON.stringify(s, null, 1)}\n`);
  const b = text.length < f.size ? Buffer.concat([text, Buffer.alloc(f.size - text.length, 0x20)]) : text;
  let done = 0;
  while (done < b.length) done += writeSync(f.fd, b, done, b.length - done, done);
  f.size = b.length;
}

/** Removed or replaced (another writer, a cleaned state dir): the next write makes it anew. */
function sameFile(file: string, ino: number): boolean {
  try {
    return statSync(file).ino === ino;
  } catch {
    return false;
  }
}

/** Lets go of the file the agent keeps open for its rewrites (on stop). */
export function closeStatusFile(stateDir: string): void {
  const file = path.join(stateDir, STATUS_FILE);
  const f = openFiles.get(file);
  if (f === undefined) return;
  openFiles.delete(file);
  try {
    closeSync(f.fd);
  } catch {
    // nothing left to do with it
  }
}

/** Tries a few times: a read can meet a rewrite half done (the writer is a few syscalls long). */
export function readStatus(stateDir: string): AgentStatus {
  for (let attempt = 1; ; attempt++) {
    try {
      return parseStatus(readFileSync(path.join(stateDir, STATUS_FILE), 'utf8'));
    } catch (err) {
      if (attempt >= 5 || !(err instanceof SyntaxError || err instanceof NotStatus)) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

class NotStatus extends Error {}

function parseStatus(text: string): AgentStatus {
  const s = JSON.parse(text) as AgentStatus;
  if (typeof s !== 'object' || s === null || typeof s.pid !== 'number' || !Array.isArray(s.ports))
    throw new NotStatus('not an agent status file');
  return s;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ago(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** Human text for `status`; `staleAfterMs`: when the file is too old to describe a live agent. */
export function formatStatus(
  s: AgentStatus,
  now: number,
  staleAfterMs: number,
): { text: string; running: boolean } {
  const age = now - s.updatedAt;
  const running = alive(s.pid) && age <= staleAfterMs;
  const lines: string[] = [];
  lines.push(
    `agent ${s.agentId}: ${running ? `running (pid ${s.pid}, up ${ago(now - s.startedAt)})` : `NOT RUNNING (last status ${ago(age)} ago, pid ${s.pid})`}`,
  );
  lines.push(
    `broker ${s.broker.url}: ${s.broker.connected ? 'connected' : 'DISCONNECTED'} for ${ago(now - s.broker.since)}, ${s.broker.reconnects} reconnects${s.broker.lastError ? `, last error: ${s.broker.lastError}` : ''}`,
  );
  const q = s.queue;
  lines.push(
    `queue ${q.dir}: ${q.count} messages (${q.bytes} bytes), oldest ${ago(q.oldestAgeMs)}, ${q.segments} segments, dropped ${q.droppedOldest}, rejected ${q.rejectedNew}${q.failed ? `, NOT WRITABLE (${q.writeError?.code ?? 'disk error'}${q.writeError ? ` for ${ago(now - q.writeError.since)}` : ''}): readings are not acknowledged` : ''}`,
  );
  for (const p of s.ports) {
    const c = p.counters;
    const silent =
      p.silentSince === undefined
        ? ''
        : `, SILENT for ${ago(now - p.silentSince)} (HELLO asked ${c.silenceProbes ?? 0}x, reopened ${c.silenceReopens ?? 0}x)`;
    const every = p.expectedIntervalMs ? `, expected every ${ago(p.expectedIntervalMs)}` : '';
    const timeouts = c.linkWriteTimeouts ? `, write timeouts ${c.linkWriteTimeouts}` : '';
    if (p.devices !== undefined) {
      const devices = p.devices
        .map(
          (d) =>
            `${d.id} (unit ${d.unit}) ${d.online === null ? 'not yet answered' : d.online ? 'online' : `OFFLINE, ${d.missedPolls} polls missed${d.lastError ? ` (${d.lastError})` : ''}`}`,
        )
        .join('; ');
      lines.push(
        `port ${p.name} (${p.path ?? 'usb'}, modbus-rtu): ${p.state} for ${ago(now - p.since)}; polls ${c.polls ?? 0}, failed ${c.pollsFailed ?? 0}, exceptions ${c.modbusExceptions ?? 0}, line errors ${c.framingErrors ?? 0}, timeouts ${c.modbusErrorsTimeout ?? 0}, readings ${c.readings ?? 0}, stored ${c.stored ?? 0}; ${devices}${p.lastError ? `; last error: ${p.lastError}` : ''}`,
      );
      continue;
    }
    lines.push(
      `port ${p.name} (${p.path ?? 'usb'}, ${p.framing}): ${p.state} for ${ago(now - p.since)}${p.device ? `, device ${p.device} boot ${p.bootId}` : ''}${every}${silent}; readings ${c.readings ?? 0}, stored ${c.stored ?? 0}, duplicates ${c.duplicates ?? 0}, framing errors ${c.framingErrors ?? 0}, rejected ${c.rejected ?? 0}, silences ${c.silences ?? 0}${timeouts}${p.lastError ? `; last error: ${p.lastError}` : ''}`,
    );
  }
  return { text: lines.join('\n'), running };
}
