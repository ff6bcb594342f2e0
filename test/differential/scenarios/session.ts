/**
 * Sessions: 3.1.1 clean session false (queued QoS 1/2, QoS 0 not queued), clean session true
 * discarding, MQTT 5 session expiry (0, kept, elapsed, changed at DISCONNECT), takeover,
 * in-flight messages sent again with DUP after a reconnect, client identifiers. A fresh broker
 * pair per scenario.
 */
import { acks, connect, connect5, disconnect, drop, publish, subscribe, wait } from '../steps.ts';
import type { ConfigGroup, Scenario, Step } from '../types.ts';

const sc = (id: string, title: string, steps: Step[]): Scenario => ({ id: `session.${id}`, title, steps });

export const session: ConfigGroup = {
  name: 'session',
  conf: 'allow_anonymous true',
  freshPerScenario: true,
  scenarios: [
    sc('v311-queued', 'clean session false: QoS 1 and 2 are queued while away, QoS 0 is not', [
      connect('s', { clean: false }),
      subscribe('s', { filter: 'q/#', qos: 2 }),
      disconnect('s'),
      connect('p'),
      publish('p', 'q/0', 'qos 0', { qos: 0 }),
      publish('p', 'q/1', 'qos 1', { qos: 1 }),
      publish('p', 'q/2', 'qos 2', { qos: 2 }),
      connect('s', { clean: false }),
    ]),
    sc('v311-clean-discards', 'clean session true discards a stored session', [
      connect('s', { clean: false }),
      subscribe('s', { filter: 'c/#', qos: 1 }),
      disconnect('s'),
      connect('s', { clean: true }),
      connect('p'),
      publish('p', 'c/x', 'nobody', { qos: 1 }),
      disconnect('s'),
      connect('s', { clean: false }),
    ]),
    sc('subscription-survives', 'a resumed session keeps its subscriptions', [
      connect('s', { clean: false }),
      subscribe('s', { filter: 'keep/#', qos: 1 }),
      drop('s'),
      connect('s', { clean: false }),
      connect('p'),
      publish('p', 'keep/x', 'still subscribed', { qos: 1 }),
    ]),
    sc('v5-expiry-zero', 'session expiry 0: the session ends with the connection', [
      connect5('s', { clean: false }),
      subscribe('s', { filter: 'z/#', qos: 1 }),
      disconnect('s'),
      connect5('s', { clean: false }),
    ]),
    sc('v5-expiry-kept', 'a session expiry interval keeps the session and its messages', [
      connect5('s', { properties: { sessionExpiryInterval: 60 } }),
      subscribe('s', { filter: 'k/#', qos: 1 }),
      disconnect('s'),
      connect('p'),
      publish('p', 'k/a', 'queued', { qos: 1 }),
      connect5('s', { clean: false, properties: { sessionExpiryInterval: 60 } }),
    ]),
    sc('v5-expiry-elapses', 'a session whose expiry interval passed is gone', [
      connect5('obs'),
      subscribe('obs', 'exp/#'),
      connect5('s', {
        properties: { sessionExpiryInterval: 1 },
        will: { topic: 'exp/will', payload: 'session expired', properties: { willDelayInterval: 30 } },
      }),
      subscribe('s', { filter: 'k/#', qos: 1 }),
      drop('s'),
      wait('obs', 'exp/will', { timeoutMs: 4000 }),
      connect5('s', { clean: false, properties: { sessionExpiryInterval: 1 } }),
    ]),
    sc('v5-disconnect-expiry', 'DISCONNECT may shorten the session expiry interval to 0', [
      connect5('s', { properties: { sessionExpiryInterval: 60 } }),
      subscribe('s', { filter: 'd/#', qos: 1 }),
      disconnect('s', { properties: { sessionExpiryInterval: 0 } }),
      connect5('s', { clean: false, properties: { sessionExpiryInterval: 60 } }),
    ]),
    sc('v5-disconnect-expiry-from-zero', 'DISCONNECT may not set an expiry when CONNECT had 0', [
      connect5('s'),
      disconnect('s', { properties: { sessionExpiryInterval: 60 } }),
      connect5('s', { clean: false }),
    ]),
    sc('v5-clean-start-existing', 'clean start with a stored session: session present 0, nothing kept', [
      connect5('s', { properties: { sessionExpiryInterval: 60 } }),
      subscribe('s', { filter: 'cs/#', qos: 1 }),
      disconnect('s'),
      connect5('s', { clean: true, properties: { sessionExpiryInterval: 60 } }),
      connect('p'),
      publish('p', 'cs/x', 'not subscribed any more', { qos: 1 }),
    ]),
    sc(
      'inflight-resent-v311',
      'unacknowledged QoS 1 and 2 deliveries are sent again with DUP after a reconnect',
      [
        connect('s', { clean: false }),
        subscribe('s', { filter: 'inf/#', qos: 2 }),
        acks('s', 'hold'),
        connect('p'),
        publish('p', 'inf/1', 'one', { qos: 1 }),
        publish('p', 'inf/2', 'two', { qos: 2 }),
        drop('s'),
        connect('s', { clean: false }),
      ],
    ),
    sc('inflight-resent-v5', 'unacknowledged QoS 1 and 2 deliveries are sent again with DUP (5.0)', [
      connect5('s', { properties: { sessionExpiryInterval: 60 } }),
      subscribe('s', { filter: 'inf/#', qos: 2 }),
      acks('s', 'hold'),
      connect('p'),
      publish('p', 'inf/1', 'one', { qos: 1 }),
      publish('p', 'inf/2', 'two', { qos: 2 }),
      drop('s'),
      connect5('s', { clean: false, properties: { sessionExpiryInterval: 60 } }),
    ]),
    sc('takeover-v311', 'a second connection with the same client id closes the first', [
      connect('a', { clientId: 'twin' }),
      connect('b', { clientId: 'twin' }),
    ]),
    sc('takeover-v5', 'a second connection with the same client id closes the first (5.0)', [
      connect5('a', { clientId: 'twin' }),
      connect5('b', { clientId: 'twin' }),
    ]),
    sc('takeover-keeps-session', 'a takeover with clean session false keeps the subscriptions', [
      connect('a', { clientId: 'twin', clean: false }),
      subscribe('a', { filter: 'tw/#', qos: 1 }),
      connect('b', { clientId: 'twin', clean: false }),
      connect('p'),
      publish('p', 'tw/x', 'to the new connection', { qos: 1 }),
    ]),
    sc(
      'empty-client-id',
      'an empty client id: 3.1.1 with clean session false and true; 5.0 gets one assigned',
      [
        connect('a', { clientId: '', clean: false }),
        connect('b', { clientId: '', clean: true }),
        connect5('c', { clientId: '' }),
        connect5('d', { clientId: '', clean: false, properties: { sessionExpiryInterval: 10 } }),
      ],
    ),
  ],
};
