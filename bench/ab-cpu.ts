/**
 * `npm run bench:ab -- BASE_DIR [WHAT] [ROUNDS]`: broker-lite's CPU per message, this checkout
 * against another (a `git worktree` of the commit before a change), in one run. Both brokers run
 * side by side for the whole run (their JIT warm), the load alternates between them round by
 * round (ABBA), and the broker process's CPU time (every thread, /proc/PID/task/TID/schedstat)
 * is divided by the messages it handled: unlike a rate, that does not depend on how the load
 * generator and the two brokers share the cores. WHAT: 0, 1, 2 (fan-in at that QoS, 20 x 5,000
 * messages), fanout (1 x 2,000 to 200), alias-off or alias-on (1 x 2,000 to 50 MQTT 5
 * subscribers of a 48-character topic, which allow no topic aliases or do; a base from before
 * issue 15 sends none either way). The first 3 rounds are warm-up and left out.
 * AB_ENV='NAME=VALUE ...' sets environment variables for this checkout's broker only: with BASE_DIR
 * this same checkout, it measures what a setting costs (e.g. the unit's MALLOC_ARENA_MAX).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { aliasFanout, fanin, fanout } from './areas/broker.ts';

const baseDir = process.argv[2];
if (baseDir === undefined) {
  console.error('usage: npm run bench:ab -- BASE_DIR [0|1|2|fanout|alias-off|alias-on] [ROUNDS]');
  process.exit(2);
}
// The load generator's children import @mqtt-edge/codec as a user would (its dist/): without a
// build they would die at import and the run would wait for them forever.
const codecDist = path.join(import.meta.dirname, '../packages/codec/dist/index.js');
if (!fs.existsSync(codecDist)) {
  console.error(
    `bench:ab: ${codecDist} is missing: run \`npx tsc -b tsconfig.build.json\` (or npm run build) first`,
  );
  process.exit(2);
}
const what = process.argv[3] ?? '1';
const rounds = Math.max(4, Number(process.argv[4] ?? 12));
const WARMUP = 3;
async function bundle(root: string): Promise<string> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ab-')), 'b.mjs');
  await build({
    entryPoints: [path.join(root, 'packages/broker-lite/src/index.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: out,
    external: ['bufferutil', 'utf-8-validate'],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'silent',
    conditions: ['mqtt-edge-source'],
  });
  return out;
}
const SCRIPT = `const { Broker } = await import(process.env.B); const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }] }); await b.listen(); console.log('PORT ' + b.addresses[0].port);`;
function cpuNs(pid: number): number {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {}
  }
  return ns;
}
/** AB_ENV's assignments, for this checkout's broker. */
const abEnv = Object.fromEntries(
  (process.env.AB_ENV ?? '')
    .split(/\s+/)
    .filter((a) => a.includes('='))
    .map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]),
);
async function start(b: string, extra: Record<string, string> = {}) {
  const c = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    env: { ...process.env, B: b, NODE_OPTIONS: '', ...extra },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((res) => {
    let o = '';
    c.stdout!.on('data', (d) => {
      o += d;
      const m = /PORT (\d+)/.exec(o);
      if (m) res(Number(m[1]));
    });
  });
  return { c, port };
}
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const variants: Record<string, string> = {
  main: await bundle(ROOT),
  base: await bundle(path.resolve(baseDir)),
};
const res: Record<string, number[]> = { main: [], base: [] };
const brokers: Record<string, { c: ReturnType<typeof spawn>; port: number }> = {};
for (const k of Object.keys(variants)) brokers[k] = await start(variants[k], k === 'main' ? abEnv : {});
for (let r = 0; r < rounds; r++) {
  for (const k of r % 2 === 0 ? ['main', 'base'] : ['base', 'main']) {
    const { c, port } = brokers[k];
    const c0 = cpuNs(c.pid!);
    if (what === 'fanout') {
      const f = await fanout(port, 200, 2000);
      res[k].push((cpuNs(c.pid!) - c0) / 1000 / f.delivered);
    } else if (what === 'alias-off' || what === 'alias-on') {
      const f = await aliasFanout(port, what === 'alias-on', 50, 2000);
      res[k].push((cpuNs(c.pid!) - c0) / 1000 / f.delivered);
    } else {
      const f = await fanin(port, Number(what) as 0 | 1 | 2, 20, 5000);
      res[k].push((cpuNs(c.pid!) - c0) / 1000 / f.unique);
    }
  }
}
for (const k of Object.keys(brokers)) brokers[k].c.kill();
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const main = res.main.slice(WARMUP);
const base = res.base.slice(WARMUP);
const perDelivery = what === 'fanout' || what.startsWith('alias');
const unit = perDelivery ? 'us/delivery' : 'us/msg';
const label =
  what === 'fanout' ? 'fan-out 200' : perDelivery ? `fan-out 50 MQTT 5, ${what}` : `fan-in QoS ${what}`;
console.log(
  `${label}: this checkout ${med(main).toFixed(3)} ${unit}, base ${med(base).toFixed(3)} ${unit} (medians of ${main.length} rounds); base/this ${(med(base) / med(main)).toFixed(3)} (>= 0.95: within 5%)`,
);
console.log(
  `  this: ${main.map((x) => x.toFixed(3)).join(' ')}\n  base: ${base.map((x) => x.toFixed(3)).join(' ')}`,
);
process.exit(0);
