// Measures what the shared logger (@mqtt-edge/log) costs, beside pino, for the choice recorded
// in packages/log/README.md:
//   node scripts/measure-logger.mjs [--pino DIR]     (DIR: a node_modules holding pino; e.g.
//   `npm i --no-save pino@10` puts it in ./node_modules)
// 1. per line: a typical broker line (a message and five fields) as JSON to /dev/null, written
//    synchronously; and a line below the threshold (the cost a hot path pays for a debug call);
// 2. RSS of broker-lite at idle (one listener, no clients), its sources bundled with esbuild as a
//    gateway runs them (ws, and pino, loaded from node_modules), with its logger as it is, and
//    with a pino logger made and used beside it: the RSS pino adds to the broker process.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = process.argv.indexOf('--pino');
const pinoDir = arg > 0 ? path.resolve(process.argv[arg + 1]) : path.join(ROOT, 'node_modules');
let pinoPath;
try {
  pinoPath = createRequire(path.join(pinoDir, 'x.js')).resolve('pino');
} catch {
  pinoPath = undefined;
}

// Under node_modules, so that the bundle finds ws (and nothing is left in the source tree).
mkdirSync(path.join(ROOT, 'node_modules', '.cache'), { recursive: true });
const out = mkdtempSync(path.join(ROOT, 'node_modules', '.cache', 'measure-logger-'));
const bundle = async (entry, name) => {
  const file = path.join(out, name);
  await build({
    entryPoints: [path.join(ROOT, entry)],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: file,
    external: ['ws', 'bufferutil', 'utf-8-validate'],
    logLevel: 'silent',
  });
  return file;
};
const logBundle = await bundle('packages/log/src/index.ts', 'log.mjs');
const brokerBundle = await bundle('packages/broker-lite/src/index.ts', 'broker.mjs');

// ---- 1. per line
const { createSink } = await import(pathToFileURL(logBundle).href);
const devnull = openSync('/dev/null', 'a');
const fields = () => ({
  clientId: 'sensor-17',
  username: 'gw',
  topic: 'plant/line3/temp',
  bytes: 42,
  qos: 1,
});
const N = 200_000;
function perLine(name, fn) {
  for (let i = 0; i < 20_000; i++) fn();
  const best = [];
  for (let r = 0; r < 5; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn();
    best.push(Number(process.hrtime.bigint() - t) / N);
  }
  best.sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} ${best[2].toFixed(0).padStart(6)} ns/line (median of 5 x ${N})`);
}
const sink = createSink({ destinations: [{ fd: devnull, isTty: false, journal: false }], format: 'json' });
perLine('@mqtt-edge/log, JSON line to /dev/null', () => sink.write('notice', 'Denied PUBLISH', fields()));
const sinkJournal = createSink({
  destinations: [{ fd: devnull, isTty: false, journal: true }],
  format: 'json',
});
perLine('@mqtt-edge/log, JSON line with <N> prefix', () =>
  sinkJournal.write('notice', 'Denied PUBLISH', fields()),
);
let max = 6;
perLine('@mqtt-edge/log call below the threshold', () => {
  if (7 > max) return;
  sink.write('debug', 'x', fields());
});
if (pinoPath !== undefined) {
  const pino = createRequire(pinoPath)(pinoPath);
  const p = pino(
    {
      level: 'info',
      base: undefined,
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: devnull, sync: true }),
  );
  perLine('pino, JSON line to /dev/null (sync)', () => p.info(fields(), 'Denied PUBLISH'));
  perLine('pino call below the threshold', () => p.debug(fields(), 'x'));
} else console.log('pino not found: npm i --no-save pino@10 (or --pino DIR) to compare');
max = 0;

// ---- 2. RSS of the broker at idle
const child = (withPino) => `
const { Broker, createLogger } = await import(${JSON.stringify(pathToFileURL(brokerBundle).href)});
const logger = createLogger({ types: ['error', 'warning', 'notice', 'information'], destinations: [{ fd: 2, isTty: false, journal: false }], format: 'json', timestamp: true });
let extra = () => {};
if (${withPino}) {
  const { createRequire } = await import('node:module');
  const pino = createRequire(${JSON.stringify(pinoPath ?? '')})(${JSON.stringify(pinoPath ?? '')});
  const p = pino({ level: 'info' }, pino.destination({ fd: 2, sync: true }));
  extra = (m) => p.info({ pid: process.pid }, m);
}
const b = new Broker({ listeners: [{ port: 0, host: '127.0.0.1', protocol: 'mqtt' }], sysInterval: 0, logger });
await b.listen();
logger.log('notice', 'ready', { pid: process.pid });
extra('ready');
await new Promise((r) => setTimeout(r, 1500));
globalThis.gc();
await new Promise((r) => setTimeout(r, 300));
process.stdout.write(String(process.memoryUsage().rss));
await b.close();
process.exit(0);
`;
const rss = (withPino) => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child(withPino)], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: 30_000,
  });
  return Number(r.stdout) / 2 ** 20;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const RUNS = Number(process.env.RUNS ?? 9);
const own = [];
const withPino = [];
for (let i = 0; i < RUNS; i++) {
  own.push(rss(false));
  if (pinoPath !== undefined) withPino.push(rss(true));
}
console.log(
  `broker-lite idle RSS, its logger:        ${median(own).toFixed(1)} MB (median of ${RUNS}; ${own.map((x) => x.toFixed(1)).join(' ')})`,
);
if (pinoPath !== undefined)
  console.log(
    `broker-lite idle RSS, with pino as well: ${median(withPino).toFixed(1)} MB (median of ${RUNS}; ${withPino.map((x) => x.toFixed(1)).join(' ')})`,
  );
const bare = [];
for (let i = 0; i < RUNS; i++) {
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--input-type=module',
      '-e',
      `import net from 'node:net'; const s = net.createServer(); s.listen(0, '127.0.0.1', async () => { await new Promise((r) => setTimeout(r, 1500)); globalThis.gc(); await new Promise((r) => setTimeout(r, 300)); process.stdout.write(String(process.memoryUsage().rss)); process.exit(0); });`,
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  bare.push(Number(r.stdout) / 2 ** 20);
}
console.log(`bare node net.createServer idle RSS:     ${median(bare).toFixed(1)} MB (median of ${RUNS})`);
rmSync(out, { recursive: true, force: true });
