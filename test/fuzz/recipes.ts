/**
 * The fuzz model's data: what a case is (several connections, each a sequence of steps) and
 * fast-check generators for it. A step holds a recipe, not bytes: recipes are small, print
 * readably in a counterexample and shrink well (a 2 MB packet is `{ k: 'manyProps', count }`,
 * not two million numbers). `wire.ts` turns a recipe into the bytes sent.
 */
import type { Packet, Properties, ProtocolVersion, QoS, Subscription } from '@mqtt-edge/codec';
import fc from 'fast-check';

/** Who a CONNECT claims to be; `wire.ts` fills in the real passwords of the run. */
export type Who =
  | 'alice'
  | 'bob'
  | 'alice-bad-password'
  | 'alice-no-password'
  | 'unknown-user'
  | 'anonymous'
  | 'probe-bad-password';

export interface ConnectRecipe {
  k: 'connect';
  who: Who;
  clientId: string;
  clean: boolean;
  keepalive: number;
  will?: { topic: string; payload: Uint8Array; qos: QoS; retain: boolean; properties?: Properties };
  properties?: Properties;
  /** Encode with this protocol level instead of the connection's. */
  version?: ProtocolVersion;
}

/** Byte-level damage to an encoded packet. Positions are per mille of the packet's length. */
export type Mutation =
  | { m: 'flip'; at: number; bit: number }
  | { m: 'truncate'; keep: number }
  /** The remaining length lies: bigger or smaller than the body, the largest value, 5 bytes, padded. */
  | { m: 'length'; lie: 'grow' | 'shrink' | 'max' | 'overlong' | 'nonMinimal'; by: number }
  /** The fixed header's flag nibble, or its type nibble. */
  | { m: 'flags'; nibble: number }
  | { m: 'type'; type: number }
  /** An inner length or id: two bytes overwritten. */
  | { m: 'u16'; at: number; value: number }
  | { m: 'append'; bytes: Uint8Array };

/** A property written raw (duplicates and wrong packets are the point). */
export interface RawProperty {
  id: number;
  /** The value as a number (byte, u16, u32, varint) or text (string, binary, pair key=value). */
  value: number | string;
}

export type PacketRecipe =
  | ConnectRecipe
  | { k: 'packet'; p: Packet }
  | { k: 'mutated'; base: ConnectRecipe | { k: 'packet'; p: Packet }; muts: Mutation[] }
  /** An MQTT 5 packet with `count` copies of one property (user properties: empty pairs). */
  | {
      k: 'manyProps';
      in: 'connect' | 'publish' | 'subscribe' | 'puback' | 'disconnect';
      prop: 'user' | 'userLong' | 'subscriptionId' | 'correlation';
      count: number;
      who: Who;
    }
  /** An MQTT 5 packet whose property block holds `props` as given (duplicates, wrong ids). */
  | { k: 'rawProps'; in: 'connect' | 'publish' | 'subscribe' | 'puback'; props: RawProperty[]; who: Who }
  /** Topics with many levels: a PUBLISH, a SUBSCRIBE or UNSUBSCRIBE of `filters` filters, a will. */
  | { k: 'deepTopic'; in: 'publish' | 'subscribe' | 'unsubscribe' | 'will'; levels: number; filters: number }
  /** A QoS 0/1 PUBLISH (never retained) with a payload of `bytes`. */
  | { k: 'bigPublish'; bytes: number; qos: QoS; topic: string }
  | { k: 'garbage'; bytes: Uint8Array }
  /**
   * `count` valid packets in one write: QoS 1 or QoS 2 PUBLISHes (no PUBREL) past the receive
   * maximum, SUBSCRIBEs of distinct filters, or shared-subscription groups made and dropped.
   */
  | { k: 'burst'; what: 'publish1' | 'publish2' | 'subscribe' | 'sharedChurn'; count: number }
  /** A fixed header claiming `claim` bytes followed by `send` bytes of filler. */
  | { k: 'claim'; first: number; claim: number; send: number };

