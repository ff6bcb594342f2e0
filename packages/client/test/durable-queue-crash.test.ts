import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { DurableQueue } from '../src/node/durable-queue/index.ts';
import { crashMessage } from './durable-queue-crash-message.ts';

const here = dirname(fileURLToPath(import.meta.url));
const child = join(here, 'durable-queue-child.ts');
const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-crash-'));
afterAll(() => {
  if (!process.env.KEEP_DQ) rmSync(dir, { recursive: true, force: true });
});

interface Round {
  resolved: Map<number, number>;
  acked: Set<number>;
  exit: { code: number | null; signal: NodeJS.Signals | null };
}

/** Runs the child until at least `minResolved` puts resolved, then SIGKILLs it after `extraMs`. */
function runAndKill(round: number, minResolved: number, extraMs: number, commitWindowMs = 0): Promise<Round> {
  return new Promise((resolve, reject) => {
    const logPath = join(dir, `child-${round}.log`);
    const p: ChildProcess = spawn(process.execPath, ['--import', 'tsx', child, dir, String(round), logPath], {
      cwd: join(here, '..', '..', '..'),
      env: { ...process.env, DQ_COMMIT_WINDOW_MS: String(commitWindowMs) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const resolved = new Map<number, number>();
    const acked = new Set<number>();
    let partial = '';
    let stderr = '';
    let killing = false;
    let progress = 0;
    const guard = setTimeout(() => p.kill('SIGKILL'), 25_000);
    p.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.stdout!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const [kind, a] = line.split(' ');
        if (kind === 'n') progress = Number(a);
      }
      if (!killing && progress >= minResolved) {
        killing = true;
        setTimeout(() => p.kill('SIGKILL'), extraMs);
      }
    });
    p.on('error', reject);
    // 'exit' fires after the kernel reaped the child: its pid is free, so the lock is stale
    p.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') {
        reject(new Error(`child exited ${code} ${signal}: ${stderr}`));
        return;
      }
      // lines end in ' .': a torn last line is a write the kill interrupted and reports nothing
      for (const line of readFileSync(logPath, 'utf8').split('\n')) {
        const m = /^([pa]) (\d+)(?: (\d+))? \.$/.exec(line);
        if (m?.[1] === 'p' && m[3] !== undefined) resolved.set(Number(m[2]), Number(m[3]));
        else if (m?.[1] === 'a') acked.add(Number(m[2]));
      }
      rmSync(logPath);
      resolve({ resolved, acked, exit: { code, signal } });
    });
  });
}

/** Kills the child `rounds` times; after each, every resolved and unacknowledged record is there. */
async function killRounds(rounds: number, commitWindowMs: number, firstRound = 1): Promise<void> {
  const everResolved = new Map<number, number>();
  const everAcked = new Set<number>();
  let seed = Date.now() & 0xffff;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let round = firstRound; round < firstRound + rounds; round++) {
    const r = await runAndKill(round, 500 + rnd(3000), rnd(40) + rnd(2) * commitWindowMs, commitWindowMs);
    expect(r.resolved.size).toBeGreaterThanOrEqual(500);
    for (const [s, k] of r.resolved) everResolved.set(s, k);
    for (const s of r.acked) everAcked.add(s);

    const q = await DurableQueue.open(dir, { segmentBytes: 64 << 10 });
    const entries = q.read(0, 10_000_000);
    const bySeq = new Map(entries.map((e) => [e.seq, e]));
    for (let i = 1; i < entries.length; i++) expect(entries[i].seq).toBeGreaterThan(entries[i - 1].seq);
    let checked = 0;
    for (const [seq, k] of everResolved) {
      if (everAcked.has(seq)) continue; // acked: may be gone, may come back as a duplicate
      const e = bySeq.get(seq);
      if (e === undefined) {
        throw new Error(
          `round ${round}: resolved seq ${seq} (k=${k}) is missing; stats ${JSON.stringify(q.stats())}; files ${readdirSync(dir).join(' ')}`,
        );
      }
      const want = crashMessage(k);
      expect(e.message.topic).toBe(want.topic);
      expect(e.message.payload).toEqual(want.payload);
      expect(e.message.properties).toEqual(want.properties);
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
    // every stored entry is a message some child wrote: decodable, topic of the right form
    for (const e of entries) expect(e.message.topic).toMatch(/^dev\/\d+\/temp$/);
    await q.close();
  }
}

describe('durable queue under SIGKILL', () => {
  it('keeps every record whose put() resolved, intact and in order, across repeated kills', async () => {
    await killRounds(4, 0);
  }, 120_000);

  it('issue 18.4: with a commit window, nothing whose put() resolved is lost to kill -9', async () => {
    // rounds 11..: their own seqs' contents (k) and dir state follow on from the test above
    await killRounds(3, 50, 11);
  }, 120_000);
});
