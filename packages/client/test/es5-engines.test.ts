/**
 * Issue 21.3: a whole client session inside Duktape (dist/client-core.es5.js, every ES2015
 * built-in deleted first) and QuickJS (the ES2020 build, and the ES5 one), against a server
 * played by this test with the Node codec: CONNECT, SUBSCRIBE, PUBLISH QoS 0/1/2 both ways,
 * keepalive, outgoing topic aliases, a lost connection resumed (DUP PUBLISH, PUBREL), a lost
 * session resubscribed, UNSUBSCRIBE, DISCONNECT. Every step's bytes and events must equal the
 * same harness's on the Node core.
 */
import { encode, type Packet, type ProtocolVersion } from '@mqtt-edge/codec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEs5 } from '../../../scripts/build-es5.ts';
import { DUK, DUK_MISSING, type Engine, startDuk, startQuickJS } from '../../../test/helpers/engines.ts';
import { CLIENT_HARNESS, EngineSession, type Step } from './helpers/es5-session.ts';

if (DUK === null) console.warn(DUK_MISSING);

const hexOf = (s: string) => Buffer.from(s).toString('hex');
const ENGINES = [
  { name: 'Duktape (ES5 build, ES5.1-only built-ins)', build: 'es5', engine: 'duktape' },
  { name: 'QuickJS (ES2020 build)', build: 'es2020', engine: 'quickjs' },
  { name: 'QuickJS (ES5 build)', build: 'es5', engine: 'quickjs' },
] as const;

