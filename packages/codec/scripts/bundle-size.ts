/**
 * Bundles the whole codec (packages/codec/src/index.ts: every packet, the parser, the topic
 * functions) the way a browser or QuickJS user would, and reports its size minified and gzipped.
 *
 *   npx tsx packages/codec/scripts/bundle-size.ts [--json]
 */
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const ENTRY = fileURLToPath(new URL('../src/index.ts', import.meta.url));
/** The budget: at most 12 KB minified and gzipped. */
export const BUDGET_GZIP_BYTES = 12 * 1024;

export interface Bundle {
  code: string;
  bytes: number;
  gzipBytes: number;
}

/** An ES2020 bundle of the codec: `esm`, or an `iife` that sets the global `MqttCodec`. */
export async function bundleCodec(options: { format: 'esm' | 'iife'; minify: boolean }): Promise<Bundle> {
  const result = await build({
    entryPoints: [ENTRY],
    bundle: true,
    write: false,
    format: options.format,
    globalName: options.format === 'iife' ? 'MqttCodec' : undefined,
    target: 'es2020',
    platform: 'neutral',
    minify: options.minify,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].text;
  const raw = new TextEncoder().encode(code);
  return { code, bytes: raw.length, gzipBytes: gzipSync(raw, { level: 9 }).length };
}

/** The packet codec alone (no subscription index, topic store or matcher), for the breakdown. */
async function packetCodecGzipBytes(): Promise<number> {
  const result = await build({
    stdin: {
      contents: [
        "export * from './encoder.ts';",
        "export * from './parser.ts';",
        "export * from './errors.ts';",
        "export * from './packets.ts';",
        "export * from './reason-codes.ts';",
        "export * from './topic.ts';",
        "export * from './utf8.ts';",
      ].join('\n'),
      resolveDir: fileURLToPath(new URL('../src/', import.meta.url)),
      loader: 'ts',
    },
    bundle: true,
    write: false,
    format: 'esm',
    target: 'es2020',
    platform: 'neutral',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  return gzipSync(result.outputFiles[0].contents, { level: 9 }).length;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const b = await bundleCodec({ format: 'esm', minify: true });
  const packetOnly = await packetCodecGzipBytes();
  const figures = {
    entry: ENTRY,
    minifiedBytes: b.bytes,
    gzipBytes: b.gzipBytes,
    budget: BUDGET_GZIP_BYTES,
    packetCodecGzipBytes: packetOnly,
  };
  if (process.argv.includes('--json')) console.log(JSON.stringify(figures));
  else
    console.log(
      `codec bundle (esm, es2020, minified): ${b.bytes} bytes, ${b.gzipBytes} bytes gzipped ` +
        `(budget ${BUDGET_GZIP_BYTES}: ${b.gzipBytes <= BUDGET_GZIP_BYTES ? 'ok' : 'OVER'}); ` +
        `packets, parser and topic rules alone: ${packetOnly} bytes gzipped`,
    );
  if (b.gzipBytes > BUDGET_GZIP_BYTES) process.exitCode = 1;
}
