/**
 * The packages as a user gets them: `npm run build`, `npm pack` of every publishable package,
 * and one `npm install --omit=dev` of all the tarballs into an empty directory (dependencies
 * from npm's cache, else the registry). Used by test/install.test.ts and bench/areas/install.ts.
 * Every command runs with NODE_OPTIONS and npm's own variables removed, so nothing resolves to
 * the sources ("mqtt-edge-source") and npm behaves as in a user's shell.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** What `npm publish` would publish, in dependency order. */
export const PUBLISHABLE = [
  'packages/codec',
  'packages/log',
  'packages/client',
  'packages/serial-protocol',
  'packages/broker-lite',
  'packages/agent',
] as const;

/** The environment of a user's shell: no source condition, no variables of an outer npm run. */
export function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('npm_') || k.startsWith('NPM_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface PackedInstall {
  /** The directory the tarballs were installed into (its node_modules, package.json). */
  dir: string;
  /** The tarballs, by package name: the file and the paths it holds. */
  tarballs: Map<string, { file: string; files: string[] }>;
  /** node_modules/.bin/NAME in `dir`. */
  bin(name: string): string;
  /** Seconds each step took: build, pack, install. */
  timings: { buildS: number; packS: number; installS: number };
  remove(): void;
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, (performance.now() - t) / 1000];
}

/** Builds, packs and installs; `timeoutMs` bounds each npm command. */
export async function installPacked(timeoutMs = 90_000): Promise<PackedInstall> {
  const base = mkdtempSync(path.join(os.tmpdir(), 'mqtt-edge-install-'));
  const tgzDir = path.join(base, 'tarballs');
  const dir = path.join(base, 'app');
  mkdirSync(tgzDir);
  mkdirSync(dir);
  const env = userEnv();
  const opts = { cwd: ROOT, env, timeout: timeoutMs, maxBuffer: 16 << 20 };
  try {
    // tsc -b: a no-op when dist/ is current, so what is packed is never older than src/.
    const [, buildS] = await timed(() => run('npm', ['run', 'build'], opts));
    const [packed, packS] = await timed(() =>
      run(
        'npm',
        ['pack', '--json', '--pack-destination', tgzDir, ...PUBLISHABLE.flatMap((p) => ['--workspace', p])],
        opts,
      ),
    );
    const list = JSON.parse(packed.stdout) as Array<{
      name: string;
      filename: string;
      files: Array<{ path: string }>;
    }>;
    const tarballs = new Map<string, { file: string; files: string[] }>();
    for (const p of list) {
      tarballs.set(p.name, { file: path.join(tgzDir, p.filename), files: p.files.map((f) => f.path) });
    }
    writeFileSync(
      path.join(dir, 'package.json'),
      `${JSON.stringify({ name: 'mqtt-edge-install-test', private: true, type: 'module' }, null, 2)}\n`,
    );
    const files = [...tarballs.values()].map((t) => t.file);
    const [, installS] = await timed(() =>
      run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', ...files], {
        ...opts,
        cwd: dir,
      }),
    );
    return {
      dir,
      tarballs,
      bin: (name) => path.join(dir, 'node_modules', '.bin', name),
      timings: { buildS, packS, installS },
      remove: () => rmSync(base, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(base, { recursive: true, force: true });
    throw err;
  }
}
