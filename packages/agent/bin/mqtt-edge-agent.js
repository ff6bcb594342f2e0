#!/usr/bin/env node
// The installed command: runs the compiled dist/cli.js ('#cli' in package.json "imports").
// Under `node --conditions=mqtt-edge-source` (the repository's tests and dev loop) '#cli' is
// src/cli.ts instead, loaded through tsx, a dev dependency that an installed package never loads.

// cbor-x's native string extractor (cbor-extract) costs ~5.5 MB of RSS and speeds up only large
// strings; serial frames are at most a few hundred bytes. Set before cbor-x is first imported;
// an operator's own setting wins.
process.env.CBOR_NATIVE_ACCELERATION_DISABLED ??= 'true';

// Started by npm (`npx mqtt-edge-agent`, an npm script), this process runs under `sh -c`. A
// SIGTERM to npm ends npm and that shell, and Debian's sh (dash) passes nothing on: the agent
// would run on, orphaned, holding its serial ports. So when the parent goes away, stop as
// SIGTERM would.
if (process.env.npm_command !== undefined) {
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(watch); // once: a second SIGTERM means "stop now" to the CLI
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  watch.unref();
}

const cli = import.meta.resolve('#cli');
if (cli.endsWith('.ts')) (await import('tsx/esm/api')).register();
await import(cli);
