/**
 * `npm run bundle [-- --outdir DIR]`: the two gateway commands as single files, for copying
 * onto a Raspberry Pi with scp (docs in the root README, "Single-file bundles"):
 *
 *   dist/broker-lite.mjs       broker-lite with all its JavaScript (codec, client)
 *   dist/mqtt-edge-agent.mjs   the agent with all its JavaScript (cbor-x, yaml, serialport's JS)
 *   dist/prebuilds/linux-*     serialport's native binding for Linux arm (armv6/armv7), arm64,
 *                              x64 (glibc and musl), which the agent loads from beside it
 *
 * Built from the TypeScript sources (the "mqtt-edge-source" condition), not from the packages'
 * dist/, so a bundle is never older than the tree. Each file needs only `node` (20.19+).
 *
 * `--bins` (run by `npm run build`): each command's packages/NAME/dist/bin/ instead, what the
 * installed bin runs (buildBins below).
 */
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { statusPageModule } from '../packages/broker-lite/status-page/build.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function version(pkgDir: string): string {
  return JSON.parse(readFileSync(path.join(ROOT, pkgDir, 'package.json'), 'utf8')).version;
}

/**
 * `createRequire(import.meta.url)('x')` loads a package lazily where a Node process has a
 * node_modules to find it in; a bundle has none. As `require('x')`, esbuild bundles the package
 * and still runs its code only at the first call (the agent's yaml costs ~8 MB of RSS only for
 * a YAML config). Every rewrite must find what it expects: a changed source fails the build here.
 */
const lazyRequires: Plugin = {
  name: 'lazy-requires',
  setup(b) {
    b.onLoad({ filter: /[/\\](packages|firmware-sim)[/\\].*[/\\]src[/\\].*\.ts$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('createRequire(import.meta.url)(')) return undefined;
      return { contents: text.replaceAll('createRequire(import.meta.url)(', 'require('), loader: 'ts' };
    });
    // serialport's binding loads its .node file from its own package directory; in the bundle,
    // from prebuilds/ beside the bundle (node-gyp-build picks the platform, arch and libc there).
    b.onLoad({ filter: /@serialport[/\\]bindings-cpp[/\\]dist[/\\]serialport-bindings\.js$/ }, () => ({
      contents: "exports.binding = require('node-gyp-build')(__mqttEdgeBundleDir);",
      loader: 'js',
    }));
  },
};

/**
 * broker-lite's `#status-page`: under the source condition it is status-page/build.ts, which
 * builds the page with esbuild at run time. What is installed or bundled embeds the built page
 * instead (the module `npm run build` writes to dist/status-page/files.js), and no esbuild.
 */
function embeddedStatusPage(): Plugin {
  let text: Promise<string> | undefined;
  return {
    name: 'embedded-status-page',
    setup(b) {
      b.onResolve({ filter: /^#status-page$/ }, () => ({
        path: 'status-page',
        namespace: 'embedded-status-page',
      }));
      b.onLoad({ filter: /.*/, namespace: 'embedded-status-page' }, async () => {
        text ??= statusPageModule();
        return { contents: await text, loader: 'js' };
      });
    },
  };
}

/** `npm run build`: the status page embedded, where broker-lite's dist/ imports it (`#status-page`). */
export async function writeStatusPage(): Promise<string> {
  const out = path.join(ROOT, 'packages', 'broker-lite', 'dist', 'status-page', 'files.js');
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, await statusPageModule());
  return out;
}

const BANNER = [
  "import { createRequire as __mqttEdgeCreateRequire } from 'node:module';",
  "import { dirname as __mqttEdgeDirname } from 'node:path';",
  "import { fileURLToPath as __mqttEdgeFileURLToPath } from 'node:url';",
  // CommonJS dependencies (ws, yaml, serialport's JS) require Node's built-in modules.
  'const require = __mqttEdgeCreateRequire(import.meta.url);',
  'const __mqttEdgeBundleDir = __mqttEdgeDirname(__mqttEdgeFileURLToPath(import.meta.url));',
].join('\n');

export interface BundleResult {
  broker: string;
  agent: string;
  prebuilds: string;
  /** Bytes of each output file. */
  sizes: Record<string, number>;
}

