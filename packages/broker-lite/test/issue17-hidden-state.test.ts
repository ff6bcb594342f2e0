/**
 * issue 17.1: the hot path passes its state as parameters and return values. No module-level
 * variable says which connection is being parsed or which message is being routed, and a
 * Session carries no scratch of the router's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { Recipients } from '../src/recipients.ts';
import { Session, Subscription } from '../src/session.ts';

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

  it("a Session holds no router scratch (the router's match set merges overlapping subscriptions)", () => {
    const s = new Session('c');
    for (const name of ['mark', 'mIds', 'mQos', 'mRetain']) expect(name in s, name).toBe(false);
  });
});

/** A subscription of `s` on `filter`, kept in `s.subs` as the broker keeps it. */
function subscribe(s: Session, filter: string, qos: 0 | 1 | 2, id?: number): Subscription {
  const sub = new Subscription(s, filter, qos, false, false, 0, id, false);
  s.subs.set(filter, sub);
  return sub;
}

describe("issue 17.1: the router's recipients of one message", () => {
  it('merges the overlapping subscriptions of one session: highest QoS, retain if any, every id', () => {
    const r = new Recipients();
    const a = new Session('a');
    const b = new Session('b');
    const a1 = subscribe(a, 'x/#', 1, 3);
    const a2 = subscribe(a, 'x/+', 2, 5);
    const a3 = subscribe(a, '#', 0);
    const b1 = subscribe(b, 'x/y', 1);
    r.add(a1, 1, false);
    r.add(b1, 1, false);
    r.add(a2, 2, true);
    r.add(a3, 0, false);
    expect(r.size).toBe(2);
    expect([r.session(0), r.qos(0), r.retain(0), r.ids(0)]).toEqual([a, 2, true, [3, 5]]);
    expect([r.session(1), r.qos(1), r.retain(1), r.ids(1)]).toEqual([b, 1, false, undefined]);
  });

  it('starts empty after clear(), and a queued delivery keeps the identifier array it was given', () => {
    const r = new Recipients();
    const a = new Session('a');
    const a1 = subscribe(a, 'x/#', 1, 3);
    const a2 = subscribe(a, 'x/+', 1, 4);
    r.add(a1, 1, false);
    r.add(a2, 1, false);
    const kept = r.ids(0);
    r.clear();
    expect(r.size).toBe(0);
    r.add(a2, 0, false);
    expect(r.size).toBe(1);
    expect([r.qos(0), r.ids(0)]).toEqual([0, [4]]);
    expect(kept).toEqual([3, 4]);
  });
});
