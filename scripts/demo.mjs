// `npm start`: runs scripts/demo.ts through tsx (the workspace packages are TypeScript sources).
import { register } from 'tsx/esm/api';

register();
await import('./demo.ts');
