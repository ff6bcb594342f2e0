import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Tests run the TypeScript sources, never a dist/ that may be stale: the workspace packages'
// exports and imports ("#cli") map the "mqtt-edge-source" condition to src/*.ts (docs/DESIGN.md,
// "Building and running"). Vite resolves with it here; Node processes the tests start (the bins,
// `node --import tsx -e ...` children) inherit it through NODE_OPTIONS. Only the install test
// (test/install.test.ts) runs dist/, from the packed tarballs, with NODE_OPTIONS cleared.
export const SOURCE_CONDITION = 'mqtt-edge-source';
const sourceFlag = `--conditions=${SOURCE_CONDITION}`;
if (!process.env.NODE_OPTIONS?.includes(sourceFlag)) {
  process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${sourceFlag}`.trim();
}

export default defineConfig({
  ssr: { resolve: { conditions: [SOURCE_CONDITION, ...defaultServerConditions] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'firmware-sim/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    reporters: ['default', './scripts/summary-reporter.ts'],
  },
});
