/**
 * The shared benchmark harness: every area (codec, topics, client, broker, agent, bridge)
 * exports a BenchArea whose rows hold our figure and the peer's from the same run.
 */
import v8 from 'node:v8';

export interface BenchRow {
  /** Starts with the area: `codec:decode publish-qos0`. */
  name: string;
  /** What the numbers count: `packets/s`, `bytes/packet`, `ms`, ... */
  unit: string;
  ours: number;
  /** null when the peer could not run (say why in `note`). */
  peer: number | null;
  peerName: string;
  /** How many times better ours is: ours/peer for rates, peer/ours for times and bytes. */
  ratio: number | null;
  /** Target ratio from the issue, when there is one. */
  target?: number;
  note?: string;
}

export interface BenchOptions {
  /** Shorter runs, for smoke-testing the harness. */
  quick: boolean;
}

export interface BenchArea {
  area: string;
  run(options: BenchOptions): Promise<BenchRow[]>;
}

export function rateRow(
  name: string,
  unit: string,
  ours: number,
  peer: number | null,
  peerName: string,
  target?: number,
  note?: string,
): BenchRow {
  const ratio = peer === null || peer === 0 ? null : ours / peer;
  return { name, unit, ours, peer, peerName, ratio, target, note };
}

/** For times and bytes: lower is better, so the ratio is peer/ours. */
export function costRow(
  name: string,
  unit: string,
  ours: number,
  peer: number | null,
  peerName: string,
  target?: number,
  note?: string,
): BenchRow {
  const ratio = peer === null ? null : ours === 0 ? Number.POSITIVE_INFINITY : peer / ours;
  return { name, unit, ours, peer, peerName, ratio, target, note };
}

const gcFn = (globalThis as { gc?: () => void }).gc;
export function collectGarbage(): void {
  if (gcFn) {
    gcFn();
    gcFn();
  }
}

/**
 * Runs `op` in batches of `batch` until `ms` have passed (bounded by `maxOps`), after a warm-up,
 * and returns operations per second.
 */
export function measureRate(
  op: () => void,
  options: { ms: number; batch?: number; maxOps?: number },
): number {
  const batch = options.batch ?? 1000;
  const maxOps = options.maxOps ?? 50_000_000;
  const warmUntil = performance.now() + Math.min(200, options.ms / 4);
  while (performance.now() < warmUntil) for (let i = 0; i < batch; i++) op();
  let ops = 0;
  const start = performance.now();
  const end = start + options.ms;
  let now = start;
  while (now < end && ops < maxOps) {
    for (let i = 0; i < batch; i++) op();
    ops += batch;
    now = performance.now();
  }
  return (ops * 1000) / (now - start);
}

export interface AllocationFigures {
  /** Heap bytes allocated per operation: heap growth plus what each GC freed. */
  bytesPerOp: number;
  /** Garbage collections during the run. */
  gcCount: number;
}

/**
 * Heap bytes allocated per call of `op`. Node 20 exposes no cumulative allocation counter, so
 * this adds the heap growth over the run to the bytes every GC in it reclaimed (v8.GCProfiler
 * reports the heap before and after each one).
 */
export function measureAllocation(op: () => void, count: number): AllocationFigures {
  for (let i = 0; i < Math.min(count, 10_000); i++) op();
  collectGarbage();
  const profiler = new v8.GCProfiler();
  const usedBefore = v8.getHeapStatistics().used_heap_size;
  profiler.start();
  for (let i = 0; i < count; i++) op();
  const usedAfter = v8.getHeapStatistics().used_heap_size;
  const result = profiler.stop();
  let freed = 0;
  for (const gc of result.statistics) {
    freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
  }
  return {
    bytesPerOp: Math.max(0, usedAfter - usedBefore + freed) / count,
    gcCount: result.statistics.length,
  };
}

export function formatNumber(n: number | null): string {
  if (n === null) return '-';
  if (!Number.isFinite(n)) return 'inf';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(3);
}

/** Calls `onLine` with each line `child` prints on stdout. */
export function onLines(
  child: import('node:child_process').ChildProcess,
  onLine: (line: string) => void,
): void {
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
}

export { freePort } from '../test/helpers/mosquitto.ts';
export { stopProcess, untilListening } from '../test/helpers/processes.ts';
