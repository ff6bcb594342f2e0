#!/usr/bin/env node
// Runs the agent from a bundle in packages/agent/dist, built here with esbuild whenever a
// source file is newer: plain node needs ~30 MB less memory and starts faster than tsx, which
// matters on a Raspberry Pi. Without esbuild, or with MQTT_EDGE_AGENT_TSX=1, it runs the
// TypeScript sources through tsx.
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bundle = path.join(pkg, 'dist', 'mqtt-edge-agent.mjs');

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p));
    else if (e.name.endsWith('.ts')) t = Math.max(t, statSync(p).mtimeMs);
  }
  return t;
}

async function ensureBundle() {
  const roots = [path.join(pkg, 'src')];
  for (const name of ['@mqtt-edge/client', '@mqtt-edge/codec', '@mqtt-edge/serial-protocol']) {
    roots.push(path.dirname(fileURLToPath(import.meta.resolve(name))));
  }
  const built = existsSync(bundle) ? statSync(bundle).mtimeMs : 0;
  if (built > 0 && roots.every((r) => newest(r) < built)) return;
  const { buildSync } = await import('esbuild');
  mkdirSync(path.dirname(bundle), { recursive: true });
  const tmp = `${bundle}.${process.pid}.tmp`;
  buildSync({
    entryPoints: [path.join(pkg, 'src', 'cli.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: tmp,
    external: ['serialport', '@serialport/*', 'cbor-x', 'yaml', 'ws'],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: 'silent',
  });
  renameSync(tmp, bundle); // atomic: agents starting together never import half a file
}

// cbor-x's native string extractor (cbor-extract) costs ~5.5 MB of RSS and speeds up only large
// strings; serial frames are at most a few hundred bytes. Set before cbor-x is first imported
// (by the bundle or the sources below); an operator's own setting wins.
process.env.CBOR_NATIVE_ACCELERATION_DISABLED ??= 'true';

let useBundle = false;
if (process.env.MQTT_EDGE_AGENT_TSX !== '1') {
  try {
    await ensureBundle();
    useBundle = true;
  } catch {
    // No esbuild (a production install) or a read-only package dir: the sources, through tsx.
    useBundle = false;
  }
}
if (useBundle) await import(pathToFileURL(bundle).href);
else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli.ts');
}
