/**
 * issue 17.1: the hot path passes its state as parameters and return values. No module-level
 * variable says which connection is being parsed or which message is being routed, and a
 * Session carries no scratch of the router's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '../src');

/** The hot path: bytes in, handlers, routing, delivery. */
const HOT = [
  'connection.ts',
  'handle-publish.ts',
  'handle-acks.ts',
  'handle-connect.ts',
  'handle-subscribe.ts',
  'handle-unsubscribe.ts',
  'handle-disconnect.ts',
  'router.ts',
  'deliver.ts',
  'session.ts',
  'message.ts',
  'topic-alias.ts',
  'broker.ts',
];

/** Names of the `let` / `var` declarations at a file's top level. */
export function moduleVariables(source: string): string[] {
  const sf = ts.createSourceFile('f.ts', source, ts.ScriptTarget.Latest);
  const names: string[] = [];
  for (const st of sf.statements) {
    if (!ts.isVariableStatement(st)) continue;
    if ((st.declarationList.flags & ts.NodeFlags.Const) !== 0) continue;
    for (const d of st.declarationList.declarations) names.push(d.name.getText(sf));
  }
  return names;
}

describe('issue 17.1: no hidden state in the hot path', () => {
  it('finds a module-level let when there is one (the check can fail)', () => {
    expect(moduleVariables('const a = 1;\nlet current = null;\nfunction f() { let x = 1; }')).toEqual([
      'current',
    ]);
  });

  it('the hot-path files have no module-level let or var', () => {
    const found = HOT.flatMap((f) =>
      moduleVariables(readFileSync(join(SRC, f), 'utf8')).map((name) => `${f}: ${name}`),
    );
    expect(found).toEqual([]);
  });
});
