/**
 * Scale measurements for the durable queue (not a test: numbers for the report and the README).
 *   node --import tsx packages/client/test/durable-queue-scale.ts [records=1000000]
 * 1. put throughput, fsync 'batch', 100-byte payloads, at several numbers of concurrent puts;
 * 2. a queue of `records` records written, then reopened in a fresh process: open time and RSS.
 * The reopen runs from an esbuild bundle under plain node, as a deployed agent would: the tsx
 * loader alone adds ~33 MB of RSS, which would measure the loader, not the queue.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OutboxMessage } from '../src/core/outbox.ts';
import { DurableQueue, type FsyncPolicy } from '../src/node/durable-queue/index.ts';

const self = fileURLToPath(import.meta.url);
const mb = (n: number) => Math.round((n / (1 << 20)) * 10) / 10;

function message(i: number): OutboxMessage {
  const payload = new Uint8Array(100);
  payload[0] = i & 0xff;
  return { topic: `site/dev${i % 64}/temperature`, payload, qos: 1, retain: false };
}

async function throughput(
  fsync: FsyncPolicy,
  concurrency: number,
  total: number,
  parallelFsyncs = 1,
): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-scale-'));
  try {
    const q = await DurableQueue.open(dir, { fsync, parallelFsyncs });
    const m = message(1);
    let issued = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (issued < total) {
          issued++;
          await q.put(m);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const s = q.stats();
    await q.close();
    console.log(
      JSON.stringify({
        fsync,
        parallelFsyncs,
        concurrency,
        puts: total,
        putsPerSec: Math.round(total / secs),
        fsyncs: s.fsyncs,
      }),
    );
    return total / secs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function write(dir: string, n: number): Promise<void> {
  const q = await DurableQueue.open(dir, { fsync: 'never' });
  let last: Promise<number> = Promise.resolve(0);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    last = q.put(message(i));
    if ((i & 0xffff) === 0) await last; // lets the write scheduler run and the promises settle
  }
  await last;
  await q.close();
  console.log(JSON.stringify({ wrote: n, ms: Math.round(performance.now() - t0) }));
}

async function open(dir: string): Promise<void> {
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  const q = await DurableQueue.open(dir);
  const openMs = performance.now() - t0;
  const s = q.stats();
  const rssOpen = process.memoryUsage().rss;
  const t1 = performance.now();
  let after = 0;
  for (let i = 0; i < 100; i++) {
    const es = q.read(after, 1000);
    after = es[es.length - 1].seq;
  }
  const readMs = performance.now() - t1;
  const rssRead = process.memoryUsage().rss;
  console.log(
    JSON.stringify({
      records: s.count,
      segments: s.segments,
      openMs: Math.round(openMs),
      read100kMs: Math.round(readMs),
      rssBeforeOpenMB: mb(rss0),
      rssAfterOpenMB: mb(rssOpen),
      rssAfterReadMB: mb(rssRead),
      heapUsedMB: mb(process.memoryUsage().heapUsed),
    }),
  );
  await q.close();
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'write') await write(a, Number(b));
else if (mode === 'open') await open(a);
else {
  const records = Number(mode ?? 1_000_000) || 1_000_000;
  for (const c of [1, 16, 256, 4096]) await throughput('batch', c, c === 1 ? 5_000 : 200_000);
  for (const c of [1, 16]) await throughput('batch', c, c === 1 ? 5_000 : 200_000, 4);
  await throughput('never', 256, 200_000);
  const dir = mkdtempSync(join(tmpdir(), 'mqtt-edge-dq-scale-'));
  const bundle = join(dir, 'scale-bundle.mjs');
  try {
    // imported here only: the bundle's own runs must not need esbuild
    const { buildSync } = await import('esbuild');
    buildSync({
      entryPoints: [self],
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: bundle,
      external: ['esbuild'],
    });
    const run = (...args: string[]) =>
      execFileSync(process.execPath, [bundle, ...args], { stdio: 'inherit' });
    const q = join(dir, 'queue');
    run('write', q, String(records));
    execFileSync('du', ['-sh', q], { stdio: 'inherit' });
    execFileSync(
      process.execPath,
      [
        '-e',
        'console.log(JSON.stringify({ bareNodeRssMB: Math.round(process.memoryUsage().rss / 104857.6) / 10 }))',
      ],
      { stdio: 'inherit' },
    );
    const evict = () => {
      // write back, then drop this queue's pages from the page cache (GNU dd): a cold open
      execFileSync('sync');
      for (const f of readdirSync(q)) {
        execFileSync('dd', [`if=${join(q, f)}`, 'iflag=nocache', 'count=0', 'status=none']);
      }
    };
    console.log('# warm page cache, sealed segments indexed');
    run('open', q);
    run('open', q);
    console.log('# cold page cache, sealed segments indexed');
    evict();
    run('open', q);
    for (const f of readdirSync(q)) if (f.endsWith('.idx')) rmSync(join(q, f));
    console.log('# warm page cache, no index files: every segment scanned (the open rewrites them)');
    run('open', q);
    for (const f of readdirSync(q)) if (f.endsWith('.idx')) rmSync(join(q, f));
    console.log('# cold page cache, every segment scanned');
    evict();
    run('open', q);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