/** How a packet's bytes go out: at once, in a few writes, or trickled. */
export type Delivery =
  | { d: 'whole' }
  | { d: 'split'; parts: number }
  /** The first `chunks` pieces of `size` bytes, `gapMs` apart; the rest at once. */
  | { d: 'trickle'; size: number; gapMs: number; chunks: number };

export type Step =
  | { s: 'send'; pkt: PacketRecipe; how: Delivery }
  | { s: 'wait'; ms: number }
  /** Wait (bounded) for the broker's CONNACK or the close. */
  | { s: 'connack' };

export type End = 'end' | 'destroy' | 'reset' | 'disconnect';

/** An MQTT connection over TCP or a WebSocket client (the `ws` package). */
export interface MqttConnPlan {
  via: 'tcp' | 'ws';
  version: ProtocolVersion;
  steps: Step[];
  end: End;
  /** Answer the broker's QoS 1/2 PUBLISH and PUBREL as a client should, so flows complete. */
  autoAck: boolean;
}

/** A raw TCP connection to the WebSocket listener: an HTTP upgrade, then hand-made frames. */
export interface RawWsPlan {
  via: 'ws-raw';
  request: 'valid' | 'no-subprotocol' | 'bad-version' | 'huge-header' | 'garbage' | 'no-end';
  how: Delivery;
  frames: WsFrameRecipe[];
  end: End;
}

export interface WsFrameRecipe {
  opcode: number;
  masked: boolean;
  fin: boolean;
  /** MQTT bytes (a recipe, for MQTT 3.1.1) or `fill` filler bytes. */
  payload: PacketRecipe | { fill: number };
  /** Length announced beyond what is sent (the rest never comes). */
  extraClaim: number;
}

/**
 * A login flood: `waves` times, `size` TCP connections at once each send a CONNECT with a bad
 * login and close right away (the broker still owes each one a password check).
 */
export interface FloodPlan {
  via: 'flood';
  waves: number;
  size: number;
  who: Who;
  version: ProtocolVersion;
}

export type ConnPlan = MqttConnPlan | RawWsPlan | FloodPlan;

export interface FuzzCase {
  conns: ConnPlan[];
  /** During the case: kill -9, restart, check that every acknowledged message survived. */
  crash: boolean;
}

// ------------------------------------------------------------------------------- generators

/** Client ids the fuzz may use: never the probe's or the keeper's (see fuzz.ts). */
export const CLIENT_IDS = ['fz1', 'fz2', 'fz3', '', 'fz+x', 'fz#', 'alice', 'bob', 'fz/é'] as const;

const level = fc.constantFrom('a', 'b', 'c', '1', '', 'x y', 'é', '\u{1f600}');
// alice is who most fuzz connections log in as: her topics are the ones that get through.
const prefix = fc.constantFrom(
  'alice',
  'alice',
  'alice',
  'alice',
  'alice/secret',
  'bob',
  'public',
  'users/alice/inbox',
  'users/bob/outbox/x',
  'devices/fz1',
  'devices/fz2',
  'keep',
  'probe',
  '$SYS/broker',
  'secret',
  'a',
);

/** A topic name (no wildcards) from a small pool, so retained messages overwrite each other. */
export const topicName = fc
  .tuple(prefix, fc.array(level, { maxLength: 3 }))
  .map(([p, ls]) => [p, ...ls].join('/'));

export const topicFilter = fc
  .tuple(
    fc.oneof(
      { arbitrary: prefix, weight: 4 },
      { arbitrary: fc.constantFrom('+', '#', '$share/g/alice', '$share/g/+', '$SYS/#'), weight: 1 },
    ),
    fc.array(fc.oneof(level, fc.constant('+')), { maxLength: 3 }),
    fc.boolean(),
  )
  .map(([p, ls, hash]) => {
    const parts = [p, ...ls];
    if (p === '#') return '#';
    if (p === '$SYS/#') return p;
    return (hash ? [...parts, '#'] : parts).join('/');
  });