/** The scripted server's side of one session, in protocol `v`. */
async function scenario(s: EngineSession, v: ProtocolVersion, engineName: string): Promise<void> {
  let now = 1_000;
  const rx = (p: Packet, at = now) =>
    s.cmd('rx', { hex: Buffer.from(encode(p, v)).toString('hex'), now: at });
  const one = (step: Step, type: string) => {
    expect(
      step.packets.map((p) => p.type),
      type,
    ).toEqual([type]);
    return step.packets[0] as Packet & Record<string, unknown>;
  };

  await s.cmd('create', {
    options: {
      protocolVersion: v,
      clientId: 'es5-dev',
      keepalive: 30,
      clean: 'first',
      outgoingTopicAliases: true,
    },
  });
  // CONNECT, CONNACK
  const connect = one(await s.cmd('open', { now }), 'connect');
  expect(connect).toMatchObject({ clientId: 'es5-dev', protocolVersion: v, clean: true, keepalive: 30 });
  let step = await rx({
    type: 'connack',
    sessionPresent: false,
    reasonCode: 0,
    ...(v === 5 ? { properties: { topicAliasMaximum: 4 } } : {}),
  });
  expect(step.events.map((e) => e.type)).toEqual(['connected']);
  expect(step.state).toBe('connected');
  expect(step.deadline).toBe(now + 30_000);

  // SUBSCRIBE, SUBACK
  step = await s.cmd('subscribe', { subscriptions: [{ topicFilter: 'cmd/#', qos: 2 }], now });
  const sub = one(step, 'subscribe');
  expect(sub.subscriptions).toMatchObject([{ topicFilter: 'cmd/#', qos: 2 }]);
  step = await rx({ type: 'suback', packetId: sub.packetId as number, reasonCodes: [2] });
  expect(step.events).toMatchObject([{ type: 'suback', reasonCodes: [2] }]);

  // PUBLISH QoS 0, 1 (PUBACK), 2 (PUBREC, PUBREL, PUBCOMP); 5.0: the topic's alias the second time
  step = await s.cmd('publish', { topic: 'tele/t', payload: hexOf('21.5'), qos: 0, now });
  expect(one(step, 'publish')).toMatchObject({ topic: 'tele/t', qos: 0 });
  step = await s.cmd('publish', { topic: 'tele/t', payload: hexOf('21.6'), qos: 1, now });
  const p1 = one(step, 'publish');
  expect(p1).toMatchObject({ qos: 1, topic: v === 5 ? '' : 'tele/t' });
  if (v === 5) expect(p1.properties).toEqual({ topicAlias: 1 });
  expect(step.result).toMatchObject({ sent: true, packetId: p1.packetId });
  step = await rx({ type: 'puback', packetId: p1.packetId as number });
  expect(step.events).toMatchObject([{ type: 'published', qos: 1, packetId: p1.packetId, reasonCode: 0 }]);
  step = await s.cmd('publish', { topic: 'tele/q2', payload: hexOf('x'), qos: 2, now });
  const p2 = one(step, 'publish');
  step = await rx({ type: 'pubrec', packetId: p2.packetId as number });
  expect(one(step, 'pubrel').packetId).toBe(p2.packetId);
  step = await rx({ type: 'pubcomp', packetId: p2.packetId as number });
  expect(step.events).toMatchObject([{ type: 'published', qos: 2, reasonCode: 0 }]);

  // Incoming QoS 0, 1 (PUBACK), 2 (PUBREC; PUBREL -> PUBCOMP); 5.0 also by an incoming alias
  const message = (qos: 0 | 1 | 2, packetId?: number, topic = 'cmd/led'): Packet => ({
    type: 'publish',
    topic,
    payload: Buffer.from('on'),
    qos,
    retain: false,
    dup: false,
    ...(packetId === undefined ? {} : { packetId }),
  });
  step = await rx(message(0));
  expect(step.events).toMatchObject([
    { type: 'message', packet: { topic: 'cmd/led', payload: `hex:${hexOf('on')}` } },
  ]);
  step = await rx(message(1, 300));
  expect(one(step, 'puback').packetId).toBe(300);
  step = await rx(message(2, 301));
  expect(one(step, 'pubrec').packetId).toBe(301);
  expect(step.events).toMatchObject([{ type: 'message', packet: { qos: 2 } }]);
  step = await rx(message(2, 301)); // a duplicate: answered, not delivered again
  expect(step.events).toEqual([]);
  step = await rx({ type: 'pubrel', packetId: 301 });
  expect(one(step, 'pubcomp').packetId).toBe(301);
  if (v === 5) {
    await rx({ ...message(0), properties: { topicAlias: 2 } } as Packet);
    step = await rx({ ...message(0, undefined, ''), properties: { topicAlias: 2 } } as Packet);
    expect(step.events).toMatchObject([{ type: 'message', packet: { topic: 'cmd/led' } }]);
  }

  // Keepalive: PINGREQ once 30 s pass quietly, PINGRESP
  now += 30_000;
  step = await s.cmd('tick', { now });
  one(step, 'pingreq');
  step = await rx({ type: 'pingresp' });
  expect(step.events).toEqual([]);

  // In flight when the connection is lost: a QoS 1 PUBLISH and a QoS 2 one past PUBREC
  step = await s.cmd('publish', { topic: 'tele/a', payload: hexOf('a'), qos: 1, now });
  const q1 = one(step, 'publish');
  step = await s.cmd('publish', { topic: 'tele/b', payload: hexOf('b'), qos: 2, now });
  const q2 = one(step, 'publish');
  one(await rx({ type: 'pubrec', packetId: q2.packetId as number }), 'pubrel');
  step = await s.cmd('lost', { now });
  expect(step.events).toMatchObject([{ type: 'closed', by: 'transport' }]);
  expect((await s.cmd('stats')).result).toMatchObject({ inflight: 2 });

  // Resumed: clean false ('first'), the session present: PUBLISH again with DUP, then PUBREL
  now += 1_000;
  expect(one(await s.cmd('open', { now }), 'connect')).toMatchObject({ clean: false });
  step = await rx({ type: 'connack', sessionPresent: true, reasonCode: 0 });
  expect(step.packets.map((p) => p.type)).toEqual(['publish', 'pubrel']);
  expect(step.packets[0]).toMatchObject({ dup: true, packetId: q1.packetId, topic: 'tele/a', qos: 1 });
  expect(step.packets[1]).toMatchObject({ packetId: q2.packetId });
  await rx({ type: 'puback', packetId: q1.packetId as number });
  step = await rx({ type: 'pubcomp', packetId: q2.packetId as number });
  expect((await s.cmd('stats')).result).toMatchObject({ inflight: 0, outbox: 0 });

  // Lost again, and this time the server lost the session: subscriptions are sent again
  await s.cmd('lost', { now });
  one(await s.cmd('open', { now }), 'connect');
  step = await rx({ type: 'connack', sessionPresent: false, reasonCode: 0 });
  const resub = one(step, 'subscribe');
  expect(resub.subscriptions).toMatchObject([{ topicFilter: 'cmd/#', qos: 2 }]);
  step = await rx({ type: 'suback', packetId: resub.packetId as number, reasonCodes: [1] });
  expect(step.events).toMatchObject([{ type: 'suback', internal: true }]);

  // UNSUBSCRIBE, UNSUBACK; a refused SUBSCRIBE (5.0) or QoS 1 PUBACK failure reaches the events
  step = await s.cmd('unsubscribe', { filters: ['cmd/#'], now });
  const unsub = one(step, 'unsubscribe');
  step = await rx({
    type: 'unsuback',
    packetId: unsub.packetId as number,
    ...(v === 5 ? { reasonCodes: [0] } : {}),
  });
  expect(step.events).toMatchObject([{ type: 'unsuback' }]);
  if (v === 5) {
    step = await s.cmd('publish', { topic: 'tele/no', payload: '', qos: 1, now });
    step = await rx({ type: 'puback', packetId: one(step, 'publish').packetId as number, reasonCode: 0x87 });
    expect(step.events).toMatchObject([
      { type: 'published', reasonCode: 0x87, error: { error: 'RequestError', requestError: true } },
    ]);
  }

  // The outbox's promise-returning put: a TypeError where the engine has no Promise (so not
  // compared with the Node core, which has one)
  const put = (await s.cmd('put', {}, false)).result;
  expect(put).toBe(engineName.startsWith('Duktape') ? 'TypeError' : 'promise');

  // DISCONNECT
  step = await s.cmd('disconnect', { now });
  one(step, 'disconnect');
  expect(step.events).toMatchObject([{ type: 'closed', by: 'client' }]);
}

