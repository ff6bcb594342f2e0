/**
 * Issue 21: the codec on ES5.1 engines. dist/codec.es5.js (scripts/build-es5.ts, built here
 * from the sources) runs in Debian's Duktape under a prelude that deletes every built-in
 * ES5.1 and typed arrays lack, and in QuickJS; the ES2020 bundle runs in QuickJS. One harness
 * (fixtures/es5-codec-harness.js) runs the spec vectors of every packet type (3.1, 3.1.1, 5.0),
 * the malformed-input vectors, a fragmented stream with a large packet, topic matching and
 * validation, and UTF-8 edge cases; every answer must equal what the same harness gives on
 * the Node codec, and the known answers (spec bytes, error codes).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEs5 } from '../../../scripts/build-es5.ts';
import { DUK, DUK_MISSING, type Engine, startDuk, startQuickJS } from '../../../test/helpers/engines.ts';
import { bundleCodec } from '../scripts/bundle-size.ts';
import * as Codec from '../src/index.ts';
import { encode, type Packet } from '../src/index.ts';
import { hex } from './arbitraries.ts';
import { MALFORMED_VECTORS } from './malformed-vectors.ts';
import { SPEC_VECTORS } from './spec-vectors.ts';
import { INVALID_FILTERS, MATCH_VECTORS, VALID_FILTERS } from './topic-vectors.ts';

const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

const HARNESS = readFileSync(new URL('./fixtures/es5-codec-harness.js', import.meta.url), 'utf8');

if (DUK === null) console.warn(DUK_MISSING);

/** Bytes travel as {$hex}; the harness revives them. */
const toJson = (v: unknown) =>
  JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? { $hex: toHex(x) } : x));

/** The harness's normal form (norm + JSON.stringify), for the known answers. */
function canon(v: unknown): string {
  const norm = (x: unknown): unknown => {
    if (x instanceof Uint8Array) return `hex:${toHex(x)}`;
    if (Array.isArray(x)) return x.map(norm);
    if (x !== null && typeof x === 'object') {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort()) {
        const val = (x as Record<string, unknown>)[k];
        if (val !== undefined) o[k] = norm(val);
      }
      return o;
    }
    return x;
  };
  return JSON.stringify(norm(v));
}

/** A stream of MQTT 5 packets (the spec's and a 70,000-byte PUBLISH) cut into 1..5000-byte pieces. */
function streamPieces(): string[] {
  const big: Packet = {
    type: 'publish',
    topic: 'big/\u00e9',
    payload: Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff),
    qos: 1,
    retain: false,
    dup: false,
    packetId: 9,
  };
  const parts = SPEC_VECTORS.filter((v) => v.v === 5).map((v) => hex(v.bytes));
  parts.splice(3, 0, encode(big, 5));
  const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    stream.set(p, at);
    at += p.length;
  }
  const sizes = [1, 2, 3, 5, 7, 64, 1000, 5000];
  const pieces: string[] = [];
  let seed = 2024;
  for (let i = 0; i < stream.length; ) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const n = sizes[seed % sizes.length];
    pieces.push(toHex(stream.subarray(i, Math.min(stream.length, i + n))));
    i += n;
  }
  return pieces;
}

const TOPIC_NAMES = ['a/b', '', 'a/+', '#', 'x\u0000y', 'ok\ud800', '\u{1f600}/\u20ac', '$SYS/x'];

const INPUT = {
  vectors: SPEC_VECTORS.map((v) => ({ v: v.v, hex: v.bytes, packet: v.packet })),
  malformed: MALFORMED_VECTORS.map(([, v, bytes]) => ({ v: v ?? null, hex: bytes })),
  stream: { v: 5, pieces: streamPieces() },
  topics: {
    match: MATCH_VECTORS.map((m) => [m.filter, m.topic]),
    filters: [...VALID_FILTERS, ...INVALID_FILTERS.map(([f]) => f)],
    names: TOPIC_NAMES,
  },
  utf8: [
    '',
    'abc',
    '\u00e9',
    '\u20ac',
    '\u{1f600}',
    '\uffff',
    '\u{10ffff}',
    'a\ud800',
    '\udc00b',
    'x'.repeat(5000),
  ],
  encodeInto: {
    v: 5,
    size: 40,
    offset: 3,
    packet: { type: 'subscribe', packetId: 7, subscriptions: [{ topicFilter: 'a/+', qos: 1 }] },
  },
};
const INPUT_JSON = toJson(INPUT);
const COMMANDS = Object.keys(INPUT) as Array<keyof typeof INPUT>;

