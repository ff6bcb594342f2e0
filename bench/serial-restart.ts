/**
 * Issue 19's measure: time from an agent restart (or a pty back after an unplug) to the first
 * reading stored, per cycle, over the kill/unplug loop of test/helpers/restart-loop.ts. Prints one
 * JSON object (the loop's summary) on stdout.
 *
 *   node --conditions=mqtt-edge-source --import tsx bench/serial-restart.ts \
 *     [--root DIR] [--cycles 20] [--down 3000] [--watch 1250] [--stored-within 10000]
 *
 * `--root` is the checkout whose agent and firmware-sim run (default: this one): the loop drives
 * that checkout's test/helpers/processes.ts, so an older checkout (a worktree of the commit
 * before issue 19, with node_modules) gives the "before" figure with the same loop. Run by the
 * bench's `serial` area (bench/areas/serial.ts) in a process of its own per checkout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type LoopHelpers, runRestartLoop } from '../test/helpers/restart-loop.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

const { values } = parseArgs({
  options: {
    root: { type: 'string', default: ROOT },
    cycles: { type: 'string', default: '20' },
    down: { type: 'string', default: '3000' },
    watch: { type: 'string', default: '1250' },
    'stored-within': { type: 'string', default: '10000' },
  },
});
const num = (k: 'cycles' | 'down' | 'watch' | 'stored-within', min: number, max: number) => {
  const n = Number(values[k]);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`--${k}: an integer ${min}..${max}; got ${values[k]}`);
    process.exit(2);
  }
  return n;
};
const cycles = num('cycles', 1, 200);
const downMs = num('down', 100, 60_000);
const watchMs = num('watch', 100, 60_000);
const storedWithinMs = num('stored-within', 0, 120_000);
// The agent the loop starts runs the checkout's sources, as its tests do.
if (!process.env.NODE_OPTIONS?.includes('--conditions=mqtt-edge-source'))
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --conditions=mqtt-edge-source`.trim();

const root = path.resolve(values.root);
const helpers = (await import(path.join(root, 'test/helpers/processes.ts'))) as LoopHelpers;
const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-serial-'));
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let code = 0;
try {
  const { summary } = await runRestartLoop(helpers, {
    cycles,
    downMs,
    watchMs,
    storedWithinMs,
    dir,
    cleanups,
  });
  process.stdout.write(`${JSON.stringify({ root, storedWithinMs, ...summary })}\n`);
} catch (e) {
  console.error(e);
  code = 1;
} finally {
  for (const c of cleanups.splice(0).reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
