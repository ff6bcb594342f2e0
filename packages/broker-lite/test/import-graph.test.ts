/**
 * issue 17.1: broker-lite's source files import one another without a circle at run time.
 * Arrows that run back up (a handler naming `Connection`, deliver naming `Broker`) are
 * type-only imports, erased at build; every value import points one way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '../src');

/** Each file's run-time imports of its siblings (type-only imports and names left out). */
export function valueImports(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const sf = ts.createSourceFile(file, readFileSync(join(dir, file), 'utf8'), ts.ScriptTarget.Latest);
    const deps: string[] = [];
    for (const st of sf.statements) {
      let spec: ts.Expression | undefined;
      if (ts.isImportDeclaration(st)) {
        const c = st.importClause;
        if (c?.isTypeOnly) continue;
        const named = c?.namedBindings;
        const onlyTypes =
          c !== undefined &&
          c.name === undefined &&
          named !== undefined &&
          ts.isNamedImports(named) &&
          named.elements.length > 0 &&
          named.elements.every((e) => e.isTypeOnly);
        if (onlyTypes) continue;
        spec = st.moduleSpecifier;
      } else if (ts.isExportDeclaration(st) && !st.isTypeOnly) {
        spec = st.moduleSpecifier;
      }
      if (spec !== undefined && ts.isStringLiteral(spec) && spec.text.startsWith('./'))
        deps.push(spec.text.slice(2));
    }
    graph.set(file, deps);
  }
  return graph;
}

/** The circles of the graph: one path per strongly connected set of two files or more. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const set: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        set.push(w);
      } while (w !== v);
      if (set.length > 1) found.push(set.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('issue 17.1: import graph', () => {
  it('finds a circle when there is one (the check can fail)', () => {
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    expect(cycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('reads type-only imports as no arrow', () => {
    const g = valueImports(SRC);
    expect(g.get('router.ts')).not.toContain('broker.ts'); // `import type { Broker }`
    expect(g.get('broker.ts')).toContain('router.ts');
  });

  it("broker-lite's src value imports form no circle", () => {
    expect(cycles(valueImports(SRC))).toEqual([]);
  });
});