/** The harness on the Node codec (the sources), in this realm: what every engine must give. */
function runOnNode(): Record<string, unknown> {
  const answers: Record<string, unknown> = {};
  let lines: string[] = [];
  const print = (s: string) => lines.push(s);
  const h = new Function('MqttCodec', 'INPUT_JSON', 'print', `${HARNESS}\nreturn H;`)(
    Codec,
    INPUT_JSON,
    print,
  );
  for (const c of COMMANDS) {
    lines = [];
    h.run(c);
    answers[c] = JSON.parse(lines[0].slice(2));
  }
  return answers;
}

describe('issue 21.3: the harness on the Node codec gives the known answers', () => {
  const node = runOnNode();

  it('spec vectors of all 15 packet types in 3.1, 3.1.1 and 5.0: decoded, encoded, streamed', () => {
    expect(new Set(SPEC_VECTORS.map((v) => v.packet.type)).size).toBe(15);
    expect(new Set(SPEC_VECTORS.map((v) => v.v))).toEqual(new Set([3, 4, 5]));
    const got = node.vectors as Array<Record<string, unknown>>;
    SPEC_VECTORS.forEach((v, i) => {
      expect(got[i].decoded, v.name).toBe(canon(v.packet));
      expect(got[i].streamed, v.name).toEqual([canon(v.packet)]);
      if (!v.decodeOnly) {
        expect(got[i].encoded, v.name).toBe(toHex(hex(v.bytes)));
        expect(got[i].writer, v.name).toBe(toHex(hex(v.bytes)));
      }
    });
  });

  it('malformed vectors: the code and reason code of the table, from decode and from a parser', () => {
    const got = node.malformed as Array<{ decode: string; parser: string }>;
    MALFORMED_VECTORS.forEach(([what, , , code, reason, offset], i) => {
      const [, c, r, o] = got[i].decode.split(/[:/]/);
      expect([c, Number(r)], what).toEqual([code, reason]);
      if (offset !== undefined) expect(Number(o), what).toBe(offset);
      expect(got[i].parser.startsWith(`error:${code}/${reason}/`), what).toBe(true);
    });
  });

  it('topic matching and validation: the spec examples', () => {
    const got = node.topics as { match: boolean[]; filters: Array<string | null> };
    expect(got.match).toEqual(MATCH_VECTORS.map((m) => m.matches));
    expect(got.filters.slice(0, VALID_FILTERS.length)).toEqual(VALID_FILTERS.map(() => null));
    expect(got.filters.slice(VALID_FILTERS.length).map((f) => f?.split('@')[0])).toEqual(
      INVALID_FILTERS.map(([, kind]) => kind),
    );
  });
});

describe('issue 21.1: the encoder topic caches are objects, not Maps', () => {
  const publish = (topic: unknown): Packet =>
    ({ type: 'publish', topic, payload: new Uint8Array(0), qos: 0, retain: false, dup: false }) as Packet;
  const filter = (topicFilter: unknown): Packet =>
    ({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter, qos: 0 }] }) as Packet;
  const topicOf = (bytes: Uint8Array) =>
    new TextDecoder().decode(bytes.subarray(4, 4 + ((bytes[2] << 8) | bytes[3])));

  it('keys an object would inherit or treat apart are encoded as themselves, repeatedly', () => {
    for (const t of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '0', 'length']) {
      for (let i = 0; i < 3; i++) {
        expect(topicOf(encode(publish(t), 4))).toBe(t);
        expect(Codec.decode(encode(filter(t), 4), 4)).toMatchObject({ subscriptions: [{ topicFilter: t }] });
      }
    }
  });

  it('a topic that is not a string is refused, even when its text is remembered', () => {
    encode(publish('5'), 4);
    encode(filter('5'), 4);
    for (const bad of [5, undefined, null, { toString: () => '5' }]) {
      expect(() => encode(publish(bad), 4)).toThrow(expect.objectContaining({ code: 'TOPIC_NAME_INVALID' }));
      expect(() => encode(filter(bad), 4)).toThrow(expect.objectContaining({ code: 'TOPIC_FILTER_INVALID' }));
    }
  });

  it('past 256 remembered topics the cache starts again and stays right', () => {
    for (let i = 0; i < 700; i++) expect(topicOf(encode(publish(`t/${i % 300}`), 4))).toBe(`t/${i % 300}`);
  });
});

