/**
 * `npm run bench [-- --json] [--only AREA] [--quick]`: runs every area's benchmarks, ours and the
 * peers' side by side in this one process, and prints a table (or one JSON object).
 */
import os from 'node:os';
import { type BenchArea, type BenchRow, formatNumber } from './harness.ts';

const AREAS = [
  'codec',
  'topics',
  'engines',
  'client',
  'broker',
  'conns',
  'agent',
  'bridge',
  'fleet',
  'install',
  'page',
  'serial',
  'modbus',
  'pi',
  'flash',
] as const;

function parseArgs(argv: string[]): { json: boolean; only: string | null; quick: boolean } {
  let json = false;
  let only: string | null = null;
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') json = true;
    else if (a === '--quick') quick = true;
    else if (a === '--only') only = argv[++i] ?? null;
    else if (a === '--help' || a === '-h') {
      console.log(`usage: npm run bench [-- [--json] [--only AREA] [--quick]]
  --json        print one JSON object {machine, rows:[{name, unit, ours, peer, peerName, ratio}]}
  --only AREA   run one area: ${AREAS.join(', ')}
  --quick       short runs (smoke test of the harness; figures are noisy)`);
      process.exit(0);
    } else {
      console.error(`unknown argument: ${a} (see --help)`);
      process.exit(2);
    }
  }
  if (only !== null && !(AREAS as readonly string[]).includes(only)) {
    console.error(`unknown area '${only}': one of ${AREAS.join(', ')}`);
    process.exit(2);
  }
  return { json, only, quick };
}

async function loadArea(name: string): Promise<BenchArea | null> {
  try {
    const mod = (await import(`./areas/${name}.ts`)) as { default: BenchArea };
    return mod.default;
  } catch (err) {
    if (
      (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' &&
      String(err).includes(`areas/${name}`)
    )
      return null;
    throw err;
  }
}

function printTable(rows: BenchRow[]): void {
  const header = ['benchmark', 'unit', 'ours', 'peer', 'peer value', 'ratio', 'target'];
  const body = rows.map((r) => [
    r.name,
    r.unit,
    formatNumber(r.ours),
    r.peerName,
    formatNumber(r.peer),
    r.ratio === null ? '-' : `${formatNumber(r.ratio)}x`,
    r.target === undefined ? '' : `${r.target}x ${r.ratio !== null && r.ratio >= r.target ? 'ok' : 'MISS'}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
  for (const r of rows) if (r.note) console.log(`note: ${r.name}: ${r.note}`);
}

const args = parseArgs(process.argv.slice(2));
const machine = {
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  platform: `${os.platform()} ${os.release()}`,
};
const rows: BenchRow[] = [];
for (const name of AREAS) {
  if (args.only !== null && args.only !== name) continue;
  const area = await loadArea(name);
  if (area === null) {
    if (args.only !== null) console.error(`area '${name}' has no benchmarks yet`);
    continue;
  }
  if (!args.json) console.error(`running ${name} ...`);
  rows.push(...(await area.run({ quick: args.quick })));
}
if (args.json) console.log(JSON.stringify({ machine, date: new Date().toISOString(), rows }, null, 2));
else {
  console.log(
    `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.memoryGiB} GiB, node ${machine.node}`,
  );
  printTable(rows);
}
