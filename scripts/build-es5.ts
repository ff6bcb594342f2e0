/**
 * `npm run build:es5` (part of `npm run build`): the codec and the client core as ES5.1 scripts
 * for microcontroller-class engines (Duktape 2.7, and what else implements ES5.1 plus typed
 * arrays), each an IIFE that sets one global:
 *
 *   packages/codec/dist/codec.es5.js         MqttCodec: every packet, the parser, errors, reason
 *                                            codes, UTF-8, topic rules and matching (the codec's
 *                                            12,000-byte budget; no subscription index)
 *   packages/client/dist/client-core.es5.js  MqttClientCore: the sans-IO ClientSession, the
 *                                            MemoryOutbox and the codec above (one file to load)
 *
 * esbuild bundles the TypeScript sources to ES2020, TypeScript lowers the syntax to ES5 (its
 * helpers, `__extends` and `__assign`, test for Object.setPrototypeOf and Object.assign before
 * they use them), and esbuild minifies the ES5 text. Nothing is polyfilled: the sources use only
 * what ES5.1 and typed arrays give at run time (docs/DESIGN.md, "codec"), which
 * scripts/es5-check.ts checks and the Duktape tests exercise.
 *
 *   npx tsx scripts/build-es5.ts [--json]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, transform } from 'esbuild';
import ts from 'typescript';
import { CODEC_SOURCE } from '../packages/codec/scripts/bundle-size.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CODEC_SRC = path.join(ROOT, 'packages/codec/src');

export type Es5Part = 'codec' | 'client-core';

/** What each part holds, its global and where `npm run build` writes it. */
export const ES5_PARTS: Record<Es5Part, { globalName: string; outfile: string; contents: string }> = {
  codec: {
    globalName: 'MqttCodec',
    outfile: path.join(ROOT, 'packages/codec/dist/codec.es5.js'),
    contents: CODEC_SOURCE,
  },
  'client-core': {
    globalName: 'MqttClientCore',
    outfile: path.join(ROOT, 'packages/client/dist/client-core.es5.js'),
    contents: `${CODEC_SOURCE}\nexport * from '../../client/src/core/index.ts';`,
  },
};

export interface Es5Bundle {
  code: string;
  bytes: number;
  gzipBytes: number;
  /** The source files whose code is in the bundle (absolute paths). */
  sources: string[];
}

/**
 * One ES5 IIFE. `target: 'es2020'` gives the ES2020 IIFE of the same sources instead (what the
 * QuickJS side of the tests and the engines benchmark run).
 */
export async function buildEs5(
  part: Es5Part,
  options: { minify?: boolean; target?: 'es5' | 'es2020' } = {},
): Promise<Es5Bundle> {
  const spec = ES5_PARTS[part];
  const minify = options.minify ?? true;
  const es2020 = options.target === 'es2020';
  const bundled = await build({
    stdin: { contents: spec.contents, resolveDir: CODEC_SRC, loader: 'ts', sourcefile: `${part}.ts` },
    bundle: true,
    write: false,
    metafile: true,
    // ESM, then wrapped below: the exports become a plain object, where esbuild's IIFE makes a
    // getter per export (more bytes, and a function call per `MqttCodec.encode` in Duktape)
    format: 'esm',
    target: 'es2020',
    platform: 'neutral',
    conditions: ['mqtt-edge-source'],
    minify: es2020 && minify,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const sources = Object.entries(Object.values(bundled.metafile.outputs)[0].inputs)
    .filter(([, input]) => input.bytesInOutput > 0)
    .map(([file]) => path.resolve(ROOT, file));
  let code = asIife(bundled.outputFiles[0].text, spec.globalName);
  if (!es2020) {
    const lowered = ts.transpileModule(code, {
      compilerOptions: {
        target: ts.ScriptTarget.ES5,
        module: ts.ModuleKind.None,
        // for-of over arrays becomes an index loop (the sources iterate nothing else:
        // scripts/es5-check.ts), not an iterator protocol that needs Symbol
        downlevelIteration: false,
        removeComments: true,
      },
      reportDiagnostics: true,
    });
    // Syntax errors only: transpileModule's own option diagnostics (isolatedModules with no
    // module kind) are about type-checking, which this step does not do.
    const errors = (lowered.diagnostics ?? []).filter(
      (d) => d.file !== undefined && d.category === ts.DiagnosticCategory.Error,
    );
    if (errors.length > 0)
      throw new Error(
        `ES5 lowering of ${part}: ${errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ')}`,
      );
    // TypeScript puts its helpers (__extends, __assign) before the IIFE, as globals of their
    // own: one more function scope keeps them inside, so the file sets one global.
    code = `var ${spec.globalName} = (function () {\n${lowered.outputText}\nreturn ${spec.globalName};\n})();\n`;
    if (minify)
      code = (
        await transform(code, { minify: true, target: 'es5', legalComments: 'none', logLevel: 'silent' })
      ).code;
  }
  const raw = new TextEncoder().encode(code);
  return { code, bytes: raw.length, gzipBytes: gzipSync(raw, { level: 9 }).length, sources };
}

/**
 * `var NAME = (function () { ...; return { exports }; })();` from esbuild's ESM output, whose
 * exports are one `export { a as b, ... };` statement at its end.
 */
function asIife(esm: string, globalName: string): string {
  const m = /\bexport\s*\{([^}]*)\};?\s*$/.exec(esm);
  if (m === null) throw new Error('no export statement at the end of the bundle');
  const fields = m[1]
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
    .map((e) => {
      const [local, exported = local] = e.split(/\s+as\s+/);
      return `${exported}: ${local}`;
    });
  return `var ${globalName} = (function () {\n${esm.slice(0, m.index)}\nreturn { ${fields.join(', ')} };\n})();\n`;
}

/** Writes both ES5 files where ES5_PARTS says; returns their figures. */
export async function writeEs5Builds(): Promise<Record<Es5Part, Es5Bundle & { file: string }>> {
  const out = {} as Record<Es5Part, Es5Bundle & { file: string }>;
  for (const part of Object.keys(ES5_PARTS) as Es5Part[]) {
    const b = await buildEs5(part);
    const file = ES5_PARTS[part].outfile;
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, b.code);
    out[part] = { ...b, file };
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const built = await writeEs5Builds();
  if (process.argv.includes('--json'))
    console.log(
      JSON.stringify(
        Object.fromEntries(
          Object.entries(built).map(([k, b]) => [
            k,
            { file: b.file, bytes: b.bytes, gzipBytes: b.gzipBytes },
          ]),
        ),
      ),
    );
  else
    for (const b of Object.values(built))
      console.log(`built ${path.relative(ROOT, b.file)}: ${b.bytes} bytes minified, ${b.gzipBytes} gzipped`);
}
