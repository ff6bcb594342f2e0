/**
 * The constrained-runtime guarantee: the esbuild bundle of the whole package index (ES2020; the
 * codec, subscription index and topic store) runs in a bare QuickJS context (no shims: no Buffer,
 * no TextEncoder, no console) under a 256 KiB memory limit, and gives byte-for-byte what Node
 * gives, for every packet type and UTF-8 edge cases.
 */
import { getQuickJS } from 'quickjs-emscripten';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BUDGET_GZIP_BYTES,
  type Bundle,
  bundleCodec,
  PACKAGE_CEILING_GZIP_BYTES,
} from '../scripts/bundle-size.ts';
import { encode, type Packet, type ProtocolVersion } from '../src/index.ts';

const b = (...xs: number[]) => Uint8Array.from(xs);
const UTF8_EDGES = [
  '\u00e9',
  '\u20ac',
  '\u{1f600}',
  '\uffff',
  '\u{10ffff}',
  '\u0001\u007f\u0080\u07ff\u0800',
  'a'.repeat(70),
];

const cases: Array<[ProtocolVersion, Packet]> = [
  [3, { type: 'connect', protocolVersion: 3, clientId: 'old-client', clean: true, keepalive: 30 }],
  [
    4,
    {
      type: 'connect',
      protocolVersion: 4,
      clientId: 'gw-\u00e9',
      clean: false,
      keepalive: 60,
      username: '\u{1f600}user',
      password: b(0, 255),
      will: { topic: 'status/\u20ac', payload: b(1, 2), qos: 2, retain: true },
    },
  ],
  [
    5,
    {
      type: 'connect',
      protocolVersion: 5,
      clientId: '',
      clean: true,
      keepalive: 0,
      properties: {
        sessionExpiryInterval: 0xffffffff,
        userProperties: [
          ['k', ''],
          ['k', '\uffff'],
        ],
      },
      will: {
        topic: 'w',
        payload: b(),
        qos: 0,
        retain: false,
        properties: { willDelayInterval: 9, contentType: '\u{10ffff}' },
      },
    },
  ],
  [3, { type: 'connect', protocolVersion: 3, clientId: 'br', clean: true, keepalive: 60, bridge: true }],
  [4, { type: 'connect', protocolVersion: 4, clientId: 'br', clean: false, keepalive: 60, bridge: true }],
  [4, { type: 'connack', sessionPresent: true, reasonCode: 0 }],
  [
    5,
    {
      type: 'connack',
      sessionPresent: false,
      reasonCode: 0x86,
      properties: { reasonString: 'nope \u{1f600}', maximumQoS: 1 },
    },
  ],
  ...UTF8_EDGES.map((s, i): [ProtocolVersion, Packet] => [
    4,
    {
      type: 'publish',
      topic: `t/${s}`,
      payload: b(i, 0, 0xff),
      qos: 1,
      retain: false,
      dup: false,
      packetId: i + 1,
    },
  ]),
  [
    5,
    {
      type: 'publish',
      topic: '',
      payload: new Uint8Array(300).fill(7),
      qos: 2,
      retain: true,
      dup: true,
      packetId: 65535,
      properties: {
        topicAlias: 3,
        subscriptionIdentifiers: [1, 268_435_455],
        correlationData: b(1),
        payloadFormatIndicator: true,
      },
    },
  ],
  [4, { type: 'puback', packetId: 1 }],
  [5, { type: 'pubrec', packetId: 2, reasonCode: 0x10 }],
  [5, { type: 'pubrel', packetId: 3, reasonCode: 0x92, properties: { reasonString: '' } }],
  [4, { type: 'pubcomp', packetId: 4 }],
  [4, { type: 'subscribe', packetId: 5, subscriptions: [{ topicFilter: 'a/+/\u00e9/#', qos: 1 }] }],
  [
    5,
    {
      type: 'subscribe',
      packetId: 6,
      properties: { subscriptionIdentifier: 77 },
      subscriptions: [
        { topicFilter: '$share/g/x', qos: 2, noLocal: false, retainAsPublished: true, retainHandling: 1 },
      ],
    },
  ],
  [4, { type: 'suback', packetId: 5, reasonCodes: [0, 1, 2, 0x80] }],
  [4, { type: 'unsubscribe', packetId: 7, topicFilters: ['#', '\u{1f600}/+'] }],
  [5, { type: 'unsuback', packetId: 7, reasonCodes: [0, 0x11] }],
  [4, { type: 'pingreq' }],
  [5, { type: 'pingresp' }],
  [4, { type: 'disconnect' }],
  [5, { type: 'disconnect', reasonCode: 0x8e, properties: { serverReference: 'other' } }],
  [
    5,
    {
      type: 'auth',
      reasonCode: 0x18,
      properties: { authenticationMethod: 'SCRAM', authenticationData: b(9) },
    },
  ],
];

const toJson = (value: unknown) =>
  JSON.stringify(value, (_k, v) => (v instanceof Uint8Array ? { $bytes: Array.from(v) } : v));
const hexOf = (bytes: Uint8Array) => Array.from(bytes, (x) => x.toString(16).padStart(2, '0')).join('');

