// `npm start` (node --conditions=mqtt-edge-source scripts/demo.mjs): runs scripts/demo.ts through
// tsx; the condition makes the workspace packages resolve to their TypeScript sources, so the
// demo shows the code as it is in the tree, not a dist/ that may be older (docs/DESIGN.md).
import { register } from 'tsx/esm/api';

register();
await import('./demo.ts');
