#!/usr/bin/env node
// The installed command: runs the compiled dist/cli.js ('#cli' in package.json "imports").
// Under `node --conditions=mqtt-edge-source` (the repository's tests and dev loop) '#cli' is
// src/cli.ts instead, loaded through tsx, a dev dependency that an installed package never loads.

// cbor-x's native string extractor (cbor-extract) costs ~5.5 MB of RSS and speeds up only large
// strings; serial frames are at most a few hundred bytes. Set before cbor-x is first imported;
// an operator's own setting wins.
process.env.CBOR_NATIVE_ACCELERATION_DISABLED ??= 'true';

const cli = import.meta.resolve('#cli');
if (cli.endsWith('.ts')) (await import('tsx/esm/api')).register();
await import(cli);
