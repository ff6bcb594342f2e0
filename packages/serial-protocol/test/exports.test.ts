/**
 * '.' is the pure framing (bundled for devices and QuickJS: no Node, no serialport); './node'
 * is the only place that opens ports. A Node import reaching '.' must fail here, not in a bundle.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
type Entry = { 'mqtt-edge-source': string; types: string; default: string };
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, Entry>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  devDependencies: Record<string, string>;
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
    const out = bundle(pkg.exports['.']['mqtt-edge-source']);
    expect(out.errors).toEqual([]);
    const js = out.outputFiles[0].text;
    expect(js).not.toMatch(/from\s*["'](node:|serialport|@serialport\/)/);
    expect(js).toContain('FrameDecoder');
  });

  it("'./node' is what needs Node: the same bundle fails on it", () => {
    expect(pkg.exports['./node']).toEqual({
      'mqtt-edge-source': './src/node/index.ts',
      types: './dist/node/index.d.ts',
      default: './dist/node/index.js',
    });
    expect(() => bundle(pkg.exports['./node']['mqtt-edge-source'])).toThrow(/node:fs|serialport/);
  });

  it('issue 13.1: what ./node imports are optional peers (the types: dev), what . imports a dependency', () => {
    const imports = (file: string) =>
      [...readFileSync(join(root, file), 'utf8').matchAll(/^import (type )?[^;]*? from '([^'.][^']*)'/gms)]
        .filter((m) => !m[2].startsWith('node:'))
        .map((m) => ({ name: m[2], typeOnly: m[1] !== undefined }));
    const node = imports('src/node/serial-port.ts');
    expect(node.some((i) => !i.typeOnly)).toBe(true);
    for (const { name, typeOnly } of node) {
      // An install of '.' alone (a device bundle, the demo's decoder) pulls no native module.
      expect(Object.keys(pkg.dependencies)).not.toContain(name);
      expect(Object.keys(pkg.devDependencies)).toContain(name);
      if (!typeOnly) expect(pkg.peerDependenciesMeta[name]?.optional, name).toBe(true);
    }
    // serialport itself is type-only here, but loaded at run time off Linux: an optional peer too.
    expect(node.find((i) => i.name === 'serialport')?.typeOnly).toBe(true);
    expect(pkg.peerDependenciesMeta.serialport?.optional).toBe(true);
    expect(imports('src/body.ts').map((i) => i.name)).toEqual(['cbor-x']);
    expect(Object.keys(pkg.dependencies)).toEqual(['cbor-x']);
  });
});
