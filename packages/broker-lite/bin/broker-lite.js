#!/usr/bin/env node
// The installed command: runs the compiled dist/cli.js ('#cli' in package.json "imports").
// Under `node --conditions=mqtt-edge-source` (the repository's tests and dev loop) '#cli' is
// src/cli.ts instead, loaded through tsx, a dev dependency that an installed package never loads.
const cli = import.meta.resolve('#cli');
if (cli.endsWith('.ts')) (await import('tsx/esm/api')).register();
const { run } = await import(cli);
await run();