const qos = fc.constantFrom<QoS>(0, 1, 2);
const packetId = fc.oneof(fc.constantFrom(1, 2, 3), fc.integer({ min: 1, max: 65535 }));
const smallBytes = fc.uint8Array({ maxLength: 24 });
const shortText = fc.oneof(fc.constantFrom('', 'k', 'v', 'é', 'text/plain'), fc.string({ maxLength: 8 }));
const noNul = (s: string) => !s.includes('\u0000');
const userProperties = fc.array(fc.tuple(shortText, shortText), { minLength: 1, maxLength: 3 });

function props(gens: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Properties | undefined> {
  return fc.option(
    fc.record(gens, { requiredKeys: [] }).map((p) => p as Properties),
    { nil: undefined, freq: 2 },
  );
}

const publishProps = props({
  payloadFormatIndicator: fc.boolean(),
  messageExpiryInterval: fc.constantFrom(0, 1, 60, 0xffffffff),
  contentType: shortText.filter(noNul),
  responseTopic: topicName,
  correlationData: smallBytes,
  topicAlias: fc.integer({ min: 1, max: 12 }),
  userProperties: userProperties.filter((l) => l.every(([k, v]) => noNul(k) && noNul(v))),
});

const connectProps = props({
  sessionExpiryInterval: fc.constantFrom(0, 5, 3600, 0xffffffff),
  receiveMaximum: fc.constantFrom(1, 2, 5, 65535),
  maximumPacketSize: fc.constantFrom(20, 64, 256, 1_000_000, 0xffffffff),
  topicAliasMaximum: fc.constantFrom(0, 1, 10),
  requestProblemInformation: fc.boolean(),
  requestResponseInformation: fc.boolean(),
  authenticationMethod: fc.constantFrom('SCRAM-SHA-1', ''),
  userProperties: userProperties.filter((l) => l.every(([k, v]) => noNul(k) && noNul(v))),
});

export const who = fc.constantFrom<Who>(
  'alice',
  'alice',
  'bob',
  'alice-bad-password',
  'alice-no-password',
  'unknown-user',
  'anonymous',
  'probe-bad-password',
);

const connectRecipe = (good: boolean): fc.Arbitrary<ConnectRecipe> =>
  fc
    .record(
      {
        k: fc.constant<'connect'>('connect'),
        who: good ? fc.constantFrom<Who>('alice', 'bob') : who,
        clientId: fc.constantFrom(...CLIENT_IDS),
        clean: fc.boolean(),
        keepalive: fc.constantFrom(0, 1, 60, 65535),
        will: fc.record(
          {
            topic: topicName,
            payload: smallBytes,
            qos,
            retain: fc.boolean(),
            properties: props({
              willDelayInterval: fc.constantFrom(0, 1, 3600),
              messageExpiryInterval: fc.constantFrom(0, 1, 3600),
              contentType: fc.constantFrom('text/plain', ''),
            }),
          },
          { requiredKeys: ['topic', 'payload', 'qos', 'retain'] },
        ),
        properties: connectProps,
        version: fc.constantFrom<ProtocolVersion>(3, 4, 5),
      },
      { requiredKeys: ['k', 'who', 'clientId', 'clean', 'keepalive'] },
    )
    .map((r) => r as ConnectRecipe);

const publish: fc.Arbitrary<Packet> = fc
  .record({
    topic: topicName,
    payload: smallBytes,
    qos,
    retain: fc.boolean(),
    dup: fc.boolean(),
    packetId,
    properties: publishProps,
    emptyTopic: fc.boolean(),
  })
  .map(({ emptyTopic, ...p }) => ({
    type: 'publish' as const,
    topic: emptyTopic && p.properties?.topicAlias !== undefined ? '' : p.topic,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    dup: p.dup && p.qos > 0,
    packetId: p.qos > 0 ? p.packetId : undefined,
    properties: p.properties,
  }));

const subscription: fc.Arbitrary<Subscription> = fc
  .record({
    topicFilter,
    qos,
    noLocal: fc.boolean(),
    retainAsPublished: fc.boolean(),
    retainHandling: fc.constantFrom<0 | 1 | 2>(0, 1, 2),
  })
  .map((s) => ({ ...s, noLocal: s.noLocal && !s.topicFilter.startsWith('$share/') }));

const ackType = fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp') as fc.Arbitrary<
  'puback' | 'pubrec' | 'pubrel' | 'pubcomp'
>;

const subscribe: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant<'subscribe'>('subscribe'),
  packetId,
  subscriptions: fc.array(subscription, { minLength: 1, maxLength: 3 }),
  properties: props({ subscriptionIdentifier: fc.integer({ min: 1, max: 268_435_455 }) }),
});

