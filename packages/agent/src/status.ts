/**
 * The running agent rewrites `{stateDir}/status.json` every few seconds (write to a temp file,
 * rename: a reader never sees half a file). `mqtt-edge-agent status` reads it: no socket to
 * secure, works for any user who can read the state dir, and tells a dead agent (stale file,
 * no such pid) from a live one.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
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

export function writeStatus(stateDir: string, s: AgentStatus): void {
  const file = path.join(stateDir, STATUS_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 1)}\n`);
  renameSync(tmp, file);
}

export function readStatus(stateDir: string): AgentStatus {
  const text = readFileSync(path.join(stateDir, STATUS_FILE), 'utf8');
  const s = JSON.parse(text) as AgentStatus;
  if (typeof s !== 'object' || s === null || typeof s.pid !== 'number' || !Array.isArray(s.ports))
    throw new Error('not an agent status file');
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
