#!/usr/bin/env node
// Runs the compiled dist/cli.js ('#cli' in package.json "imports"); under
// `node --conditions=mqtt-edge-source` (tests, the dev loop) src/cli.ts through tsx.
const cli = import.meta.resolve('#cli');
if (cli.endsWith('.ts')) (await import('tsx/esm/api')).register();
await import(cli);