/** Packets a well-behaved client sends after CONNECT: none of them ends the connection. */
export const benignPacket: fc.Arbitrary<Packet> = fc.oneof(
  {
    arbitrary: publish.filter((p) => p.type !== 'publish' || (p.properties?.topicAlias ?? 0) <= 10),
    weight: 6,
  },
  { arbitrary: subscribe, weight: 3 },
  {
    arbitrary: fc.record({
      type: fc.constant<'unsubscribe'>('unsubscribe'),
      packetId,
      topicFilters: fc.array(topicFilter, { minLength: 1, maxLength: 3 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc
      .record({ type: ackType, packetId, failure: fc.boolean() })
      .map(({ type, packetId, failure }) => {
        // Codes each ack may carry: PUBREL and PUBCOMP know only 0x92 as a failure.
        const bad = type === 'pubrel' || type === 'pubcomp' ? 0x92 : 0x80;
        return { type, packetId, reasonCode: failure ? bad : 0 };
      }),
    weight: 2,
  },
  { arbitrary: fc.constant<Packet>({ type: 'pingreq' }), weight: 1 },
);

/**
 * A valid packet of any kind a client sends (its publish topic aliases go up to 12 where the
 * broker allows 10), and a few a client must not send.
 */
export const clientPacket: fc.Arbitrary<Packet> = fc.oneof(
  { arbitrary: benignPacket, weight: 13 },
  { arbitrary: publish, weight: 2 },
  {
    arbitrary: fc.record(
      {
        type: fc.constant<'disconnect'>('disconnect'),
        reasonCode: fc.constantFrom(0, 0x04, 0x80),
        properties: props({ sessionExpiryInterval: fc.constantFrom(0, 10, 0xffffffff) }),
      },
      { requiredKeys: ['type'] },
    ),
    weight: 1,
  },
  {
    arbitrary: fc.record({ type: fc.constant<'auth'>('auth'), reasonCode: fc.constantFrom(0, 0x18, 0x19) }),
    weight: 1,
  },
  // Server-to-client packets sent by a client.
  {
    arbitrary: fc.constantFrom<Packet>(
      { type: 'connack', sessionPresent: false, reasonCode: 0 },
      { type: 'suback', packetId: 1, reasonCodes: [0] },
      { type: 'pingresp' },
    ),
    weight: 1,
  },
);

const per = fc.integer({ min: 0, max: 999 });
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ m: fc.constant<'flip'>('flip'), at: per, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ m: fc.constant<'truncate'>('truncate'), keep: per }),
  fc.record({
    m: fc.constant<'length'>('length'),
    lie: fc.constantFrom<'grow' | 'shrink' | 'max' | 'overlong' | 'nonMinimal'>(
      'grow',
      'shrink',
      'max',
      'overlong',
      'nonMinimal',
    ),
    by: fc.integer({ min: 1, max: 70_000 }),
  }),
  fc.record({ m: fc.constant<'flags'>('flags'), nibble: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ m: fc.constant<'type'>('type'), type: fc.integer({ min: 0, max: 15 }) }),
  fc.record({
    m: fc.constant<'u16'>('u16'),
    at: per,
    value: fc.constantFrom(0, 1, 0x7fff, 0xffff),
  }),
  fc.record({ m: fc.constant<'append'>('append'), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
);

/** Property ids with a value of their wire type, for raw property blocks. */
const rawProperty: fc.Arbitrary<RawProperty> = fc.oneof(
  fc.record({ id: fc.constantFrom(0x01, 0x17, 0x19, 0x24, 0x25), value: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ id: fc.constantFrom(0x13, 0x21, 0x22, 0x23), value: fc.constantFrom(0, 1, 10, 65535) }),
  fc.record({ id: fc.constantFrom(0x02, 0x11, 0x18, 0x27), value: fc.constantFrom(0, 1, 0xffffffff) }),
  fc.record({ id: fc.constant(0x0b), value: fc.constantFrom(0, 1, 268_435_455) }),
  fc.record({
    id: fc.constantFrom(0x03, 0x08, 0x12, 0x15, 0x1f),
    value: fc.constantFrom('', 'a', 'a/+', '\u{1f600}'),
  }),
  fc.record({ id: fc.constantFrom(0x09, 0x16), value: fc.constantFrom('', 'xyz') }),
  fc.record({ id: fc.constant(0x26), value: fc.constantFrom('=', 'k=v') }),
  // Not a property id at all.
  fc.record({ id: fc.constantFrom(0x00, 0x04, 0x2b, 0x7f, 0x80), value: fc.constant(0) }),
);

/** Duplicates are what this is about: a property, then the same one again, maybe more. */
const rawProps = fc
  .tuple(rawProperty, fc.array(rawProperty, { maxLength: 3 }), fc.integer({ min: 1, max: 3 }))
  .map(([first, rest, copies]) => [...Array<RawProperty>(copies + 1).fill(first), ...rest]);

/**
 * Counts up to the attacker's sizes: 3.3 million empty user properties are the 16 MB CONNECT
 * of issue 12 point 2 (at most 23 MB of `userLong`).
 */
const count = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 100 }), weight: 2 },
  { arbitrary: fc.integer({ min: 1_000, max: 400_000 }), weight: 2 },
  { arbitrary: fc.integer({ min: 400_000, max: 3_300_000 }), weight: 1 },
);

