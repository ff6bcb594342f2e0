/**
 * Issue 21.1: the core's tables that replace Map and Set (core/collections.ts) behave as a Map
 * does, insertion order included, under random operations (fast-check against a Map), across
 * growing, shrinking and backward-shift deletion.
 */

import { encode } from '@mqtt-edge/codec';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdMap, StringMap } from '../src/core/collections.ts';
import { ClientSession } from '../src/core/index.ts';

type Op = { kind: 'set' | 'delete' | 'get'; key: number } | { kind: 'clear' };

describe('issue 21.1: IdMap (packet ids 1..65535)', () => {
  it('agrees with a Map under random set/get/delete/clear, order included', () => {
    const key = fc.oneof(
      fc.integer({ min: 1, max: 40 }), // dense: long probe runs, many deletions inside them
      fc.integer({ min: 1, max: 65535 }),
      fc.constantFrom(1, 2, 8, 16, 256, 4096, 65535), // ids with equal low bits
    );
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), key }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const model = new Map<number, number>();
        const m = new IdMap<number>();
        ops.forEach((o, i) => {
          if (o.kind === 'clear') {
            model.clear();
            m.clear();
          } else if (o.kind === 'set') {
            model.set(o.key, i);
            m.set(o.key, i);
          } else if (o.kind === 'delete') expect(m.delete(o.key)).toBe(model.delete(o.key));
          else expect(m.get(o.key)).toBe(model.get(o.key));
          expect(m.size).toBe(model.size);
        });
        expect(m.ids()).toEqual([...model.keys()]);
        for (const [k, v] of model) {
          expect(m.has(k)).toBe(true);
          expect(m.get(k)).toBe(v);
          expect(m.find((x) => x === v)).toBe(k);
        }
        expect(m.find(() => false)).toBeUndefined();
      }),
      { numRuns: 300 },
    );
  });

  it('holds all 65,535 ids, gives them back in order, and empties', () => {
    const m = new IdMap<number>();
    for (let id = 65535; id >= 1; id--) m.set(id, -id);
    expect(m.size).toBe(65535);
    const ids = m.ids();
    expect(ids[0]).toBe(65535);
    expect(ids[65534]).toBe(1);
    for (let id = 1; id <= 65535; id += 2) expect(m.delete(id)).toBe(true);
    for (let id = 2; id <= 65535; id += 2) expect(m.get(id)).toBe(-id);
    for (let id = 2; id <= 65535; id += 2) m.delete(id);
    expect(m.size).toBe(0);
    expect(m.ids()).toEqual([]);
  });
});

describe('issue 21.1: StringMap', () => {
  it('agrees with a Map under random set/get/delete, order included; __proto__ and numeric keys too', () => {
    const key = fc.oneof(
      fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', '0', '7', '', 'a/b', 'a/+'),
      fc.string({ maxLength: 4 }),
    );
    const op = fc.record({ kind: fc.constantFrom('set', 'set', 'delete', 'get'), key });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const model = new Map<string, number>();
        const m = new StringMap<number>();
        ops.forEach((o, i) => {
          if (o.kind === 'set') {
            model.set(o.key, i);
            m.set(o.key, i);
          } else if (o.kind === 'delete') expect(m.delete(o.key)).toBe(model.delete(o.key));
          else expect(m.get(o.key)).toBe(model.get(o.key));
          expect(m.size).toBe(model.size);
        });
        expect(m.values()).toEqual([...model.values()]);
        // the dictionary kept its (null) prototype: nothing inherited answers
        expect(m.get('toString')).toBe(model.get('toString'));
      }),
      { numRuns: 300 },
    );
  });
});

describe('issue 21.1: the session on these tables', () => {
  it('cancelPendingRequests forgets the requests: none is sent on the next connection', () => {
    const s = new ClientSession({ protocolVersion: 4, clientId: 'c', keepalive: 0 });
    s.subscribe([{ topicFilter: 'a/#', qos: 1 }], undefined, 0);
    s.unsubscribe(['b'], undefined, 0);
    expect(s.cancelPendingRequests()).toHaveLength(2);
    s.open(0);
    s.takeOutput();
    s.receive(encode({ type: 'connack', sessionPresent: false, reasonCode: 0 }, 4), 0);
    expect(s.takeOutput()).toBeNull();
    expect(s.cancelPendingRequests()).toEqual([]);
  });
});
