/**
 * Issue 12.12: the durable queue on a real full file system (a small tmpfs the test mounts and
 * fills; root only, skipped with the reason otherwise). The kernel decides where a write stops,
 * so torn records and ENOSPC happen where they would on a gateway's SD card.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { mountTmpfs, type Tmpfs, tmpfsUnavailable } from '../../../test/helpers/tmpfs.ts';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue, DurableQueueError, type DurableQueueEvent } from '../src/node/durable-queue/index.ts';
import { recordsIn } from './helpers/dq-files.ts';

const here = dirname(fileURLToPath(import.meta.url));
const why = tmpfsUnavailable();
if (why !== undefined) console.warn(`durable-queue-disk-full: skipped: ${why}`);

let fs: Tmpfs | undefined;
afterEach(() => {
  fs?.unmount();
  fs = undefined;
});

/** ~1 KiB messages whose content says which one they are. */
function msg(k: number): OutboxMessage {
  const payload = Buffer.alloc(1000, k % 251);
  payload.write(`reading-${k};`);
  return { topic: `gw/dev/${k}`, payload: new Uint8Array(payload), qos: 1, retain: false };
}
const keyOf = (m: OutboxMessage) => Buffer.from(m.payload).toString('latin1').split(';')[0];

const segments = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.endsWith('.log'))
    .sort()
    .map((n) => join(dir, n));

