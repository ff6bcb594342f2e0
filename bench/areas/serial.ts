/**
 * Serial liveness (issue 19): time from an agent restart (SIGKILL, or the pty unplugged) to the
 * first reading stored, over 20 cycles of the field test's loop (3 s down), median and max.
 * Ours is this checkout; the peer is "before", an older checkout named by
 * MQTT_EDGE_BENCH_BEFORE (a worktree of the commit before issue 19 with node_modules; how to
 * make one: bench/RESULTS.md, "serial (issue 19)"). Each runs bench/serial-restart.ts in a
 * process of its own. A cycle with no reading stored within STORED_WITHIN_MS counts as that
 * long (a stalled line does not end by itself) and is counted apart.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { type BenchArea, type BenchOptions, type BenchRow, costRow } from '../harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const STORED_WITHIN_MS = 10_000;

interface LoopSummary {
  restartToFirstStoredMs: { perCycle: Array<number | 'none'> };
  cyclesWithoutStored: number;
  silentCycles: number;
}

function runLoop(root: string, cycles: number, downMs: number): Promise<LoopSummary> {
  const args = [
    '--conditions=mqtt-edge-source',
    '--import',
    'tsx',
    path.join(ROOT, 'bench/serial-restart.ts'),
    '--root',
    root,
    '--cycles',
    String(cycles),
    '--down',
    String(downMs),
    '--stored-within',
    String(STORED_WITHIN_MS),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`bench/serial-restart.ts --root ${root} exited ${code}`));
      else {
        // The whole summary (per cycle, parked writes, the device's counters) for the record.
        console.error(`serial: ${out.trim()}`);
        resolve(JSON.parse(out) as LoopSummary);
      }
    });
  });
}

function figures(s: LoopSummary): { median: number; max: number; stalled: number } {
  const ms = s.restartToFirstStoredMs.perCycle.map((x) => (x === 'none' ? STORED_WITHIN_MS : x));
  const sorted = [...ms].sort((a, b) => a - b);
  return {
    median: sorted[Math.floor((sorted.length - 1) / 2)],
    max: sorted[sorted.length - 1],
    stalled: s.cyclesWithoutStored,
  };
}

const area: BenchArea = {
  area: 'serial',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (!hasSocat()) {
      console.error('serial: socat missing, skipped (apt-get install socat)');
      return [];
    }
    const cycles = options.quick ? 4 : 20;
    const downMs = options.quick ? 1500 : 3000;
    const ours = figures(await runLoop(ROOT, cycles, downMs));
    const beforeDir = process.env.MQTT_EDGE_BENCH_BEFORE;
    const before = beforeDir ? figures(await runLoop(path.resolve(beforeDir), cycles, downMs)) : undefined;
    const peerName = before ? 'before issue 19' : 'before (not run)';
    const note = before
      ? `${cycles} cycles, ${downMs} ms down; cycles with no reading stored within ${STORED_WITHIN_MS} ms (counted as that): ours ${ours.stalled}, before ${before.stalled}`
      : 'set MQTT_EDGE_BENCH_BEFORE to a checkout of the commit before issue 19 (bench/RESULTS.md)';
    return [
      costRow('serial:restart to first stored, median', 'ms', ours.median, before?.median ?? null, peerName),
      costRow(
        'serial:restart to first stored, max',
        'ms',
        ours.max,
        before?.max ?? null,
        peerName,
        undefined,
        note,
      ),
    ];
  },
};
export default area;
