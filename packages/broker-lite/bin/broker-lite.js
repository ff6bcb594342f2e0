#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx), so `npx broker-lite` works right after `npm ci`.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../src/cli.ts');
await run();
