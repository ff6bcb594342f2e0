/**
 * Delivery: QoS downgrade to the subscription's QoS, overlapping subscriptions, subscription
 * options (no local, subscription identifiers), unsubscribe reason codes, shared subscriptions,
 * message properties between 5.0 and 3.1.1 clients, a client's own maximum packet size, and
 * protocol errors a client can make. One broker pair: topics differ per scenario.
 */
import { acks, connect, connect5, publish, subscribe, unsubscribe } from '../steps.ts';
import type { ConfigGroup, Scenario, Step } from '../types.ts';

const sc = (id: string, title: string, steps: Step[]): Scenario => ({ id: `delivery.${id}`, title, steps });

const PROPS = {
  payloadFormatIndicator: true,
  messageExpiryInterval: 3600,
  contentType: 'text/plain',
  responseTopic: 'reply/to',
  correlationData: new Uint8Array([0xca, 0xfe]),
  userProperties: [
    ['k', 'v'],
    ['k', 'v2'],
  ] as Array<[string, string]>,
};

export const delivery: ConfigGroup = {
  name: 'delivery',
  conf: 'allow_anonymous true',
  scenarios: [
    sc('qos-downgrade', 'a message goes at the lower of its QoS and the subscription', [
      connect('s0'),
      subscribe('s0', { filter: 'dg/#', qos: 0 }),
      connect5('s1'),
      subscribe('s1', { filter: 'dg/#', qos: 1 }),
      connect('s2'),
      subscribe('s2', { filter: 'dg/#', qos: 2 }),
      connect('p'),
      publish('p', 'dg/a', 'q2', { qos: 2 }),
      publish('p', 'dg/b', 'q1', { qos: 1 }),
      publish('p', 'dg/c', 'q0', { qos: 0 }),
    ]),
    sc('overlap-v311', 'overlapping subscriptions of one client (3.1.1)', [
      connect('s'),
      subscribe('s', { filter: 'ov/#', qos: 0 }, { filter: 'ov/+', qos: 2 }),
      connect('p'),
      publish('p', 'ov/x', 'both match', { qos: 2 }),
    ]),
    sc('overlap-v5', 'overlapping subscriptions of one client, with subscription identifiers (5.0)', [
      connect5('s'),
      {
        op: 'subscribe',
        client: 's',
        filters: [{ filter: 'ov5/#', qos: 0 }],
        properties: { subscriptionIdentifier: 1 },
      },
      {
        op: 'subscribe',
        client: 's',
        filters: [{ filter: 'ov5/+', qos: 2 }],
        properties: { subscriptionIdentifier: 2 },
      },
      connect('p'),
      publish('p', 'ov5/x', 'both match', { qos: 2 }),
      publish('p', 'ov5/x/y', 'one matches', { qos: 1 }),
    ]),
    sc('resubscribe-replaces', 'subscribing again to a filter replaces its QoS', [
      connect('s'),
      subscribe('s', { filter: 'rs/t', qos: 2 }),
      subscribe('s', { filter: 'rs/t', qos: 0 }),
      connect('p'),
      publish('p', 'rs/t', 'once, at QoS 0', { qos: 2 }),
    ]),
    sc('no-local-v5', 'no local: a client does not get its own messages', [
      connect5('s'),
      subscribe('s', { filter: 'nl/a', qos: 1, noLocal: true }, { filter: 'nl/b', qos: 1 }),
      publish('s', 'nl/a', 'own, no local', { qos: 1 }),
      publish('s', 'nl/b', 'own, local', { qos: 1 }),
    ]),
    sc('unsubscribe-v5', 'UNSUBACK reason codes: 0x00 and 0x11 (no subscription existed)', [
      connect5('s'),
      subscribe('s', 'us/a'),
      unsubscribe('s', 'us/a', 'us/never'),
      connect('p'),
      publish('p', 'us/a', 'after unsubscribe', { qos: 1 }),
    ]),
    sc('unsubscribe-v311', 'UNSUBACK (3.1.1) for a filter held and one never held', [
      connect('s'),
      subscribe('s', 'us3/a'),
      unsubscribe('s', 'us3/a', 'us3/never'),
    ]),
    sc('shared-subscription', 'a shared subscription: each message to one member', [
      connect5('m1'),
      subscribe('m1', { filter: '$share/g/sh/#', qos: 1 }),
      connect5('m2'),
      subscribe('m2', { filter: '$share/g/sh/#', qos: 1 }),
      connect5('other'),
      subscribe('other', { filter: 'sh/#', qos: 1 }),
      connect('p'),
      publish('p', 'sh/1', 'a', { qos: 1 }),
      publish('p', 'sh/2', 'b', { qos: 1 }),
      publish('p', 'sh/3', 'c', { qos: 1 }),
      publish('p', 'sh/4', 'd', { qos: 1 }),
    ]),
    sc('shared-subscription-v311', 'a shared subscription filter from a 3.1.1 client', [
      connect('m'),
      subscribe('m', { filter: '$share/g3/s3/#', qos: 1 }),
      connect('p'),
      publish('p', 's3/x', 'shared', { qos: 1 }),
    ]),
    sc('properties-v5-to-v5', 'message properties pass from a 5.0 publisher to a 5.0 subscriber', [
      connect5('s'),
      subscribe('s', { filter: 'pp/#', qos: 1 }),
      connect5('p'),
      publish('p', 'pp/t', 'with properties', { qos: 1, properties: PROPS }),
    ]),
    sc('properties-v5-to-v311', 'a 3.1.1 subscriber gets the message without properties', [
      connect('s'),
      subscribe('s', { filter: 'pp3/#', qos: 1 }),
      connect5('p'),
      publish('p', 'pp3/t', 'with properties', { qos: 1, properties: PROPS }),
    ]),
    sc(
      'client-maximum-packet-size-v5',
      "a message larger than the subscriber's Maximum Packet Size is not sent to it",
      [
        connect5('small', { properties: { maximumPacketSize: 100 } }),
        subscribe('small', { filter: 'mps/#', qos: 1 }),
        connect5('big'),
        subscribe('big', { filter: 'mps/#', qos: 1 }),
        connect('p'),
        publish('p', 'mps/large', '', { qos: 1, size: 200 }),
        publish('p', 'mps/small', 'fits', { qos: 1 }),
      ],
    ),
    sc('topic-alias-inbound-v5', 'a publisher sets a topic alias, uses it, and goes over the maximum', [
      connect('s'),
      subscribe('s', { filter: 'ta/#', qos: 1 }),
      connect5('p'),
      publish('p', 'ta/x', 'sets alias 1', { qos: 1, properties: { topicAlias: 1 } }),
      publish('p', '', 'uses alias 1', { qos: 1, properties: { topicAlias: 1 } }),
      publish('p', 'ta/y', 'alias 11, over the maximum of 10', { qos: 1, properties: { topicAlias: 11 } }),
    ]),
    // Mosquitto assigns no aliases towards a client; issue 15.3 has broker-lite do so (then an
    // entry in differences.ts shows them: the client resolves them, the property stays).
    sc('topic-alias-outbound-v5', 'a subscriber that allows topic aliases, a topic sent three times', [
      connect5('s', { properties: { topicAliasMaximum: 10 } }),
      subscribe('s', { filter: 'tao/#', qos: 1 }),
      connect('p'),
      publish('p', 'tao/a-rather-long-topic-name-for-a-slow-link/x', '1', { qos: 1 }),
      publish('p', 'tao/a-rather-long-topic-name-for-a-slow-link/x', '2', { qos: 1 }),
      publish('p', 'tao/a-rather-long-topic-name-for-a-slow-link/x', '3', { qos: 1 }),
    ]),
    sc('client-receive-maximum-v5', "the subscriber's Receive Maximum bounds what is in flight to it", [
      connect5('s', { properties: { receiveMaximum: 2 } }),
      subscribe('s', { filter: 'rm/#', qos: 1 }),
      acks('s', 'hold'),
      connect('p'),
      publish('p', 'rm/t', '', { qos: 1, repeat: 5 }),
      acks('s', 'auto'),
    ]),
    sc('dollar-topics', "clients may use '$' topics other than $SYS; '#' does not match them", [
      connect('all'),
      subscribe('all', '#', '+/x'),
      connect('dollar'),
      subscribe('dollar', '$app/#'),
      connect('p'),
      publish('p', '$app/x', 'dollar', { qos: 1 }),
      publish('p', 'app/x', 'plain', { qos: 1 }),
    ]),
    sc('sys-publish', "a client's publish to $SYS is not delivered", [
      connect('s'),
      subscribe('s', '$SYS/test/#'),
      connect5('p'),
      publish('p', '$SYS/test/x', 'not allowed', { qos: 1 }),
      publish('p', '$SYS/test/y', 'not allowed', { qos: 0 }),
    ]),
    sc('invalid-filter-v311', "a filter with '#' not last (3.1.1)", [connect('c'), subscribe('c', 'a/#/b')]),
    sc('invalid-filter-v5', "a filter with '#' not last (5.0)", [connect5('c'), subscribe('c', 'a/#/b')]),
    sc('wildcard-in-topic-v311', "a PUBLISH to a topic with '+' (3.1.1)", [
      connect('c'),
      publish('c', 'a/+/b', 'x', { qos: 1 }),
    ]),
    sc('wildcard-in-topic-v5', "a PUBLISH to a topic with '+' (5.0)", [
      connect5('c'),
      publish('c', 'a/+/b', 'x', { qos: 1 }),
    ]),
    sc('no-subscribers-v5', 'PUBACK / PUBREC when no subscription matches, and when one does', [
      connect5('p'),
      publish('p', 'nosub/a', 'nobody', { qos: 1 }),
      publish('p', 'nosub/b', 'nobody', { qos: 2 }),
      publish('p', 'nosub/c', 'nobody, retained', { qos: 1, retain: true }),
      publish('p', 'nosub/c', '', { qos: 1, retain: true }),
      subscribe('p', { filter: 'nosub/own', qos: 1, noLocal: true }),
      publish('p', 'nosub/own', 'only a no-local subscription of the publisher', { qos: 1 }),
      connect('s'),
      subscribe('s', { filter: 'nosub/+', qos: 0 }),
      publish('p', 'nosub/a', 'one subscriber', { qos: 1 }),
      publish('p', 'nosub/b', 'one subscriber', { qos: 2 }),
      connect('off', { clean: false }),
      subscribe('off', { filter: 'nosub/off', qos: 1 }),
      { op: 'drop', client: 'off' },
      publish('p', 'nosub/off', 'an offline session', { qos: 1 }),
      connect5('m'),
      subscribe('m', { filter: '$share/g/nosub/shared', qos: 1 }),
      publish('p', 'nosub/shared', 'a shared subscription', { qos: 1 }),
    ]),
    sc(
      'inflight-default',
      'max_inflight_messages at its default: 30 QoS 1 messages to a subscriber that does not acknowledge',
      [
        connect('s'),
        subscribe('s', { filter: 'infd/#', qos: 1 }),
        acks('s', 'hold'),
        connect('p'),
        publish('p', 'infd/t', '', { qos: 1, repeat: 30 }),
        acks('s', 'auto'),
      ],
    ),
    sc('client-id-characters', 'client ids with slashes, wildcards and 100 characters are accepted', [
      connect('a', { clientId: 'with/slash' }),
      connect('b', { clientId: 'with+plus#hash' }),
      connect5('c', { clientId: 'x'.repeat(100) }),
    ]),
    sc('topic-levels', 'empty levels and a long topic', [
      connect('s'),
      subscribe('s', '/#', 'lv//x', `${'l/'.repeat(100)}end`),
      connect('p'),
      publish('p', '/lead', 'leading slash'),
      publish('p', 'lv//x', 'empty level', { qos: 1 }),
      publish('p', `${'l/'.repeat(100)}end`, 'a hundred levels', { qos: 1 }),
    ]),
  ],
};
