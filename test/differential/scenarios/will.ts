/**
 * Wills: on a dropped connection and not on DISCONNECT, retained wills, their QoS, MQTT 5's
 * DISCONNECT 0x04, will delay (fired, cancelled by a reconnect, cut short by the session's
 * expiry), takeover, and will properties. A fresh broker pair per scenario.
 */
import { connect, connect5, disconnect, drop, elapse, publish, subscribe, wait } from '../steps.ts';
import type { ConfigGroup, Scenario, Step } from '../types.ts';

const sc = (id: string, title: string, steps: Step[]): Scenario => ({ id: `will.${id}`, title, steps });

const WILL = { topic: 'will/w', payload: 'gone', qos: 1 as const };

export const will: ConfigGroup = {
  name: 'will',
  conf: 'allow_anonymous true',
  freshPerScenario: true,
  scenarios: [
    sc('on-drop-v311', 'the will is published when the connection drops', [
      connect('s'),
      subscribe('s', 'will/#'),
      connect('w', { will: WILL }),
      drop('w'),
      wait('s', 'will/w'),
    ]),
    sc('on-drop-v5', 'the will is published when the connection drops (5.0)', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w', { will: WILL }),
      drop('w'),
      wait('s', 'will/w'),
    ]),
    sc('not-on-disconnect', 'a DISCONNECT discards the will', [
      connect('s'),
      subscribe('s', 'will/#'),
      connect('w', { will: WILL }),
      disconnect('w'),
      connect('p'),
      publish('p', 'will/marker', 'after', { qos: 1 }),
      wait('s', 'will/marker'),
    ]),
    sc('retained', 'a retained will is kept for later subscribers', [
      connect('w', { will: { ...WILL, retain: true } }),
      connect('s'),
      subscribe('s', 'will/#'),
      drop('w'),
      wait('s', 'will/w'),
      connect('late'),
      subscribe('late', 'will/#'),
    ]),
    sc('qos', 'a QoS 2 will to QoS 0, 1 and 2 subscribers', [
      connect('s0'),
      subscribe('s0', { filter: 'will/#', qos: 0 }),
      connect('s1'),
      subscribe('s1', { filter: 'will/#', qos: 1 }),
      connect('s2'),
      subscribe('s2', { filter: 'will/#', qos: 2 }),
      connect('w', { will: { ...WILL, qos: 2 } }),
      drop('w'),
      wait('s0', 'will/w'),
      wait('s1', 'will/w'),
      wait('s2', 'will/w'),
    ]),
    sc('disconnect-with-will-v5', 'DISCONNECT with reason 0x04 publishes the will', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w', { will: WILL }),
      disconnect('w', { reason: 0x04 }),
      wait('s', 'will/w'),
    ]),
    sc('delay-v5', 'a will delay: the will comes after it', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w', {
        will: { ...WILL, properties: { willDelayInterval: 1 } },
        properties: { sessionExpiryInterval: 30 },
      }),
      drop('w'),
      wait('s', 'will/w', { timeoutMs: 4000 }),
    ]),
    sc('delay-cancelled-v5', 'reconnecting within the will delay cancels the will', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w', {
        will: { ...WILL, properties: { willDelayInterval: 1 } },
        properties: { sessionExpiryInterval: 30 },
      }),
      drop('w'),
      connect5('w', { clean: false, properties: { sessionExpiryInterval: 30 } }),
      elapse(1600),
      connect('p'),
      publish('p', 'will/marker', 'after the delay', { qos: 1 }),
      wait('s', 'will/marker'),
    ]),
    sc('session-expiry-first-v5', 'a session that expires before the will delay sends the will then', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w', {
        will: { ...WILL, properties: { willDelayInterval: 60 } },
        properties: { sessionExpiryInterval: 1 },
      }),
      drop('w'),
      wait('s', 'will/w', { timeoutMs: 4000 }),
      connect5('w', { clean: false, properties: { sessionExpiryInterval: 1 } }),
    ]),
    sc('takeover-v311', 'a second connection with the same client id: the first is closed, and its will?', [
      connect('s'),
      subscribe('s', 'will/#'),
      connect('w1', { clientId: 'same-id', will: WILL }),
      connect('w2', { clientId: 'same-id' }),
      connect('p'),
      publish('p', 'will/marker', 'after', { qos: 1 }),
      wait('s', 'will/marker'),
    ]),
    sc('takeover-v5', 'a takeover (5.0): DISCONNECT 0x8E to the first, and its will?', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w1', { clientId: 'same-id', will: WILL }),
      connect5('w2', { clientId: 'same-id' }),
      connect('p'),
      publish('p', 'will/marker', 'after', { qos: 1 }),
      wait('s', 'will/marker'),
    ]),
    sc('properties-v5', 'will properties reach the subscriber', [
      connect5('s'),
      subscribe('s', 'will/#'),
      connect5('w', {
        will: {
          ...WILL,
          properties: {
            contentType: 'text/plain',
            payloadFormatIndicator: true,
            responseTopic: 'will/reply',
            correlationData: new Uint8Array([9]),
            userProperties: [['why', 'test']],
          },
        },
      }),
      drop('w'),
      wait('s', 'will/w'),
    ]),
    sc('empty-payload', 'a will with an empty payload', [
      connect('s'),
      subscribe('s', 'will/#'),
      connect('w', { will: { topic: 'will/empty', payload: '' } }),
      drop('w'),
      wait('s', 'will/empty'),
    ]),
  ],
};
