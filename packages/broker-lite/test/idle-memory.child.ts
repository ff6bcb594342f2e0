/**
 * Run by idle-memory.test.ts as `node --expose-gc --import tsx idle-memory.child.ts`: prints the
 * JS heap bytes one client id assigned by the broker holds (5,000 of them kept, full GCs).
 */
import { Broker } from '../src/index.ts';
import { heapAfterGc } from './helpers/gc-heap.ts';

const b = new Broker({ listeners: [] });
const N = 5000;
const kept: string[] = [];
const before = heapAfterGc();
for (let i = 0; i < N; i++) kept.push(b.assignClientId());
const after = heapAfterGc();
if (new Set(kept).size !== N || !kept.every((id) => /^auto-[0-9a-f-]{36}$/.test(id)))
  throw new Error('bad ids');
console.log(JSON.stringify({ bytesPerId: (after - before) / N }));