export async function buildBundles(outdir = path.join(ROOT, 'dist')): Promise<BundleResult> {
  mkdirSync(outdir, { recursive: true });
  const common = {
    bundle: true,
    platform: 'node' as const,
    format: 'esm' as const,
    target: 'node20',
    conditions: ['mqtt-edge-source'],
    // Optional native accelerators, each loaded in a try and not needed: ws's bufferutil and
    // utf-8-validate, cbor-x's cbor-extract (the agent turns it off); serialport, the umbrella
    // package, is loaded only off Linux (packages/serial-protocol/src/node/serial-port.ts).
    external: ['bufferutil', 'utf-8-validate', 'cbor-extract', 'serialport'],
    banner: { js: `#!/usr/bin/env node\n${BANNER}` },
    plugins: [lazyRequires, embeddedStatusPage()],
    legalComments: 'eof' as const,
    logLevel: 'warning' as const,
  };
  const broker = path.join(outdir, 'broker-lite.mjs');
  const agent = path.join(outdir, 'mqtt-edge-agent.mjs');
  await build({
    ...common,
    stdin: {
      contents: "import { run } from './packages/broker-lite/src/cli.ts';\nawait run();\n",
      resolveDir: ROOT,
      sourcefile: 'broker-lite-bundle.ts',
      loader: 'ts',
    },
    define: { __BROKER_LITE_VERSION__: JSON.stringify(version('packages/broker-lite')) },
    outfile: broker,
  });
  await build({
    ...common,
    stdin: {
      // As bin/mqtt-edge-agent.js: before cbor-x is first imported (an operator's setting wins).
      contents:
        "process.env.CBOR_NATIVE_ACCELERATION_DISABLED ??= 'true';\nawait import('./packages/agent/src/cli.ts');\n",
      resolveDir: ROOT,
      sourcefile: 'mqtt-edge-agent-bundle.ts',
      loader: 'ts',
    },
    outfile: agent,
  });
  for (const f of [broker, agent]) chmodSync(f, 0o755);

  const prebuilds = path.join(outdir, 'prebuilds');
  rmSync(prebuilds, { recursive: true, force: true });
  const from = path.join(path.dirname(fileURLToPath(import.meta.resolve('@serialport/bindings-cpp'))), '..');
  for (const dir of readdirSync(path.join(from, 'prebuilds'))) {
    if (dir.startsWith('linux-'))
      cpSync(path.join(from, 'prebuilds', dir), path.join(prebuilds, dir), { recursive: true });
  }
  const sizes: Record<string, number> = {};
  for (const f of [broker, agent]) sizes[path.basename(f)] = statSync(f).size;
  for (const dir of readdirSync(prebuilds)) {
    for (const f of readdirSync(path.join(prebuilds, dir))) {
      sizes[`prebuilds/${dir}/${f}`] = statSync(path.join(prebuilds, dir, f)).size;
    }
  }
  return { broker, agent, prebuilds, sizes };
}

/**
 * The packages whose bins run a bundle (`#cli` -> dist/bin/cli.js), each with the modules its
 * CLI imports dynamically that an ordinary start loads anyway (broker-lite's CLI imports the
 * broker core lazily so that `check` and `passwd` start without it).
 */
const BIN_PACKAGES = [
  { dir: 'packages/broker-lite', start: ['src/broker.ts'] },
  { dir: 'packages/agent', start: [] },
] as const;

interface PackageJson {
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

/** The third-party packages `dir` and its @mqtt-edge dependencies import: left to node_modules. */
function thirdParty(dir: string, seen = new Set<string>()): Set<string> {
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as PackageJson;
  for (const name of Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies })) {
    if (!name.startsWith('@mqtt-edge/')) seen.add(name);
    else thirdParty(path.join(ROOT, 'packages', name.slice('@mqtt-edge/'.length)), seen);
  }
  return seen;
}

/**
 * A start's modules in one chunk. With splitting, esbuild puts each set of modules reachable
 * from the same entries (the CLI and every dynamic import) in a chunk of its own: broker-lite's
 * default start came to 9 files. Each ES module file costs Node's loader a few URL-to-path
 * conversions (a loop over the path); under the bench's install directory the 84 of a start
 * made V8 compile that loop with TurboFan, whose code (~4 MB of the node binary) then stays in
 * RSS: 50.4 MB idle instead of 46.7 (bench/RESULTS.md, "install"). So, in the bins only, the
 * CLI imports its `start` modules statically and every dynamically imported module (`entries`,
 * the start modules too) imports the CLI: what a start loads is then reachable from every
 * entry, one shared chunk, and an entry's chunk holds only what that entry alone needs. The
 * added imports have no effects of their own: the start modules run before the CLI's body
 * instead of at its dynamic import, and nothing they run at load depends on when.
 */
