/**
 * Issue 21.3's guard: scripts/es5-check.ts refuses a run-time need past ES5.1 + typed arrays in
 * the sources of the ES5 builds (the codec's packet and topic modules, the client core), so one
 * cannot creep back: the builds' sources pass, and a file that plants each kind is caught.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildEs5 } from '../../../scripts/build-es5.ts';
import { checkEs5, es5SyntaxProblems } from '../../../scripts/es5-check.ts';

const PLANTED = `
const u8 = new Uint8Array(4);
export const a = new Map<string, number>();
export const b = new Set<number>();
export const c = u8.fill(0);
export const d = Object.assign({}, { x: 1 });
export const e = Math.imul(3, 5);
export const f = 'x'.codePointAt(0);
export const g = Promise.resolve(1);
export const h = Symbol('s');
export const i = Number.isInteger(2);
export const j = u8.slice(1);
export const k = 'ab'.startsWith('a');
export const l = Uint8Array.from([1]);
export const m = [...new Set([1])];
export function n(s: string): number { let z = 0; for (const ch of s) z += ch.length; return z; }
export async function o(): Promise<void> {}
export const p = /x/u;
export const q = new WeakMap<object, number>();
export const r = Array.from('ab');
export const s = [1].includes(1);
export const t = process.pid;
// allowed:
export const ok1 = typeof Map === 'function' && typeof Promise !== 'undefined';
export const ok2 = u8.subarray(1).length + u8.byteOffset + [1].indexOf(1) + 'ab'.lastIndexOf('a', 0);
export const ok3 = Object.create(null) as Record<string, number>;
export const ok4 = Promise.resolve(2); // es5-check: feature-detected (test)
export function ok5(list: number[]): number { let z = 0; for (const v of list) z += v; return z + Math.floor(1.5); }
export const ok6 = { ...{ x: 1 }, y: [...[1, 2]] };
`;

describe('issue 21.3: the ES5 guard (scripts/es5-check.ts)', () => {
  it('the sources of both ES5 builds need nothing past ES5.1 and typed arrays', async () => {
    const files = new Set<string>();
    for (const part of ['codec', 'client-core'] as const)
      for (const f of (await buildEs5(part)).sources) files.add(f);
    const names = [...files].map((f) => path.basename(f));
    expect(names).toEqual(expect.arrayContaining(['decoder.ts', 'parser.ts', 'wire.ts', 'session.ts']));
    expect(names).not.toContain('subscription-index.ts');
    expect(checkEs5([...files])).toEqual([]);
  }, 60_000);

  it('catches each kind of run-time need a planted file adds, and lets feature detection through', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'es5-check-'));
    try {
      const file = path.join(dir, 'planted.ts');
      writeFileSync(file, PLANTED);
      const found = checkEs5([file]);
      const lineOf = (needle: string) => PLANTED.split('\n').findIndex((l) => l.includes(needle)) + 1;
      const flagged = new Set(found.map((v) => v.line));
      for (const name of 'abcdefghijklmnopqrst')
        expect(
          flagged.has(lineOf(`export const ${name} =`)) || flagged.has(lineOf(`function ${name}(`)),
          name,
        ).toBe(true);
      for (const ok of ['ok1', 'ok2', 'ok3', 'ok4', 'ok5', 'ok6'])
        expect(
          found.filter((v) => v.line === lineOf(`${ok} =`) || v.line === lineOf(`${ok}(`)),
          ok,
        ).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('the built ES5 files hold no syntax past ES5 (what a strict ES5.1 parser refuses)', async () => {
    for (const part of ['codec', 'client-core'] as const) {
      expect(es5SyntaxProblems((await buildEs5(part)).code), part).toEqual([]);
      expect(es5SyntaxProblems((await buildEs5(part, { minify: false })).code), part).toEqual([]);
    }
    const planted = [
      'var a = (x) => x;',
      'let b = 1;',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: planted ES2015 source text, not a template
      'var c = `t${a}`;',
      'var d = { a };',
      'var e = [...[1]];',
      'for (var f of []) {}',
      'function g(x = 1) {}',
      'var h = { m() {} };',
      'var i = a?.b ?? 2;',
      'var j = 2 ** 3;',
      'class K {}',
      'var { l } = {};',
    ];
    expect(es5SyntaxProblems(planted.join('\n')).map((p) => Number(p.split(':')[0]))).toEqual(
      expect.arrayContaining(planted.map((_, n) => n + 1)),
    );
    expect(
      es5SyntaxProblems('var ok = { get x() { return 1; }, "class": 2 }; ok["default"] = function () {};'),
    ).toEqual([]);
  }, 60_000);
});
