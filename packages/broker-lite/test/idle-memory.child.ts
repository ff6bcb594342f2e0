/**
 * Run by idle-memory.test.ts as `node --expose-gc --import tsx idle-memory.child.ts`: prints the
 * JS heap bytes one client id assigned by the broker holds (5,000 of them kept, full GCs).
 */
import { Broker } from '../src/index.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const b = new Broker({ listeners: [] });
const N = 5000;
const kept: string[] = [];
const before = heap();
for (let i = 0; i < N; i++) kept.push(b.assignClientId());
const after = heap();
if (new Set(kept).size !== N || !kept.every((id) => /^auto-[0-9a-f-]{36}$/.test(id)))
  throw new Error('bad ids');
console.log(JSON.stringify({ bytesPerId: (after - before) / N }));
