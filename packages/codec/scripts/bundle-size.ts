/**
 * Bundles the codec the way a browser or QuickJS user would and reports two sizes, minified
 * and gzipped:
 *
 * - the codec (issue 2's budget, "the whole codec: all packets, parser, topic functions"): the
 *   packets, the parser, errors, reason codes, UTF-8, topic validation and topic matching
 *   (topic.ts, topic-match.ts), at most 12,000 bytes (12 KB read strictly, in SI units);
 * - the whole package index (src/index.ts: the subscription index and topic store of issue 3
 *   included, which a constrained client does not need), at most 14,336 bytes (14 KiB), a
 *   ceiling of our own so its growth stays bounded and visible.
 *
 *   npx tsx packages/codec/scripts/bundle-size.ts [--json]
 */
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const ENTRY = fileURLToPath(new URL('../src/index.ts', import.meta.url));
/** Issue 2's budget for the codec: 12 KB, read strictly as 12,000 bytes gzipped. */
export const BUDGET_GZIP_BYTES = 12_000;
/** Our ceiling for the whole package (codec + subscription index + topic store): 14 KiB. */
export const PACKAGE_CEILING_GZIP_BYTES = 14 * 1024;

/** What issue 2's budget covers: every packet, the parser, the topic functions. */
export const CODEC_SOURCE = [
  "export * from './encoder.ts';",
  "export * from './parser.ts';",
  "export * from './errors.ts';",
  "export * from './packets.ts';",
  "export * from './reason-codes.ts';",
  "export * from './topic.ts';",
  "export { hasWildcard, matchTopic } from './topic-match.ts';",
  "export * from './utf8.ts';",
].join('\n');

export interface Bundle {
  code: string;
  bytes: number;
  gzipBytes: number;
}

/**
 * An ES2020 bundle, `esm` or an `iife` that sets the global `MqttCodec`: of the whole package
 * index (`part: 'package'`, the default) or of the codec alone (`part: 'codec'`).
 */
export async function bundleCodec(options: {
  format: 'esm' | 'iife';
  minify: boolean;
  part?: 'package' | 'codec';
}): Promise<Bundle> {
  const codecOnly = options.part === 'codec';
  const result = await build({
    ...(codecOnly
      ? {
          stdin: {
            contents: CODEC_SOURCE,
            resolveDir: fileURLToPath(new URL('../src/', import.meta.url)),
            loader: 'ts' as const,
          },
        }
      : { entryPoints: [ENTRY] }),
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

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const codec = await bundleCodec({ format: 'esm', minify: true, part: 'codec' });
  const pkg = await bundleCodec({ format: 'esm', minify: true });
  const figures = {
    codec: { minifiedBytes: codec.bytes, gzipBytes: codec.gzipBytes, budget: BUDGET_GZIP_BYTES },
    package: {
      entry: ENTRY,
      minifiedBytes: pkg.bytes,
      gzipBytes: pkg.gzipBytes,
      ceiling: PACKAGE_CEILING_GZIP_BYTES,
    },
  };
  const ok = (n: number, max: number) => (n <= max ? 'ok' : 'OVER');
  if (process.argv.includes('--json')) console.log(JSON.stringify(figures));
  else
    console.log(
      `codec (packets, parser, errors, reason codes, utf8, topic rules and matching): ` +
        `${codec.bytes} bytes minified, ${codec.gzipBytes} gzipped ` +
        `(budget ${BUDGET_GZIP_BYTES}: ${ok(codec.gzipBytes, BUDGET_GZIP_BYTES)})\n` +
        `whole package (+ subscription index, topic store): ${pkg.bytes} bytes minified, ` +
        `${pkg.gzipBytes} gzipped (ceiling ${PACKAGE_CEILING_GZIP_BYTES}: ` +
        `${ok(pkg.gzipBytes, PACKAGE_CEILING_GZIP_BYTES)})`,
    );
  if (codec.gzipBytes > BUDGET_GZIP_BYTES || pkg.gzipBytes > PACKAGE_CEILING_GZIP_BYTES) process.exitCode = 1;
}
