/**
 * The topic modules bundled with esbuild (ES2020) run in a bare QuickJS context (no shims) and
 * give exactly what Node gives: the same scenario script runs in both and must agree.
 */
import { build } from 'esbuild';
import { getQuickJS } from 'quickjs-emscripten';
import { beforeAll, describe, expect, it } from 'vitest';
import * as T from '../src/index.ts';

const SRC = new URL('../src/', import.meta.url).pathname;

/** Plain ES5-style script over a global `T`; returns a JSON string of everything it saw. */
const SCENARIO = `(function () {
  var out = {};
  var idx = new T.SubscriptionIndex();
  var subs = [];
  for (var i = 0; i < 1500; i++) {
    var f = i % 5 === 0 ? 'site/+/dev/' + i + '/t' : i % 5 === 1 ? 'site/' + (i % 7) + '/dev/' + i + '/#'
      : 'site/' + (i % 7) + '/dev/' + i + '/t';
    var v = { id: i, qos: i % 3 };
    subs.push([f, v]);
    idx.add(f, v);
  }
  idx.add('#', { id: -1 });
  idx.add('$share/g/site/+/dev/#', { id: -2 });
  idx.add('$share/g/site/3/#', { id: -3 });
  var seen = [];
  var topics = ['site/3/dev/10/t', 'site/1/dev/1/t/x', 'site/2/dev/2/t', '$SYS/x', 'site/3/dev/99999/t', 'site/3/dev/', 'a/\\u20ac/\\ud83d\\ude00'];
  for (var k = 0; k < topics.length; k++) {
    var ids = [];
    var groups = [];
    idx.match(topics[k], function (v) { ids.push(v.id); }, function (g, m) {
      groups.push(g + ':' + m.map(function (x) { return x.id; }).sort(function (a, b) { return a - b; }).join(','));
    });
    ids.sort(function (a, b) { return a - b; });
    seen.push(topics[k] + ' -> ' + ids.join(',') + ' | ' + groups.join(';'));
  }
  out.matches = seen;
  out.size = idx.size;
  for (var j = 0; j < subs.length; j++) idx.remove(subs[j][0], subs[j][1]);
  out.afterRemove = [idx.size, idx.nodeCount];
  var store = new T.TopicStore();
  store.set('site/1/temp', 1); store.set('site/2/temp', 2); store.set('$SYS/up', 3); store.set('site/1', 4);
  var found = [];
  store.match('site/#', function (t, v) { found.push(t + '=' + v); });
  store.match('#', function (t, v) { found.push('all:' + t); });
  found.sort();
  out.retained = found;
  out.matchTopic = [T.matchTopic('sport/#', 'sport'), T.matchTopic('+/+', '/finance'), T.matchTopic('#', '$SYS/a')];
  var errors = [];
  try { T.validateTopicFilter('a/#/b'); } catch (e) { errors.push(e.code + '/' + e.reasonCode + '/' + e.kind + '@' + e.index); }
  try { T.validateTopicName('x\\ud800'); } catch (e) { errors.push(e.code + '/' + e.reasonCode + '/' + e.kind + '@' + e.index); }
  out.errors = errors;
  return JSON.stringify(out);
})()`;

describe('topic modules in a bare QuickJS context', () => {
  let code = '';
  beforeAll(async () => {
    const result = await build({
      stdin: {
        contents:
          "export { SubscriptionIndex } from './subscription-index.ts';\n" +
          "export { TopicStore } from './topic-store.ts';\n" +
          "export { matchTopic } from './topic-match.ts';\n" +
          "export { validateTopicFilter, validateTopicName } from './topic.ts';\n",
        resolveDir: SRC,
        loader: 'ts',
      },
      bundle: true,
      write: false,
      format: 'iife',
      globalName: 'T',
      target: 'es2020',
      platform: 'neutral',
      minify: true,
      logLevel: 'silent',
    });
    code = result.outputFiles[0].text;
  }, 60_000);

  it('bundles without Node, Buffer or text codecs', () => {
    for (const word of ['Buffer', 'TextEncoder', 'TextDecoder', 'require(', 'process'])
      expect(code).not.toContain(word);
  });

  it('gives the same answers as Node, within a 1 MiB memory limit', async () => {
    const expected = JSON.parse(new Function('T', `return ${SCENARIO}`)(T) as string);
    expect(expected.matches[0]).toContain('-1');
    expect(expected.matches.some((m: string) => m.includes('g:-3,-2'))).toBe(true);
    expect(expected.retained).toContain('site/1=4');
    // left: '#' on the main root; the shared trie's root, site, +, dev and 3
    expect(expected.afterRemove).toEqual([3, 6]);
    expect(expected.errors).toEqual([
      'TOPIC_FILTER_INVALID/143/hash-placement@2',
      'TOPIC_NAME_INVALID/144/lone-surrogate@1',
    ]);

    const QuickJS = await getQuickJS();
    const runtime = QuickJS.newRuntime();
    runtime.setMemoryLimit(1024 * 1024);
    const vm = runtime.newContext();
    try {
      const loaded = vm.evalCode(code, 'topics.js');
      if (loaded.error) throw new Error(`bundle failed in QuickJS: ${JSON.stringify(vm.dump(loaded.error))}`);
      loaded.value.dispose();
      const run = vm.evalCode(SCENARIO, 'scenario.js');
      if (run.error) throw new Error(`scenario failed in QuickJS: ${JSON.stringify(vm.dump(run.error))}`);
      const got = JSON.parse(vm.getString(run.value));
      run.value.dispose();
      expect(got).toEqual(expected);
    } finally {
      vm.dispose();
      runtime.dispose();
    }
  }, 60_000);
});
