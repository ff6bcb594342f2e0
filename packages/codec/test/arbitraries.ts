/**
 * fast-check generators of valid packets, per protocol version, in the shape the decoder gives
 * back (MQTT 5 acknowledgements always carry a reason code, subscriptions all their options),
 * so `decode(encode(p))` can be compared with `p` directly.
 */
import fc from 'fast-check';
import type { Packet, Properties, ProtocolVersion, QoS, Subscription } from '../src/index.ts';

const noNul = (s: string) => !s.includes('\u0000');
/** Any string MQTT allows: every code point but U+0000 (no lone surrogates: they have no UTF-8). */
export const mqttString = (maxLength = 12) =>
  fc
    .oneof(
      fc.string({ maxLength }),
      fc.string({ unit: 'binary', maxLength }),
      fc.constantFrom('', 'é', '€', '\u{1f600}', '\uffff', '\u{10ffff}', '\u0001', '\u007f'),
    )
    .filter(noNul);

const levelChar = fc.oneof(
  fc.constantFrom('a', 'b', 'z', '0', '-', '_', ' ', '$', 'é', '€', '\u{1f600}'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);
const level = fc
  .array(levelChar, { maxLength: 6 })
  .map((cs) => cs.join(''))
  .filter((s) => noNul(s) && !s.includes('/') && !s.includes('+') && !s.includes('#'));

export const topicName = fc
  .array(level, { minLength: 1, maxLength: 5 })
  .map((ls) => ls.join('/'))
  .filter((s) => s.length > 0);

export const topicFilter = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
  .filter((s) => s.length > 0 && !s.startsWith('$share/'));

export const bytes = (maxLength = 48) => fc.uint8Array({ maxLength });
const qos = fc.constantFrom<QoS>(0, 1, 2);
const packetId = fc.integer({ min: 1, max: 65535 });
const u16 = fc.integer({ min: 0, max: 65535 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const userProperties = fc.array(fc.tuple(mqttString(6), mqttString(6)), { minLength: 1, maxLength: 4 });

type Gen = { [K in keyof Properties]?: fc.Arbitrary<Properties[K]> };

function props(gens: Gen): fc.Arbitrary<Properties | undefined> {
  return fc
    .record(gens as Record<string, fc.Arbitrary<unknown>>, { requiredKeys: [] })
    .map((p) => (Object.keys(p).length === 0 ? undefined : (p as Properties)));
}

const publishProps: Gen = {
  payloadFormatIndicator: fc.boolean(),
  messageExpiryInterval: u32,
  contentType: mqttString(),
  responseTopic: topicName,
  correlationData: bytes(16),
  subscriptionIdentifiers: fc.array(fc.integer({ min: 1, max: 268_435_455 }), { minLength: 1, maxLength: 3 }),
  topicAlias: fc.integer({ min: 1, max: 65535 }),
  userProperties,
};
const willProps: Gen = {
  payloadFormatIndicator: fc.boolean(),
  messageExpiryInterval: u32,
  contentType: mqttString(),
  responseTopic: topicName,
  correlationData: bytes(16),
  willDelayInterval: u32,
  userProperties,
};
const connectProps: Gen = {
  sessionExpiryInterval: u32,
  authenticationMethod: mqttString(),
  authenticationData: bytes(16),
  requestProblemInformation: fc.boolean(),
  requestResponseInformation: fc.boolean(),
  receiveMaximum: fc.integer({ min: 1, max: 65535 }),
  topicAliasMaximum: u16,
  maximumPacketSize: fc.integer({ min: 1, max: 0xffffffff }),
  userProperties,
};
const connackProps: Gen = {
  sessionExpiryInterval: u32,
  assignedClientIdentifier: mqttString(),
  serverKeepAlive: u16,
  authenticationMethod: mqttString(),
  authenticationData: bytes(16),
  responseInformation: mqttString(),
  serverReference: mqttString(),
  reasonString: mqttString(),
  receiveMaximum: fc.integer({ min: 1, max: 65535 }),
  topicAliasMaximum: u16,
  maximumQoS: fc.constantFrom<0 | 1>(0, 1),
  retainAvailable: fc.boolean(),
  userProperties,
  maximumPacketSize: fc.integer({ min: 1, max: 0xffffffff }),
  wildcardSubscriptionAvailable: fc.boolean(),
  subscriptionIdentifiersAvailable: fc.boolean(),
  sharedSubscriptionAvailable: fc.boolean(),
};
const ackProps: Gen = { reasonString: mqttString(), userProperties };
const disconnectProps: Gen = {
  sessionExpiryInterval: u32,
  serverReference: mqttString(),
  reasonString: mqttString(),
  userProperties,
};
const authProps: Gen = {
  authenticationMethod: mqttString(),
  authenticationData: bytes(16),
  reasonString: mqttString(),
  userProperties,
};

/** Adds `properties` only when generated (the decoder leaves the key out when there are none). */
function withProps<T extends object>(base: T, p: Properties | undefined): T {
  return p === undefined ? base : { ...base, properties: p };
}

const PUBACK_CODES = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES = [0x00, 0x92];
const CONNACK_CODES = [
  0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a,
  0x9b, 0x9c, 0x9d, 0x9f,
];
const SUBACK_CODES = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2];
const UNSUBACK_CODES = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91];
const DISCONNECT_CODES = [
  0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
  0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2,
];
const AUTH_CODES = [0x00, 0x18, 0x19];

export function packetOf(v: ProtocolVersion): fc.Arbitrary<Packet> {
  const v5 = v === 5;
  const p5 = (gens: Gen) => (v5 ? props(gens) : fc.constant(undefined));

  const connect = fc
    .record({
      clientId: mqttString(),
      clean: fc.boolean(),
      keepalive: u16,
      username: fc.option(mqttString(), { nil: undefined }),
      password: fc.option(bytes(16), { nil: undefined }),
      will: fc.option(
        fc.record({
          topic: topicName,
          payload: bytes(),
          qos,
          retain: fc.boolean(),
          properties: p5(willProps),
        }),
        { nil: undefined },
      ),
      properties: p5(connectProps),
    })
    .map((r): Packet => {
      const p: Packet = {
        type: 'connect',
        protocolVersion: v,
        clientId: r.clientId,
        clean: r.clean,
        keepalive: r.keepalive,
      };
      if (r.will) {
        const { properties, ...w } = r.will;
        p.will = withProps(w, properties);
      }
      if (r.username !== undefined) p.username = r.username;
      if (r.password !== undefined && (v5 || r.username !== undefined)) p.password = r.password;
      if (r.properties) p.properties = r.properties;
      return p;
    });

  const connack = v5
    ? fc
        .record({ sp: fc.boolean(), rc: fc.constantFrom(...CONNACK_CODES), properties: props(connackProps) })
        .map(
          (r): Packet =>
            withProps(
              { type: 'connack', sessionPresent: r.sp && r.rc === 0, reasonCode: r.rc },
              r.properties,
            ),
        )
    : fc
        .record({ sp: fc.boolean(), rc: fc.integer({ min: 0, max: 5 }) })
        .map((r): Packet => ({ type: 'connack', sessionPresent: r.sp && r.rc === 0, reasonCode: r.rc }));

  const publish = fc
    .record({
      topic: topicName,
      payload: bytes(),
      qos,
      retain: fc.boolean(),
      dup: fc.boolean(),
      packetId,
      properties: p5(publishProps),
      aliasOnly: fc.boolean(),
    })
    .map((r): Packet => {
      const p: Packet = {
        type: 'publish',
        topic: r.aliasOnly && r.properties?.topicAlias !== undefined ? '' : r.topic,
        payload: r.payload,
        qos: r.qos,
        retain: r.retain,
        dup: r.qos > 0 && r.dup,
      };
      if (r.qos > 0) p.packetId = r.packetId;
      if (r.properties) p.properties = r.properties;
      return p;
    });

  const pubAck = (type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp') =>
    fc
      .record({
        packetId,
        rc: fc.constantFrom(...(type === 'puback' || type === 'pubrec' ? PUBACK_CODES : PUBREL_CODES)),
        properties: p5(ackProps),
      })
      .map(
        (r): Packet =>
          v5
            ? withProps({ type, packetId: r.packetId, reasonCode: r.rc }, r.properties)
            : { type, packetId: r.packetId },
      );

  const subscription: fc.Arbitrary<Subscription> = v5
    ? fc.record({
        topicFilter: topicFilter,
        qos,
        noLocal: fc.boolean(),
        retainAsPublished: fc.boolean(),
        retainHandling: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
      })
    : fc.record({ topicFilter: topicFilter, qos });

  const subscribe = fc
    .record({
      packetId,
      subscriptions: fc.array(subscription, { minLength: 1, maxLength: 4 }),
      properties: p5({ subscriptionIdentifier: fc.integer({ min: 1, max: 268_435_455 }), userProperties }),
    })
    .map(
      (r): Packet =>
        withProps({ type: 'subscribe', packetId: r.packetId, subscriptions: r.subscriptions }, r.properties),
    );

  const suback = fc
    .record({
      packetId,
      reasonCodes: fc.array(fc.constantFrom(...(v5 ? SUBACK_CODES : [0, 1, 2, 0x80])), {
        minLength: 1,
        maxLength: 5,
      }),
      properties: p5(ackProps),
    })
    .map(
      (r): Packet =>
        withProps({ type: 'suback', packetId: r.packetId, reasonCodes: r.reasonCodes }, r.properties),
    );

  const unsubscribe = fc
    .record({
      packetId,
      topicFilters: fc.array(topicFilter, { minLength: 1, maxLength: 4 }),
      properties: p5({ userProperties }),
    })
    .map(
      (r): Packet =>
        withProps({ type: 'unsubscribe', packetId: r.packetId, topicFilters: r.topicFilters }, r.properties),
    );

  const unsuback = fc
    .record({
      packetId,
      reasonCodes: fc.array(fc.constantFrom(...UNSUBACK_CODES), { minLength: 1, maxLength: 5 }),
      properties: p5(ackProps),
    })
    .map(
      (r): Packet =>
        v5
          ? withProps({ type: 'unsuback', packetId: r.packetId, reasonCodes: r.reasonCodes }, r.properties)
          : { type: 'unsuback', packetId: r.packetId },
    );

  const ping = fc.constantFrom<Packet>({ type: 'pingreq' }, { type: 'pingresp' });

  const disconnect = v5
    ? fc
        .record({ rc: fc.constantFrom(...DISCONNECT_CODES), properties: props(disconnectProps) })
        .map((r): Packet => withProps({ type: 'disconnect', reasonCode: r.rc }, r.properties))
    : fc.constant<Packet>({ type: 'disconnect' });

  const all: fc.Arbitrary<Packet>[] = [
    connect,
    connack,
    publish,
    publish,
    pubAck('puback'),
    pubAck('pubrec'),
    pubAck('pubrel'),
    pubAck('pubcomp'),
    subscribe,
    suback,
    unsubscribe,
    unsuback,
    ping,
    disconnect,
  ];
  if (v5)
    all.push(
      fc
        .record({ rc: fc.constantFrom(...AUTH_CODES), properties: props(authProps) })
        .map((r): Packet => withProps({ type: 'auth', reasonCode: r.rc }, r.properties)),
    );
  return fc.oneof(...all);
}

export const version = fc.constantFrom<ProtocolVersion>(3, 4, 5);

/** A version and packets for it (CONNECT carries the same version as the session). */
export const versionAndPackets = (maxLength = 8) =>
  version.chain((v) => fc.tuple(fc.constant(v), fc.array(packetOf(v), { minLength: 1, maxLength })));

export function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}