/** Issue 17.4: a store outside the session (outbox: null), fed by the harness as a shell would. */
async function fedScenario(s: EngineSession, v: ProtocolVersion): Promise<void> {
  const now = 1_000;
  const rx = (p: Packet) => s.cmd('rx', { hex: Buffer.from(encode(p, v)).toString('hex'), now });
  await s.cmd('create', {
    options: { protocolVersion: v, clientId: 'es5-fed', clean: false, maxInflight: 2, outbox: null },
  });
  for (const m of ['a', 'b', 'c'])
    await s.cmd('storePut', { topic: 'fed/t', payload: hexOf(m), qos: m === 'c' ? 2 : 1 });
  await s.cmd('open', { now });
  let step = await rx({ type: 'connack', sessionPresent: false, reasonCode: 0 });
  // The window (2) takes a and b; c waits in the store.
  expect(
    step.packets.map((p) => [p.type, Buffer.from((p as { payload: Uint8Array }).payload).toString()]),
  ).toEqual([
    ['publish', 'a'],
    ['publish', 'b'],
  ]);
  const [a, b] = step.packets as Array<Packet & { packetId: number }>;
  expect((await s.cmd('storeStats')).result).toEqual({ seqs: [1, 2, 3], reads: 1, cursor: 2, want: 0 });
  step = await rx({ type: 'puback', packetId: a.packetId });
  expect(step.events).toMatchObject([{ type: 'published', seq: 1, packetId: a.packetId }]);
  expect(step.packets).toMatchObject([{ type: 'publish', qos: 2 }]);
  const c = step.packets[0] as Packet & { packetId: number };
  // Lost with b and c in flight: resent from the session's memory, not read again.
  await s.cmd('lost', { now });
  await s.cmd('open', { now });
  step = await rx({ type: 'connack', sessionPresent: true, reasonCode: 0 });
  expect(step.packets).toMatchObject([
    { type: 'publish', dup: true, packetId: b.packetId },
    { type: 'publish', dup: true, packetId: c.packetId },
  ]);
  await rx({ type: 'puback', packetId: b.packetId });
  one(await rx({ type: 'pubrec', packetId: c.packetId }), 'pubrel');
  step = await rx({ type: 'pubcomp', packetId: c.packetId });
  expect(step.events).toMatchObject([{ type: 'published', seq: 3, qos: 2 }]);
  expect((await s.cmd('storeStats')).result).toMatchObject({ seqs: [], cursor: 3, want: 0 });
  // Put later: asked for only once the session is told.
  await s.cmd('storePut', { topic: 'fed/t', payload: hexOf('d'), qos: 1 });
  expect((await s.cmd('storeStats')).result).toMatchObject({ seqs: [4], want: 0 });
  step = await s.cmd('outboxChanged', { now });
  expect(step.packets).toMatchObject([{ type: 'publish', topic: 'fed/t' }]);
}

function one(step: Step, type: string): Packet {
  expect(step.packets.map((p) => p.type)).toEqual([type]);
  return step.packets[0];
}

for (const e of ENGINES) {
  describe.skipIf(e.engine === 'duktape' && DUK === null)(`issue 21.3: a client session in ${e.name}`, () => {
    let code = '';
    const engines: Engine[] = [];
    beforeAll(async () => {
      code = (await buildEs5('client-core', { target: e.build })).code;
    }, 60_000);
    afterAll(() => {
      for (const x of engines) x.close();
    });
    const start = async () => {
      const scripts = [
        { name: 'client-core.js', code },
        { name: 'harness.js', code: CLIENT_HARNESS },
      ];
      const engine = e.engine === 'duktape' ? await startDuk(scripts) : await startQuickJS(scripts);
      engines.push(engine);
      return engine;
    };

    for (const v of [4, 5] as const)
      it(`MQTT ${v === 5 ? '5.0' : '3.1.1'}: connect, subscribe, QoS 0/1/2 both ways, keepalive, resume, resubscribe, disconnect; equal to the Node core`, async () => {
        await scenario(new EngineSession(await start(), v, true), v, e.name);
      }, 60_000);

    it('issue 17.4: a store outside the session (outbox: null), fed as a shell does; equal to the Node core', async () => {
      await fedScenario(new EngineSession(await start(), 5, true), 5);
    }, 60_000);
  });
}
