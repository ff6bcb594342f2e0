/**
 * '.' is the pure framing (bundled for devices and QuickJS: no Node, no serialport); './node'
 * is the only place that opens ports. A Node import reaching '.' must fail here, not in a bundle.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, string>;
  dependencies: Record<string, string>;
};

function bundle(entry: string) {
  // platform 'neutral' resolves no Node builtin: importing one (node:fs, or serialport's) is an error.
  return buildSync({
    entryPoints: [join(root, entry)],
    bundle: true,
    platform: 'neutral',
    format: 'esm',
    external: ['cbor-x'],
    write: false,
    logLevel: 'silent',
  });
}

describe('package exports', () => {
  it("'.' bundles with no Node builtin and no serialport", () => {
    const out = bundle(pkg.exports['.']);
    expect(out.errors).toEqual([]);
    const js = out.outputFiles[0].text;
    expect(js).not.toMatch(/from\s*["'](node:|serialport|@serialport\/)/);
    expect(js).toContain('FrameDecoder');
  });

  it("'./node' is what needs Node: the same bundle fails on it", () => {
    expect(pkg.exports['./node']).toBe('./src/node/index.ts');
    expect(() => bundle(pkg.exports['./node'])).toThrow(/node:fs|serialport/);
  });

  it('every package ./node imports is declared', () => {
    const src = readFileSync(join(root, 'src/node/serial-port.ts'), 'utf8');
    const imported = [...src.matchAll(/from '([^'.][^']*)'/g)]
      .map((m) => m[1])
      .filter((n) => !n.startsWith('node:'));
    expect(imported.length).toBeGreaterThan(0);
    for (const name of imported) expect(Object.keys(pkg.dependencies)).toContain(name);
  });
});
