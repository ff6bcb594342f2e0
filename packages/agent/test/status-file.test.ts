/**
 * Issue 18.4 (flash wear): the status file is rewritten in place (same inode, no temp file and
 * rename), so each rewrite dirties the page the last one left dirty and flash sees one write per
 * writeback instead of a new file every statusInterval. Readers still get whole, current JSON.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type AgentStatus, closeStatusFile, readStatus, STATUS_FILE, writeStatus } from '../src/status.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) {
    closeStatusFile(d);
    rmSync(d, { recursive: true, force: true });
  }
});

function status(updatedAt: number, ports: number): AgentStatus {
  return {
    pid: process.pid,
    agentId: 'a1',
    startedAt: 1,
    updatedAt,
    broker: { url: 'mqtt://127.0.0.1:1', connected: true, since: 1, reconnects: 0, lastError: undefined },
    queue: {
      dir: '/q',
      count: 0,
      bytes: 0,
      oldestAgeMs: 0,
      droppedOldest: 0,
      rejectedNew: 0,
      segments: 1,
      failed: false,
    },
    ports: Array.from({ length: ports }, (_, i) => ({
      name: `p${i}`,
      path: `/dev/tty${i}`,
      framing: 'cobs',
      state: 'up',
      since: 1,
      device: 'd',
      bootId: 1,
      lastError: undefined,
      counters: { readings: updatedAt },
    })),
    counters: { readings: updatedAt },
  };
}

describe('issue 18.4: the status file', () => {
  it('issue 18.4: rewrites keep the same file (inode), leave no temp file, and read back whole, shorter after longer', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-status-'));
    dirs.push(dir);
    writeStatus(dir, status(1, 3));
    const ino = statSync(join(dir, STATUS_FILE)).ino;
    for (let i = 2; i <= 20; i++) {
      const s = status(i, i % 2 === 0 ? 5 : 1);
      writeStatus(dir, s);
      expect(readStatus(dir)).toEqual(JSON.parse(JSON.stringify(s)));
    }
    expect(statSync(join(dir, STATUS_FILE)).ino).toBe(ino);
    expect(readdirSync(dir)).toEqual([STATUS_FILE]);
  });

  it('issue 18.4: a status file removed or replaced under the agent is written again at its path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-status-'));
    dirs.push(dir);
    writeStatus(dir, status(1, 1));
    rmSync(join(dir, STATUS_FILE));
    writeStatus(dir, status(2, 1));
    expect(readStatus(dir).updatedAt).toBe(2);
  });
});