function oneStartChunk(cli: string, start: string[], entries: Set<string>): Plugin {
  const prepend = (file: string, imports: string[]) => ({
    contents: imports.map((f) => `import ${JSON.stringify(f)};\n`).join('') + readFileSync(file, 'utf8'),
    loader: file.endsWith('.ts') ? ('ts' as const) : ('js' as const),
  });
  return {
    name: 'one-start-chunk',
    setup(b) {
      b.onLoad({ filter: /\.[jt]s$/ }, (args) => {
        if (args.path === cli) return prepend(cli, start);
        if (entries.has(args.path)) return prepend(args.path, [cli]);
        return undefined;
      });
    },
  };
}

/**
 * Part of `npm run build`: each command's `dist/bin/cli.js`, its `src/cli.ts` with the @mqtt-edge
 * packages it uses (third-party packages stay in node_modules). Every ES module Node loads
 * stays in RSS: the broker's CLI as ~60 tsc-emitted modules idled about 4 MB above the same
 * code as one file (bench/RESULTS.md, section "install"). Dynamic imports (the WebSocket
 * listener, the status page, /metrics, bridges) stay lazy; what a start loads is one chunk
 * (oneStartChunk). The library entries keep tsc's output.
 */
export async function buildBins(): Promise<string[]> {
  const out: string[] = [];
  for (const { dir, start } of BIN_PACKAGES) {
    const pkgDir = path.join(ROOT, dir);
    const outdir = path.join(pkgDir, 'dist', 'bin');
    const cli = path.join(pkgDir, 'src', 'cli.ts');
    const options = {
      entryPoints: { cli },
      bundle: true,
      // Each dynamic import its own chunk: an import of a package left to node_modules (ws)
      // is static in ESM, so in one file it would load at start even where it is never used.
      splitting: true,
      chunkNames: 'chunk-[hash]',
      platform: 'node' as const,
      format: 'esm' as const,
      target: 'node20',
      conditions: ['mqtt-edge-source'],
      external: [...thirdParty(pkgDir)].flatMap((n) => [n, `${n}/*`]),
      // dist/bin/ is not where src/cli.ts looks for ../package.json.
      define: { __BROKER_LITE_VERSION__: JSON.stringify(version(dir)) },
      legalComments: 'eof' as const,
      logLevel: 'warning' as const,
      outdir,
    };
    // A first pass finds the dynamically imported modules: each is an entry of its own chunk.
    const first = await build({ ...options, plugins: [embeddedStatusPage()], metafile: true, write: false });
    const entries = new Set(
      Object.values(first.metafile.outputs)
        .flatMap((o) => (o.entryPoint === undefined ? [] : [path.resolve(ROOT, o.entryPoint)]))
        .filter((f) => f !== cli && existsSync(f)),
    );
    const startFiles = start.map((f) => path.join(pkgDir, f));
    rmSync(outdir, { recursive: true, force: true });
    await build({ ...options, plugins: [embeddedStatusPage(), oneStartChunk(cli, startFiles, entries)] });
    out.push(path.join(outdir, 'cli.js'));
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--bins')) {
    console.log(`built ${path.relative(ROOT, await writeStatusPage())}`);
    for (const f of await buildBins()) console.log(`built ${path.relative(ROOT, f)}`);
    process.exit(0);
  }
  const i = process.argv.indexOf('--outdir');
  const outdir = i > 0 ? path.resolve(process.argv[i + 1]) : undefined;
  const r = await buildBundles(outdir);
  for (const [f, n] of Object.entries(r.sizes)) console.log(`${(n / 1024).toFixed(0).padStart(6)} KiB  ${f}`);
  console.log(
    `\nCopy to a gateway: scp -r ${path.relative(process.cwd(), r.broker)} ${path.relative(process.cwd(), r.agent)} ${path.relative(process.cwd(), r.prebuilds)} pi@HOST:/opt/mqtt-edge/`,
  );
}
