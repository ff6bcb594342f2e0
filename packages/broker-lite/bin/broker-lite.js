#!/usr/bin/env node
// The installed command: runs the compiled dist/cli.js ('#cli' in package.json "imports").
// Under `node --conditions=mqtt-edge-source` (the repository's tests and dev loop) '#cli' is
// src/cli.ts instead, loaded through tsx, a dev dependency that an installed package never loads.

// Started by npm (`npx broker-lite`, an npm script), this process runs under `sh -c`. A SIGTERM
// to npm ends npm and that shell, and Debian's sh (dash) passes nothing on: the broker would run
// on, orphaned, holding its port. So when the parent goes away, stop as SIGTERM would.
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
const { run } = await import(cli);
await run();
