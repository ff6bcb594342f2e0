/**
 * Limits from mosquitto.conf: message_size_limit, max_packet_size, max_inflight_messages,
 * max_queued_messages, retain_available, max_keepalive. A group per setting; fresh brokers
 * where queues or retained state would carry over.
 */
import { acks, connect, connect5, disconnect, publish, subscribe } from '../steps.ts';
import type { ConfigGroup, Scenario, Step } from '../types.ts';

const sc = (group: string, id: string, title: string, steps: Step[]): Scenario => ({
  id: `${group}.${id}`,
  title,
  steps,
});

export const messageSizeLimit: ConfigGroup = {
  name: 'message-size-limit',
  conf: 'allow_anonymous true\nmessage_size_limit 100',
  scenarios: ([4, 5] as const).map((v) => {
    const tag = v === 5 ? 'v5' : 'v311';
    const c = v === 5 ? connect5 : connect;
    return sc('message-size-limit', tag, `payloads of 100 and 101 bytes at each QoS (${tag})`, [
      connect5('s'),
      subscribe('s', { filter: `msl${v}/#`, qos: 2 }),
      c('p'),
      publish('p', `msl${v}/ok`, '', { size: 100, qos: 1 }),
      publish('p', `msl${v}/big0`, '', { size: 101, qos: 0 }),
      publish('p', `msl${v}/big1`, '', { size: 101, qos: 1 }),
      publish('p', `msl${v}/big2`, '', { size: 101, qos: 2 }),
      publish('p', `msl${v}/after`, 'still connected?', { qos: 1 }),
    ]);
  }),
};

export const maxPacketSize: ConfigGroup = {
  name: 'max-packet-size',
  conf: 'allow_anonymous true\nmax_packet_size 200',
  scenarios: [
    ...([4, 5] as const).map((v) => {
      const tag = v === 5 ? 'v5' : 'v311';
      const c = v === 5 ? connect5 : connect;
      return sc('max-packet-size', tag, `a packet over max_packet_size (${tag})`, [
        connect5('s'),
        subscribe('s', { filter: `mp${v}/#`, qos: 1 }),
        c('p'),
        publish('p', `mp${v}/ok`, '', { size: 150, qos: 1 }),
        publish('p', `mp${v}/big`, '', { size: 250, qos: 1 }),
      ]);
    }),
    sc('max-packet-size', 'connect-over', 'a CONNECT over max_packet_size', [
      connect5('c', { will: { topic: 'w', payload: 'x'.repeat(300) } }),
    ]),
  ],
};

export const maxInflight: ConfigGroup = {
  name: 'max-inflight',
  conf: 'allow_anonymous true\nmax_inflight_messages 2',
  freshPerScenario: true,
  scenarios: ([4, 5] as const).map((v) => {
    const tag = v === 5 ? 'v5' : 'v311';
    const c = v === 5 ? connect5 : connect;
    return sc(
      'max-inflight',
      tag,
      `max_inflight_messages 2: a subscriber that does not acknowledge (${tag})`,
      [
        c('s'),
        subscribe('s', { filter: 'inf/#', qos: 1 }),
        acks('s', 'hold'),
        connect('p'),
        publish('p', 'inf/1', '1', { qos: 1 }),
        publish('p', 'inf/2', '2', { qos: 1 }),
        publish('p', 'inf/3', '3', { qos: 1 }),
        publish('p', 'inf/4', '4', { qos: 2 }),
        publish('p', 'inf/5', '5', { qos: 0 }),
        acks('s', 'auto'),
      ],
    );
  }),
};

export const maxQueued: ConfigGroup = {
  name: 'max-queued',
  // Mosquitto's max_inflight_messages, given: broker-lite's default is 100 (delivery.inflight-default).
  conf: 'allow_anonymous true\nmax_queued_messages 3\nmax_inflight_messages 20',
  freshPerScenario: true,
  scenarios: [
    sc('max-queued', 'offline', 'max_queued_messages 3: an offline session keeps 3', [
      connect('s', { clean: false }),
      subscribe('s', { filter: 'mq/#', qos: 1 }),
      disconnect('s'),
      connect('p'),
      publish('p', 'mq/t', '1', { qos: 1 }),
      publish('p', 'mq/t', '2', { qos: 1 }),
      publish('p', 'mq/t', '3', { qos: 1 }),
      publish('p', 'mq/t', '4', { qos: 1 }),
      publish('p', 'mq/t', '5', { qos: 1 }),
      connect('s', { clean: false }),
    ]),
    sc(
      'max-queued',
      'online',
      'max_queued_messages 3 behind a full in-flight window of a subscriber that does not acknowledge',
      [
        connect('s'),
        subscribe('s', { filter: 'mq/#', qos: 1 }),
        acks('s', 'hold'),
        connect('p'),
        // broker-lite stops reading the publisher at the bound (differences.ts): 1 s tells.
        publish('p', 'mq/t', '', { qos: 1, repeat: 30, ackTimeoutMs: 1000 }),
        acks('s', 'auto'),
      ],
    ),
  ],
};

export const retainUnavailable: ConfigGroup = {
  name: 'retain-unavailable',
  conf: 'allow_anonymous true\nretain_available false',
  scenarios: [
    sc('retain-unavailable', 'connack-v5', 'CONNACK says retain is not available', [connect5('c')]),
    ...([4, 5] as const).map((v) => {
      const tag = v === 5 ? 'v5' : 'v311';
      const c = v === 5 ? connect5 : connect;
      return sc('retain-unavailable', `publish-${tag}`, `a retained PUBLISH (${tag})`, [
        connect('s'),
        subscribe('s', 'ru/#'),
        c('p'),
        publish('p', `ru/${tag}`, 'retained', { qos: 1, retain: true }),
      ]);
    }),
    ...([4, 5] as const).map((v) => {
      const tag = v === 5 ? 'v5' : 'v311';
      const c = v === 5 ? connect5 : connect;
      return sc('retain-unavailable', `will-${tag}`, `a CONNECT with a retained will (${tag})`, [
        c('w', { will: { topic: 'ru/will', payload: 'x', retain: true } }),
      ]);
    }),
  ],
};

export const maxKeepalive: ConfigGroup = {
  name: 'max-keepalive',
  conf: 'allow_anonymous true\nmax_keepalive 30',
  scenarios: [
    sc('max-keepalive', 'v5', 'a keepalive over max_keepalive, and 0 (5.0)', [
      connect5('over', { keepalive: 60 }),
      connect5('zero', { keepalive: 0 }),
      connect5('under', { keepalive: 20 }),
    ]),
    sc('max-keepalive', 'v311', 'a keepalive over max_keepalive, and 0 (3.1.1)', [
      connect('over', { keepalive: 60 }),
      connect('zero', { keepalive: 0 }),
      connect('under', { keepalive: 20 }),
    ]),
  ],
};