/** A recipe of kind `k`: the fields' generators, with `k` fixed. */
function kind<const K extends string, T>(
  k: K,
  fields: { [F in keyof T]: fc.Arbitrary<T[F]> },
): fc.Arbitrary<{ k: K } & T> {
  return fc.record({ k: fc.constant(k), ...fields } as Record<string, fc.Arbitrary<unknown>>) as fc.Arbitrary<
    { k: K } & T
  >;
}

export const packetRecipe: fc.Arbitrary<PacketRecipe> = fc.oneof(
  { arbitrary: clientPacket.map((p) => ({ k: 'packet' as const, p })), weight: 10 },
  {
    arbitrary: kind('mutated', {
      base: fc.oneof(
        clientPacket.map((p) => ({ k: 'packet' as const, p })),
        connectRecipe(false),
      ),
      muts: fc.array(mutation, { minLength: 1, maxLength: 3 }),
    }),
    weight: 6,
  },
  { arbitrary: connectRecipe(false), weight: 1 },
  {
    arbitrary: kind('manyProps', {
      in: fc.constantFrom('connect', 'publish', 'subscribe', 'puback', 'disconnect'),
      prop: fc.constantFrom('user', 'user', 'userLong', 'subscriptionId', 'correlation'),
      count,
      who,
    }),
    weight: 2,
  },
  {
    arbitrary: kind('rawProps', {
      in: fc.constantFrom('connect', 'publish', 'subscribe', 'puback'),
      props: rawProps,
      who,
    }),
    weight: 2,
  },
  {
    arbitrary: kind('deepTopic', {
      in: fc.constantFrom('publish', 'subscribe', 'unsubscribe', 'will'),
      levels: fc.oneof(fc.integer({ min: 2, max: 300 }), fc.integer({ min: 1_000, max: 32_000 })),
      filters: fc.integer({ min: 1, max: 16 }),
    }),
    weight: 2,
  },
  {
    arbitrary: kind('bigPublish', {
      bytes: fc.integer({ min: 10_000, max: 2_000_000 }),
      qos: fc.constantFrom<QoS>(0, 1),
      topic: topicName,
    }),
    weight: 1,
  },
  { arbitrary: kind('garbage', { bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }), weight: 1 },
  {
    arbitrary: kind('burst', {
      what: fc.constantFrom('publish1', 'publish2', 'subscribe', 'sharedChurn'),
      count: fc.oneof(fc.integer({ min: 2, max: 100 }), fc.integer({ min: 1_000, max: 70_000 })),
    }),
    weight: 1,
  },
  {
    arbitrary: kind('claim', {
      first: fc.constantFrom(0x10, 0x30, 0x32, 0x82, 0xf0),
      claim: fc.constantFrom(100_000, 10_000_000, 268_435_455),
      send: fc.integer({ min: 0, max: 2_000_000 }),
    }),
    weight: 1,
  },
);