describe.skipIf(why !== undefined)(`durable queue on a full disk${why ? ` (skipped: ${why})` : ''}`, () => {
  it('issue 12.12: a full disk fails the write with a typed NO_SPACE error, the torn tail is cut, and once space is back puts succeed without reopening', async () => {
    fs = mountTmpfs(1 << 20);
    const dir = join(fs.dir, 'q');
    const events: DurableQueueEvent[] = [];
    let clock = 1_000_000;
    const q = await DurableQueue.open(dir, {
      retryIntervalMs: 1000,
      onEvent: (e) => events.push(e),
      now: () => clock,
    });
    fs.fill(40 << 10);
    const stored: number[] = [];
    let err: unknown;
    for (let k = 1; k <= 200 && err === undefined; k++) {
      try {
        stored.push(await q.put(msg(k)));
      } catch (e) {
        err = e;
      }
    }
    expect(err).toBeInstanceOf(DurableQueueError);
    expect((err as DurableQueueError).code).toBe('NO_SPACE');
    expect(stored.length).toBeGreaterThan(5);
    expect(q.stats().failed).toBe(true);
    expect(events.filter((e) => e.type === 'write-failed')).toHaveLength(1);
    // Nothing but the stored records is on disk: the record the kernel cut short is gone.
    const [seg] = segments(dir);
    const onDisk = recordsIn(seg);
    expect(onDisk.count).toBe(stored.length);
    expect(onDisk.end).toBe(onDisk.size);
    // Still full: refused, typed, and the reading is not reported stored.
    await expect(q.put(msg(1000))).rejects.toMatchObject({ name: 'DurableQueueError', code: 'NO_SPACE' });
    expect(q.read(0, 1000).map((e) => e.seq)).toEqual(stored);

    // Tried again after retryIntervalMs: the disk is still full, the write fails again.
    clock += 1000;
    await expect(q.put(msg(1001))).rejects.toMatchObject({ code: 'NO_SPACE' });
    expect(q.stats()).toMatchObject({ failed: true, writeFailures: 2 });
    expect(recordsIn(seg)).toEqual(onDisk);

    fs.free();
    clock += 1000;
    const again = await q.put(msg(2000));
    expect(again).toBeGreaterThan(stored[stored.length - 1]);
    expect(q.stats().failed).toBe(false);
    expect(events.filter((e) => e.type === 'write-recovered')).toHaveLength(1);
    const more = await Promise.all([q.put(msg(2001)), q.put(msg(2002))]);
    const all = q.read(0, 1000);
    expect(all.map((e) => e.seq)).toEqual([...stored, again, ...more]);
    expect(all.map((e) => keyOf(e.message))).toEqual([
      ...stored.map((_, i) => `reading-${i + 1}`),
      'reading-2000',
      'reading-2001',
      'reading-2002',
    ]);
    q.ack(stored[0]);
    await q.close();

    const r = await DurableQueue.open(dir);
    expect(r.read(0, 1000).map((e) => e.seq)).toEqual([...stored.slice(1), again, ...more]);
    expect(r.stats().recovery.truncatedTails).toBe(0);
    expect(r.stats().recovery.corruptRegions).toBe(0);
    await r.close();
  });

  it('issue 12.12: concurrent puts into a filling disk: every put is resolved or rejected typed, and a restart reads exactly the resolved ones', async () => {
    for (const fsync of ['batch', 'never', { intervalMs: 5 }] as const) {
      fs = mountTmpfs(1 << 20);
      const dir = join(fs.dir, 'q');
      const q = await DurableQueue.open(dir, { fsync, segmentBytes: 64 << 10, retryIntervalMs: 60_000 });
      fs.fill(150 << 10);
      // waves of 8 concurrent puts: group commit writes each wave in one write() that the
      // full disk cuts short somewhere; later waves are refused (no retry within the test)
      const resolved = new Map<number, number>();
      let rejected = 0;
      for (let wave = 0; wave < 60; wave++) {
        const ks = Array.from({ length: 8 }, (_, i) => wave * 8 + i + 1);
        const results = await Promise.allSettled(ks.map((k) => q.put(msg(k))));
        results.forEach((r, i) => {
          if (r.status === 'fulfilled') resolved.set(r.value, ks[i]);
          else {
            rejected++;
            expect(r.reason).toMatchObject({ name: 'DurableQueueError', code: 'NO_SPACE' });
          }
        });
      }
      expect(rejected).toBeGreaterThan(0);
      expect(resolved.size).toBeGreaterThan(10);
      expect(resolved.size).toBeLessThan(480);
      await q.close();
      fs.free();
      const r = await DurableQueue.open(dir);
      const back = r.read(0, 1000);
      expect(back.map((e) => e.seq)).toEqual([...resolved.keys()]);
      for (const e of back) expect(keyOf(e.message)).toBe(`reading-${resolved.get(e.seq)}`);
      await r.close();
      fs.unmount();
      fs = undefined;
    }
  });

  it('issue 12.12: opening on a full disk is refused typed (NO_SPACE), leaves no empty lock, and works once there is room', async () => {
    fs = mountTmpfs(1 << 20);
    const dir = join(fs.dir, 'q');
    const q = await DurableQueue.open(dir);
    await q.put(msg(1));
    await q.close();
    fs.fill();
    await expect(DurableQueue.open(dir)).rejects.toMatchObject({
      name: 'DurableQueueError',
      code: 'NO_SPACE',
    });
    expect(readdirSync(dir)).not.toContain('LOCK');
    await expect(DurableQueue.open(join(fs.dir, 'fresh'))).rejects.toMatchObject({ code: 'NO_SPACE' });
    fs.free();
    const again = await DurableQueue.open(dir);
    expect(again.read(0, 10).map((e) => keyOf(e.message))).toEqual(['reading-1']);
    await again.close();
  });

  it('issue 12.12: a process killed while its disk is full leaves nothing unresolved to recover', async () => {
    fs = mountTmpfs(1 << 20);
    const dir = join(fs.dir, 'q');
    fs.fill(60 << 10);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(here, 'durable-queue-full-child.ts'), dir],
      { cwd: join(here, '..', '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    let out = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
    // The child puts until its disk refuses, lets what is in flight settle, says so and waits.
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('full\n')) resolve();
      });
      child.on('exit', () => reject(new Error(`child exited early: ${stderr}`)));
    });
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    clearTimeout(guard);
    const resolved = out
      .split('\n')
      .filter((l) => l.startsWith('p '))
      .map((l) => Number(l.split(' ')[1]));
    expect(resolved.length).toBeGreaterThan(5);
    expect(out).toMatch(/^e NO_SPACE$/m);
    fs.free();
    const r = await DurableQueue.open(dir);
    expect(r.read(0, 1000).map((e) => e.seq)).toEqual(resolved.sort((a, b) => a - b));
    await r.close();
  });
});
