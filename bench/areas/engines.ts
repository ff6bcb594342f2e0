/**
 * engines (issue 21): the codec where microcontroller-class JavaScript runs. Decode and encode
 * packets per second of the ES5 build (packages/codec/dist/codec.es5.js, as scripts/build-es5.ts
 * makes it) inside Debian's Duktape (`duk`, a child process, after the ES5.1 prelude of the
 * tests) and of the ES2020 build inside QuickJS (quickjs-emscripten: QuickJS compiled to
 * WebAssembly, in this process), for the codec area's packets. Timed inside the engine with
 * Date.now() (what both have), over `ms` per row after a warm-up; decode hands one whole packet
 * to PacketParser.push per call, encode is PacketWriter.encode (as in the codec area).
 *
 * mqtt-packet's rows are "does not run": it needs Node's Buffer, streams and util, which these
 * engines have not; the note says what bundling it for a plain engine (esbuild, platform
 * neutral) reports.
 */
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { encode } from '../../packages/codec/src/index.ts';
import { buildEs5 } from '../../scripts/build-es5.ts';
import { DUK, DUK_MISSING, type Engine, startDuk, startQuickJS } from '../../test/helpers/engines.ts';
import { type BenchArea, type BenchRow, rateRow } from '../harness.ts';
import { cases } from './codec.ts';

const HARNESS = readFileSync(new URL('../fixtures/es5-engines-bench.js', import.meta.url), 'utf8');
const PEER = 'mqtt-packet';

const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const toJson = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? { $hex: toHex(x) } : x));

/** Why mqtt-packet cannot be loaded into a bare engine: what a bundler says of it. */
async function whyPeerCannotRun(): Promise<string> {
  try {
    await build({
      stdin: { contents: "import mp from 'mqtt-packet'; export default mp;", resolveDir: process.cwd() },
      bundle: true,
      write: false,
      format: 'iife',
      platform: 'neutral',
      mainFields: ['main', 'module'],
      logLevel: 'silent',
    });
    return 'bundled, but needs Node Buffer and streams at run time';
  } catch (err) {
    const missing = ((err as { errors?: Array<{ text: string }> }).errors ?? [])
      .map((e) => /Could not resolve "([^"]+)"/.exec(e.text)?.[1])
      .filter((m): m is string => m !== undefined);
    return `mqtt-packet does not run in these engines: it needs Node's ${[...new Set(missing)].join(', ')} modules and Buffer (esbuild cannot bundle it for a plain engine)`;
  }
}

async function run(options: { quick: boolean }): Promise<BenchRow[]> {
  const ms = options.quick ? 200 : 1500;
  const note = await whyPeerCannotRun();
  const rows: BenchRow[] = [];
  const engines: Array<{ label: string; start: () => Promise<Engine> }> = [];
  if (DUK === null) console.error(DUK_MISSING);
  else
    engines.push({
      label: 'duktape ES5',
      start: async () =>
        startDuk([
          { name: 'codec.js', code: (await buildEs5('codec')).code },
          { name: 'bench.js', code: HARNESS },
        ]),
    });
  engines.push({
    label: 'quickjs ES2020',
    start: async () =>
      startQuickJS([
        { name: 'codec.js', code: (await buildEs5('codec', { target: 'es2020' })).code },
        { name: 'bench.js', code: HARNESS },
      ]),
  });
  for (const e of engines) {
    const engine = await e.start();
    try {
      for (const c of cases()) {
        const wire = encode(c.ours, c.version);
        const arg = toJson({ v: c.version, packet: c.ours, hex: toHex(wire), ms, batch: 50 });
        const [line] = await engine.run(`H.run(${JSON.stringify(arg)})`);
        const r = JSON.parse(line) as { same: boolean; decoded: number; decode: number; encode: number };
        if (!r.same || r.decoded !== 1) throw new Error(`${e.label} ${c.name}: bytes differ from Node's`);
        // mqtt-packet's side of every row is empty; the first row of each engine says why
        const first = rows.length === 0 || !rows[rows.length - 1].name.endsWith(`(${e.label})`);
        const why = first ? note : undefined;
        rows.push(
          rateRow(`engines:decode ${c.name} (${e.label})`, 'packets/s', r.decode, null, PEER, undefined, why),
        );
        rows.push(rateRow(`engines:encode ${c.name} (${e.label})`, 'packets/s', r.encode, null, PEER));
      }
    } finally {
      engine.close();
    }
  }
  return rows;
}

const area: BenchArea = { area: 'engines', run };
export default area;