// Runs inside QuickJS: only the bundle's global and plain ECMAScript.
const SCRIPT = String.raw`(function () {
  var C = MqttCodec;
  function revive(k, v) { return v && typeof v === 'object' && Array.isArray(v.$bytes) ? new Uint8Array(v.$bytes) : v; }
  function canon(v) {
    if (v instanceof Uint8Array) return '#' + Array.from(v).join(',');
    if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
    if (v && typeof v === 'object') return '{' + Object.keys(v).filter(function (k) { return v[k] !== undefined; }).sort().map(function (k) { return k + ':' + canon(v[k]); }).join(',') + '}';
    return JSON.stringify(v);
  }
  function hex(b) { var s = ''; for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16); return s; }
  var cases = JSON.parse(CASES, revive);
  var results = [];
  var writer = new C.PacketWriter(16);
  for (var n = 0; n < cases.length; n++) {
    var v = cases[n][0], p = cases[n][1];
    var bytes = C.encode(p, v);
    var viaWriter = hex(writer.encode(p, v));
    var back = C.decode(bytes, v);
    var parser = new C.PacketParser({ protocolVersion: v });
    var streamed = [];
    for (var i = 0; i < bytes.length; i++) parser.push(bytes.subarray(i, i + 1), function (q) { streamed.push(q); });
    results.push({ hex: hex(bytes), writer: viaWriter === hex(bytes), decoded: canon(back) === canon(p),
      streamed: streamed.length === 1 && canon(streamed[0]) === canon(p) });
  }
  var rejected = [];
  var bad = [[0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc0, 0xaf], [0x61, 0x00], [0xe2, 0x82]];
  for (var j = 0; j < bad.length; j++) {
    var t = bad[j];
    var pkt = new Uint8Array(4 + t.length);
    pkt[0] = 0x30; pkt[1] = 2 + t.length; pkt[2] = 0; pkt[3] = t.length; pkt.set(t, 4);
    try { C.decode(pkt, 4); rejected.push('accepted'); }
    catch (e) { rejected.push(e instanceof C.MqttError ? e.code + '/' + e.reasonCode : 'other:' + e); }
  }
  try { C.encode({ type: 'publish', topic: 'a\ud800', payload: new Uint8Array(0), qos: 0, retain: false, dup: false }, 4); rejected.push('accepted'); }
  catch (e) { rejected.push(e instanceof C.MqttError ? e.code : 'other:' + e); }
  return JSON.stringify({ results: results, rejected: rejected });
})()`;

describe('codec bundle in a bare QuickJS context (256 KiB memory limit)', () => {
  let bundle: Bundle;
  beforeAll(async () => {
    bundle = await bundleCodec({ format: 'iife', minify: true });
  }, 60_000);

  it('contains no Buffer, TextEncoder, TextDecoder, require( or process', () => {
    for (const word of ['Buffer', 'TextEncoder', 'TextDecoder', 'require(', 'process'])
      expect(bundle.code).not.toContain(word);
  });

  // Issue 2's budget covers the codec (packets, parser, topic functions): what a constrained
  // client bundles. The subscription index and topic store (issue 3) come on top, under a
  // ceiling of our own.
  it(`the codec fits the budget: minified and gzipped at most ${BUDGET_GZIP_BYTES} bytes`, async () => {
    const esm = await bundleCodec({ format: 'esm', minify: true, part: 'codec' });
    console.info(`codec bundle: ${esm.bytes} bytes minified, ${esm.gzipBytes} bytes gzipped`);
    expect(esm.gzipBytes).toBeLessThanOrEqual(BUDGET_GZIP_BYTES);
    for (const word of ['Buffer', 'TextEncoder', 'TextDecoder', 'require(', 'process'])
      expect(esm.code).not.toContain(word);
  });

  it(`the whole package stays under its ceiling of ${PACKAGE_CEILING_GZIP_BYTES} bytes gzipped`, async () => {
    const esm = await bundleCodec({ format: 'esm', minify: true });
    console.info(`package bundle: ${esm.bytes} bytes minified, ${esm.gzipBytes} bytes gzipped`);
    expect(esm.gzipBytes).toBeLessThanOrEqual(PACKAGE_CEILING_GZIP_BYTES);
  });

  it('round-trips every packet type byte-exactly, UTF-8 edge cases included', async () => {
    const QuickJS = await getQuickJS();
    const runtime = QuickJS.newRuntime();
    runtime.setMemoryLimit(256 * 1024);
    const vm = runtime.newContext();
    try {
      const loaded = vm.evalCode(bundle.code, 'codec.js');
      if (loaded.error) throw new Error(`bundle failed in QuickJS: ${JSON.stringify(vm.dump(loaded.error))}`);
      loaded.value.dispose();
      const casesHandle = vm.newString(toJson(cases));
      vm.setProp(vm.global, 'CASES', casesHandle);
      casesHandle.dispose();
      const run = vm.evalCode(SCRIPT, 'roundtrip.js');
      if (run.error) throw new Error(`round trip failed in QuickJS: ${JSON.stringify(vm.dump(run.error))}`);
      const out = JSON.parse(vm.getString(run.value)) as {
        results: Array<{ hex: string; writer: boolean; decoded: boolean; streamed: boolean }>;
        rejected: string[];
      };
      run.value.dispose();
      expect(new Set(cases.map(([, p]) => p.type)).size).toBe(15);
      expect(out.results.length).toBe(cases.length);
      out.results.forEach((r, i) => {
        const [v, p] = cases[i];
        expect(r.hex, `${p.type} v${v}`).toBe(hexOf(encode(p, v)));
        expect(r, `${p.type} v${v}`).toMatchObject({ writer: true, decoded: true, streamed: true });
      });
      expect(out.rejected).toEqual([...Array(6).fill('UTF8_INVALID/129'), 'TOPIC_NAME_INVALID']);
    } finally {
      vm.dispose();
      runtime.dispose();
    }
  }, 60_000);
});