describe('issue 21.2: the ES5 build of the codec', () => {
  it('is at most 10% over the ES2020 codec, minified and gzipped', async () => {
    const es5 = await buildEs5('codec');
    const es2020 = await bundleCodec({ format: 'esm', minify: true, part: 'codec' });
    console.info(`codec gzipped: ES5 ${es5.gzipBytes} bytes, ES2020 ${es2020.gzipBytes} bytes`);
    expect(es5.gzipBytes).toBeLessThanOrEqual(Math.floor(es2020.gzipBytes * 1.1));
  }, 60_000);
});

interface EngineCase {
  name: string;
  build: 'es5' | 'es2020';
  engine: 'duktape' | 'quickjs';
  noAnnexB?: boolean;
}

const ENGINES: EngineCase[] = [
  { name: 'Duktape (ES5 build, ES5.1-only built-ins)', build: 'es5', engine: 'duktape' },
  // escape() is in ES5.1's Annex B, which an engine may leave out: the UTF-8 decoder falls back
  {
    name: 'Duktape (ES5 build, without Annex B escape/unescape)',
    build: 'es5',
    engine: 'duktape',
    noAnnexB: true,
  },
  { name: 'QuickJS (ES2020 build)', build: 'es2020', engine: 'quickjs' },
  { name: 'QuickJS (ES5 build)', build: 'es5', engine: 'quickjs' },
];

for (const e of ENGINES) {
  const skip = e.engine === 'duktape' && DUK === null;
  describe.skipIf(skip)(`issue 21.3: the codec in ${e.name}`, () => {
    let engine: Engine;
    const node = runOnNode();
    beforeAll(async () => {
      const bundle = await buildEs5('codec', { target: e.build });
      const scripts = [
        ...(e.noAnnexB ? [{ name: 'no-annex-b.js', code: 'delete this.escape; delete this.unescape;' }] : []),
        { name: 'codec.js', code: bundle.code },
        { name: 'input.js', code: `var INPUT_JSON = ${JSON.stringify(INPUT_JSON)};` },
        { name: 'harness.js', code: HARNESS },
      ];
      engine = e.engine === 'duktape' ? await startDuk(scripts) : await startQuickJS(scripts);
    }, 60_000);
    afterAll(() => engine?.close());

    for (const [part, global] of [
      ['codec', 'MqttCodec'],
      ['client-core', 'MqttClientCore'],
    ] as const)
      if (e.engine === 'duktape' && !e.noAnnexB)
        it(`dist/${part}.es5.js is an IIFE that sets one global, ${global}`, async () => {
          const bundle = await buildEs5(part);
          const globals = await startDuk([
            { name: 'before.js', code: 'var BEFORE = Object.getOwnPropertyNames(this).join();' },
            { name: 'bundle.js', code: bundle.code },
            { name: 'h.js', code: 'var H = {};' },
          ]);
          try {
            const line =
              "(function (g) { var b = BEFORE.split(','), n = Object.getOwnPropertyNames(g), d = [];" +
              "for (var i = 0; i < n.length; i++) if (b.indexOf(n[i]) < 0 && n[i] !== 'BEFORE' && n[i] !== 'H') d.push(n[i]);" +
              "print('@@' + d.join()); print('@@END'); })(this)";
            expect(await globals.run(line)).toEqual([global]);
          } finally {
            globals.close();
          }
        });

    if (e.noAnnexB)
      it('runs without escape and unescape', async () => {
        expect(await engine.run("print('@@' + typeof escape + typeof unescape); print('@@END')")).toEqual([
          'undefinedundefined',
        ]);
      });

    if (e.engine === 'duktape' && !e.noAnnexB)
      it('runs with the ES2015 built-ins Duktape has deleted (the prelude)', async () => {
        const probes = [
          'Map',
          'Set',
          'WeakMap',
          'Symbol',
          'Promise',
          'Proxy',
          'Reflect',
          'TextEncoder',
          'Object.assign',
          'Object.setPrototypeOf',
          'Math.imul',
          'Number.isInteger',
          "''.codePointAt",
          "''.startsWith",
          'String.fromCodePoint',
          'Array.from',
          '[].fill',
          'new Uint8Array(1).fill',
          'new Uint8Array(1).slice',
          'Uint8Array.from',
        ];
        const line = `print('@@' + [${probes.map((p) => `typeof ${p}`).join(', ')}].join()); print('@@END')`;
        expect(await engine.run(line)).toEqual([probes.map(() => 'undefined').join()]);
      });

    for (const c of COMMANDS)
      it(`${c}: the same answers as the Node codec`, async () => {
        const lines = await engine.run(`H.run('${c}')`);
        expect(lines.length).toBe(1);
        const answer = JSON.parse(lines[0]);
        expect(answer.harnessError, answer.stack).toBeUndefined();
        expect(answer).toEqual(node[c]);
      });
  });
}