export const delivery: fc.Arbitrary<Delivery> = fc.oneof(
  { arbitrary: fc.constant<Delivery>({ d: 'whole' }), weight: 6 },
  {
    arbitrary: fc.record({ d: fc.constant<'split'>('split'), parts: fc.integer({ min: 2, max: 8 }) }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      d: fc.constant<'trickle'>('trickle'),
      size: fc.integer({ min: 1, max: 16 }),
      gapMs: fc.integer({ min: 0, max: 10 }),
      chunks: fc.integer({ min: 1, max: 40 }),
    }),
    weight: 1,
  },
);

const sendStep: fc.Arbitrary<Step> = fc.record({
  s: fc.constant<'send'>('send'),
  pkt: packetRecipe,
  how: delivery,
});
const step: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: sendStep, weight: 8 },
  {
    arbitrary: fc.record({ s: fc.constant<'wait'>('wait'), ms: fc.integer({ min: 0, max: 50 }) }),
    weight: 1,
  },
  { arbitrary: fc.constant<Step>({ s: 'connack' }), weight: 1 },
);

const end = fc.constantFrom<End>('end', 'destroy', 'reset', 'disconnect');

/** Most connections log in first (so later packets reach the session); some do not. */
const opening: fc.Arbitrary<Step[]> = fc.oneof(
  {
    arbitrary: fc
      .tuple(connectRecipe(true), delivery, fc.boolean())
      .map(([c, how, wait]): Step[] => [
        { s: 'send', pkt: c, how },
        ...(wait ? [{ s: 'connack' } as Step] : []),
      ]),
    weight: 6,
  },
  {
    arbitrary: fc
      .tuple(connectRecipe(false), delivery)
      .map(([c, how]): Step[] => [{ s: 'send', pkt: c, how }, { s: 'connack' }]),
    weight: 2,
  },
  // Before any login: the attacker's sizes where they cost the most (issue 12 point 2).
  {
    arbitrary: fc
      .tuple(
        fc.oneof(
          kind('manyProps', {
            in: fc.constant('connect'),
            prop: fc.constantFrom('user', 'userLong'),
            count,
            who,
          }),
          kind('claim', {
            first: fc.constant(0x10),
            claim: fc.constantFrom(10_000_000, 268_435_455),
            send: fc.integer({ min: 0, max: 16_000_000 }),
          }),
        ),
        delivery,
      )
      .map(([pkt, how]): Step[] => [{ s: 'send', pkt, how }, { s: 'connack' }]),
    weight: 1,
  },
  { arbitrary: fc.constant<Step[]>([]), weight: 1 },
);

