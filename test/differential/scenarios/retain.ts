/**
 * Retained messages: set, replaced, cleared, delivered at the lower QoS, to wildcard filters but
 * not to '$' topics, the MQTT 5 subscription options (retain handling, retain as published),
 * message expiry and properties. A fresh broker pair per scenario: nothing retained carries over.
 */
import { connect, connect5, elapse, publish, subscribe } from '../steps.ts';
import type { ConfigGroup, Scenario } from '../types.ts';

const sc = (id: string, title: string, steps: Scenario['steps']): Scenario => ({
  id: `retain.${id}`,
  title,
  steps,
});

export const retain: ConfigGroup = {
  name: 'retain',
  conf: 'allow_anonymous true',
  freshPerScenario: true,
  scenarios: [
    sc(
      'basic-v311',
      'a retained message reaches a later subscriber with the retain flag; a live one without',
      [
        connect('p'),
        publish('p', 'r/a', 'one', { qos: 1, retain: true }),
        connect('s'),
        subscribe('s', { filter: 'r/#', qos: 1 }),
        publish('p', 'r/a', 'live', { qos: 1 }),
        publish('p', 'r/b', 'live retained', { qos: 1, retain: true }),
      ],
    ),
    sc('replace-and-clear', 'a second retained message replaces the first; an empty one clears it', [
      connect('p'),
      publish('p', 'r/x', 'first', { retain: true }),
      publish('p', 'r/x', 'second', { retain: true }),
      connect('s1'),
      subscribe('s1', 'r/x'),
      publish('p', 'r/x', '', { retain: true }),
      connect('s2'),
      subscribe('s2', 'r/x'),
    ]),
    sc('qos-min', 'a retained message goes at the lower of its QoS and the subscription', [
      connect('p'),
      publish('p', 'q/two', 'q2', { qos: 2, retain: true }),
      publish('p', 'q/zero', 'q0', { qos: 0, retain: true }),
      connect('s0'),
      subscribe('s0', { filter: 'q/#', qos: 0 }),
      connect('s1'),
      subscribe('s1', { filter: 'q/#', qos: 1 }),
      connect('s2'),
      subscribe('s2', { filter: 'q/#', qos: 2 }),
    ]),
    sc('wildcards', "retained messages and '#', '+', and '$' topics", [
      connect('p'),
      publish('p', 'a/b', '1', { retain: true }),
      publish('p', 'a/c/d', '2', { retain: true }),
      publish('p', 'b/x', '3', { retain: true }),
      publish('p', '$x/y', '4', { retain: true }),
      publish('p', 'a', '5', { retain: true }),
      connect('all'),
      subscribe('all', '#'),
      connect('plus'),
      subscribe('plus', 'a/+'),
      connect('deep'),
      subscribe('deep', 'a/#'),
      connect('dollar'),
      subscribe('dollar', '$x/#'),
      connect('first'),
      subscribe('first', '+/#'),
    ]),
    sc('resubscribe-v311', 'subscribing again to the same filter sends the retained message again', [
      connect('p'),
      publish('p', 'again/t', 'kept', { retain: true }),
      connect('s'),
      subscribe('s', 'again/t'),
      subscribe('s', 'again/t'),
      subscribe('s', 'again/#'),
    ]),
    sc('retain-handling-v5', 'retain handling 0, 1 and 2', [
      connect('p'),
      publish('p', 'rh/t', 'kept', { qos: 1, retain: true }),
      connect5('s'),
      subscribe('s', { filter: 'rh/t', qos: 1, rh: 1 }),
      subscribe('s', { filter: 'rh/t', qos: 1, rh: 1 }),
      subscribe('s', { filter: 'rh/+', qos: 1, rh: 2 }),
      subscribe('s', { filter: 'rh/#', qos: 1, rh: 0 }),
      subscribe('s', { filter: 'rh/#', qos: 1, rh: 0 }),
    ]),
    sc('retain-as-published-v5', 'retain as published keeps the flag on live messages', [
      connect5('rap'),
      subscribe('rap', { filter: 'k/t', qos: 1, retainAsPublished: true }),
      connect5('plain'),
      subscribe('plain', { filter: 'k/t', qos: 1 }),
      connect('p'),
      publish('p', 'k/t', 'live retained', { qos: 1, retain: true }),
      publish('p', 'k/t', 'live', { qos: 1 }),
    ]),
    sc('message-expiry-v5', 'a retained message with a message expiry interval is gone after it', [
      connect5('p'),
      publish('p', 'exp/short', 'gone soon', {
        qos: 1,
        retain: true,
        properties: { messageExpiryInterval: 1 },
      }),
      publish('p', 'exp/none', 'stays', { qos: 1, retain: true }),
      elapse(2100),
      connect5('s'),
      subscribe('s', { filter: 'exp/#', qos: 1 }),
    ]),
    sc('properties-v5', 'a retained message keeps its properties', [
      connect5('p'),
      publish('p', 'props/t', '{"v":1}', {
        qos: 1,
        retain: true,
        properties: {
          payloadFormatIndicator: true,
          contentType: 'application/json',
          responseTopic: 'reply/here',
          correlationData: new Uint8Array([1, 2, 3]),
          userProperties: [
            ['a', '1'],
            ['a', '2'],
            ['b', ''],
          ],
        },
      }),
      connect5('s5'),
      subscribe('s5', { filter: 'props/#', qos: 1 }),
      connect('s3'),
      subscribe('s3', { filter: 'props/#', qos: 1 }),
    ]),
    sc(
      'empty-clears-only-retained',
      'an empty retained publish is delivered to live subscribers, then nothing is kept',
      [
        connect('s'),
        subscribe('s', 'e/t'),
        connect('p'),
        publish('p', 'e/t', 'kept', { retain: true }),
        publish('p', 'e/t', '', { retain: true, qos: 1 }),
        connect('late'),
        subscribe('late', 'e/t'),
      ],
    ),
  ],
};
