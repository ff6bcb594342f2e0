/**
 * Issue 12.7: the queue's files hold payloads and topics (user names among them): only the
 * owner may read them. Directories 0700, files 0600, whatever the umask, and an existing queue
 * of an earlier version (0755 / 0644) is tightened when it is opened.
 */
import { chmodSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue } from '../src/node/durable-queue/index.ts';
import { tmpDirs } from './helpers/dq-files.ts';

const tmp = tmpDirs('mqtt-edge-dq-modes-');

const msg = (k: number): OutboxMessage => ({
  topic: `users/alice/${k}`,
  payload: new Uint8Array(Buffer.alloc(1000, k)),
  qos: 1,
  retain: false,
});
const mode = (p: string) => statSync(p).mode & 0o777;
const modes = (dir: string) => readdirSync(dir).map((n) => [n, mode(join(dir, n))]);

/** A queue with every kind of file: sealed segments with indexes, the active one, cursor, meta, lock. */
async function everyKind(dir: string): Promise<DurableQueue> {
  const q = await DurableQueue.open(dir, { segmentBytes: 64 << 10, cursorEveryAcks: 1 });
  const seqs: number[] = [];
  for (let k = 1; k <= 200; k++) seqs.push(await q.put(msg(k)));
  q.ack(seqs[0]);
  await q.flush();
  await expect.poll(() => readdirSync(dir).includes('cursor')).toBe(true);
  return q;
}

describe('issue 12.7: file modes of the durable queue', () => {
  it('issue 12.7: creates its directories 0700 and every file 0600, even under umask 0', async () => {
    const old = process.umask(0);
    try {
      const dir = join(tmp(), 'state', 'queue');
      const q = await everyKind(dir);
      const names = readdirSync(dir);
      for (const kind of ['LOCK', 'meta.json', 'cursor']) expect(names).toContain(kind);
      expect(names.filter((n) => n.endsWith('.idx')).length).toBeGreaterThan(0);
      expect(names.filter((n) => n.endsWith('.log')).length).toBeGreaterThan(1);
      expect(mode(dir)).toBe(0o700);
      expect(mode(join(dir, '..'))).toBe(0o700);
      for (const [n, m] of modes(dir)) expect([n, m]).toEqual([n, 0o600]);
      await q.close();
      for (const [n, m] of modes(dir)) expect([n, m]).toEqual([n, 0o600]);
    } finally {
      process.umask(old);
    }
  });

  it('issue 12.7: tightens a queue an earlier version left 0755 / 0644 when it opens it', async () => {
    const dir = join(tmp(), 'queue');
    await (await everyKind(dir)).close();
    chmodSync(dir, 0o755);
    for (const n of readdirSync(dir)) chmodSync(join(dir, n), 0o644);
    const q = await DurableQueue.open(dir);
    expect(mode(dir)).toBe(0o700);
    for (const [n, m] of modes(dir)) expect([n, m]).toEqual([n, 0o600]);
    await q.close();
  });
});