/** Benign packets only, so that a connection lives long enough to reach deeper states. */
const validStep: fc.Arbitrary<Step> = fc.oneof(
  {
    arbitrary: fc.record({
      s: fc.constant<'send'>('send'),
      pkt: benignPacket.map((p) => ({ k: 'packet' as const, p })),
      how: delivery,
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({ s: fc.constant<'wait'>('wait'), ms: fc.integer({ min: 0, max: 50 }) }),
    weight: 1,
  },
);

export const mqttConn: fc.Arbitrary<MqttConnPlan> = fc.record({
  via: fc.constantFrom<'tcp' | 'ws'>('tcp', 'tcp', 'ws'),
  version: fc.constantFrom<ProtocolVersion>(3, 4, 4, 5, 5, 5),
  steps: fc
    .tuple(
      opening,
      fc.oneof(
        { arbitrary: fc.array(step, { maxLength: 10 }), weight: 1 },
        // A subscriber that stays a while, reading: deliveries to check against the ACL.
        {
          arbitrary: fc
            .tuple(
              fc.array(subscribe, { minLength: 1, maxLength: 3 }),
              fc.integer({ min: 100, max: 400 }),
              delivery,
            )
            .map(([subs, ms, how]): Step[] => [
              ...subs.map((p): Step => ({ s: 'send', pkt: { k: 'packet', p }, how })),
              { s: 'wait', ms },
            ]),
          weight: 1,
        },
        // A well-behaved start, then maybe one hostile step.
        {
          arbitrary: fc
            .tuple(fc.array(validStep, { maxLength: 16 }), fc.option(step, { nil: undefined }))
            .map(([ok, last]) => (last === undefined ? ok : [...ok, last])),
          weight: 1,
        },
      ),
    )
    .map(([o, rest]) => [...o, ...rest]),
  end,
  autoAck: fc.boolean(),
});

const wsFrame: fc.Arbitrary<WsFrameRecipe> = fc.record({
  opcode: fc.constantFrom(2, 2, 2, 1, 0, 8, 9, 3),
  masked: fc.oneof({ arbitrary: fc.constant(true), weight: 5 }, { arbitrary: fc.constant(false), weight: 1 }),
  fin: fc.oneof({ arbitrary: fc.constant(true), weight: 5 }, { arbitrary: fc.constant(false), weight: 1 }),
  payload: fc.oneof(
    { arbitrary: packetRecipe, weight: 3 },
    { arbitrary: connectRecipe(true), weight: 2 },
    { arbitrary: fc.record({ fill: fc.integer({ min: 0, max: 2_000_000 }) }), weight: 2 },
    // Issue 12 point 4's size: a 60 MB frame before CONNECT.
    { arbitrary: fc.record({ fill: fc.integer({ min: 2_000_000, max: 64_000_000 }) }), weight: 1 },
  ),
  extraClaim: fc.oneof(
    { arbitrary: fc.constant(0), weight: 5 },
    { arbitrary: fc.constantFrom(1, 1_000, 60_000_000), weight: 1 },
  ),
});

export const rawWsConn: fc.Arbitrary<RawWsPlan> = fc.record({
  via: fc.constant<'ws-raw'>('ws-raw'),
  request: fc.constantFrom<RawWsPlan['request']>(
    'valid',
    'valid',
    'valid',
    'no-subprotocol',
    'bad-version',
    'huge-header',
    'garbage',
    'no-end',
  ),
  how: delivery,
  frames: fc.array(wsFrame, { maxLength: 4 }),
  end,
});

export const floodConn: fc.Arbitrary<FloodPlan> = fc.record({
  via: fc.constant<'flood'>('flood'),
  waves: fc.integer({ min: 1, max: 10 }),
  size: fc.integer({ min: 10, max: 400 }),
  who: fc.constantFrom<Who>('alice-bad-password', 'unknown-user', 'probe-bad-password'),
  version: fc.constantFrom<ProtocolVersion>(4, 5),
});

export const connPlan: fc.Arbitrary<ConnPlan> = fc.oneof(
  { arbitrary: mqttConn, weight: 10 },
  { arbitrary: rawWsConn, weight: 2 },
  { arbitrary: floodConn, weight: 1 },
);

/**
 * A case: 1-4 connection plans at once; in about one case in `crashEvery` the broker is
 * killed (-9) while they run, as soon as the durability check's messages are acknowledged.
 */
export function fuzzCase(crashEvery: number): fc.Arbitrary<FuzzCase> {
  return fc.record({
    conns: fc.array(connPlan, { minLength: 1, maxLength: 4 }),
    // oneof shrinks towards its first arbitrary: a counterexample keeps the crash only if needed.
    crash: fc.oneof(
      { arbitrary: fc.constant(false), weight: Math.max(1, crashEvery - 1) },
      { arbitrary: fc.constant(true), weight: 1 },
    ),
  });
}
