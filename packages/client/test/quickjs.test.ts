/**
 * The core bundled by esbuild (ES2020, iife) runs in a bare QuickJS context: no Node, no
 * TextEncoder, no timers. A peer scripted in the same context plays the server.
 */
import path from 'node:path';
import { build } from 'esbuild';
import { getQuickJS } from 'quickjs-emscripten';
import { describe, expect, it } from 'vitest';

const ENTRY = path.join(import.meta.dirname, 'fixtures/quickjs-entry.ts');

const SCRIPT = `
(function () {
  var M = MqttEdge;
  var V = 5;
  var log = [];
  var s = new M.ClientSession({ protocolVersion: V, clientId: 'qjs', keepalive: 30 });
  var parser = new M.PacketParser({ protocolVersion: V });
  var now = 1000;
  function fromClient() {
    var out = [];
    var b = s.takeOutput();
    if (b) parser.push(b, function (p) { out.push(p); });
    return out;
  }
  function toClient(p) { s.receive(M.encode(p, V), now); }
  function events() { return s.takeEvents(); }
  function text(u8) { var r = ''; for (var i = 0; i < u8.length; i++) r += String.fromCharCode(u8[i]); return r; }

  s.open(now);
  var connect = fromClient()[0];
  log.push(connect.type + ':' + connect.clientId + ':' + connect.protocolVersion);
  toClient({ type: 'connack', sessionPresent: false, reasonCode: 0 });
  log.push(events()[0].type);

  var sid = s.subscribe([{ topicFilter: 'q/#', qos: 2 }], undefined, now);
  var sub = fromClient()[0];
  log.push(sub.type + ':' + sub.subscriptions[0].topicFilter);
  toClient({ type: 'suback', packetId: sid, reasonCodes: [2] });
  log.push('suback:' + events()[0].reasonCodes.join(','));

  var t = s.publish({ topic: 'q/1', payload: M.utf8Encode('h\\u00e9llo'), qos: 2, retain: false }, now);
  var pub = fromClient()[0];
  log.push(pub.type + ':' + pub.qos + ':' + (pub.packetId === t.packetId));
  toClient({ type: 'pubrec', packetId: pub.packetId });
  var rel = fromClient()[0];
  log.push(rel.type);
  toClient({ type: 'pubcomp', packetId: pub.packetId });
  var done = events()[0];
  log.push(done.type + ':' + done.qos + ':' + done.reasonCode);

  // the server delivers the message back at QoS 2
  toClient({ type: 'publish', topic: 'q/1', payload: pub.payload, qos: 2, retain: false, dup: false, packetId: 77 });
  var msg = events()[0];
  log.push('message:' + msg.packet.topic + ':' + text(msg.packet.payload).length);
  log.push(fromClient()[0].type);
  toClient({ type: 'pubrel', packetId: 77 });
  log.push(fromClient()[0].type);

  now += 30000;
  s.tick(now);
  log.push(fromClient()[0].type);
  s.disconnect(now);
  log.push(fromClient()[0].type + ':' + events()[0].type);
  return JSON.stringify({ log: log, outbox: s.outbox.stats().count });
})()
`;

describe('QuickJS', () => {
  it('the bundled core completes CONNECT, SUBSCRIBE, PUBLISH QoS 2 both ways with an in-context peer', async () => {
    const bundle = await build({
      entryPoints: [ENTRY],
      bundle: true,
      format: 'iife',
      globalName: 'MqttEdge',
      target: 'es2020',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      write: false,
      logLevel: 'silent',
    });
    const code = bundle.outputFiles[0].text;
    expect(code).not.toMatch(/require\(["']node:|from ["']node:/);
    const QuickJS = await getQuickJS();
    const rt = QuickJS.newRuntime();
    rt.setMemoryLimit(64 * 1024 * 1024);
    const vm = rt.newContext();
    try {
      const loaded = vm.evalCode(code);
      vm.unwrapResult(loaded).dispose();
      const res = vm.evalCode(SCRIPT);
      const handle = vm.unwrapResult(res);
      const out = JSON.parse(vm.getString(handle)) as { log: string[]; outbox: number };
      handle.dispose();
      expect(out.log).toEqual([
        'connect:qjs:5',
        'connected',
        'subscribe:q/#',
        'suback:2',
        'publish:2:true',
        'pubrel',
        'published:2:0',
        'message:q/1:6',
        'pubrec',
        'pubcomp',
        'pingreq',
        'disconnect:closed',
      ]);
      expect(out.outbox).toBe(0);
    } finally {
      vm.dispose();
      rt.dispose();
    }
  });
});
