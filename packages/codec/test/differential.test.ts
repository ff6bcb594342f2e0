/**
 * Differential tests against mqtt-packet on valid packets of every type: mqtt-packet parses
 * what we write into the same packet, and we parse what mqtt-packet writes into the same packet.
 * Field names are mapped (messageId/packetId, granted/reasonCodes, ...). User properties use
 * unique keys here, because mqtt-packet keeps them in an object (order and duplicates lost).
 */
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { decode, encode, type Packet, type Properties, type ProtocolVersion } from '../src/index.ts';
import { packetOf } from './arbitraries.ts';

type Loose = Record<string, unknown>;

function theirProps(p: Properties | undefined): Loose | undefined {
  if (p === undefined) return undefined;
  const out: Loose = {};
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined) continue;
    if (k === 'userProperties') out.userProperties = Object.fromEntries(v as Array<[string, string]>);
    else if (k === 'subscriptionIdentifiers') {
      const ids = v as number[];
      out.subscriptionIdentifier = ids.length === 1 ? ids[0] : ids;
    } else if (v instanceof Uint8Array) out[k] = Buffer.from(v);
    else out[k] = v;
  }
  return out;
}

/** Our packet in mqtt-packet's shape. */
function toTheirs(p: Packet, v: ProtocolVersion): Loose {
  const withProps = (o: Loose, props: Properties | undefined) =>
    props ? { ...o, properties: theirProps(props) } : o;
  switch (p.type) {
    case 'connect': {
      const o: Loose = {
        cmd: 'connect',
        protocolId: p.protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
        protocolVersion: p.protocolVersion,
        clientId: p.clientId,
        clean: p.clean,
        keepalive: p.keepalive,
      };
      if (p.username !== undefined) o.username = p.username;
      if (p.password !== undefined) o.password = Buffer.from(p.password);
      if (p.will)
        o.will = withProps(
          {
            topic: p.will.topic,
            payload: Buffer.from(p.will.payload),
            qos: p.will.qos,
            retain: p.will.retain,
          },
          p.will.properties,
        );
      return withProps(o, p.properties);
    }
    case 'connack':
      return withProps(
        v === 5
          ? { cmd: 'connack', sessionPresent: p.sessionPresent, reasonCode: p.reasonCode }
          : { cmd: 'connack', sessionPresent: p.sessionPresent, returnCode: p.reasonCode },
        p.properties,
      );
    case 'publish': {
      const o: Loose = {
        cmd: 'publish',
        topic: p.topic,
        payload: Buffer.from(p.payload),
        qos: p.qos,
        retain: p.retain,
        dup: p.dup,
      };
      if (p.packetId !== undefined) o.messageId = p.packetId;
      return withProps(o, p.properties);
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return withProps(
        v === 5
          ? { cmd: p.type, messageId: p.packetId, reasonCode: p.reasonCode }
          : { cmd: p.type, messageId: p.packetId },
        p.properties,
      );
    case 'subscribe':
      return withProps(
        {
          cmd: 'subscribe',
          messageId: p.packetId,
          subscriptions: p.subscriptions.map((s) =>
            v === 5
              ? {
                  topic: s.topicFilter,
                  qos: s.qos,
                  nl: s.noLocal,
                  rap: s.retainAsPublished,
                  rh: s.retainHandling,
                }
              : { topic: s.topicFilter, qos: s.qos },
          ),
        },
        p.properties,
      );
    case 'suback':
      return withProps({ cmd: 'suback', messageId: p.packetId, granted: p.reasonCodes }, p.properties);
    case 'unsubscribe':
      return withProps(
        { cmd: 'unsubscribe', messageId: p.packetId, unsubscriptions: p.topicFilters },
        p.properties,
      );
    case 'unsuback':
      return withProps(
        v === 5
          ? { cmd: 'unsuback', messageId: p.packetId, granted: p.reasonCodes }
          : { cmd: 'unsuback', messageId: p.packetId },
        p.properties,
      );
    case 'pingreq':
    case 'pingresp':
      return { cmd: p.type };
    case 'disconnect':
    case 'auth':
      return withProps(v === 5 ? { cmd: p.type, reasonCode: p.reasonCode } : { cmd: p.type }, p.properties);
  }
}

function parseTheirs(bytes: Uint8Array, v: ProtocolVersion): Loose[] {
  const parser = mqttPacket.parser({ protocolVersion: v });
  const out: Loose[] = [];
  parser.on('packet', (p) => out.push(p as unknown as Loose));
  parser.on('error', (e) => {
    throw e;
  });
  parser.parse(Buffer.from(bytes));
  return out;
}

function sortUserProperties(p: Packet): Packet {
  const sortProps = (props: Properties | undefined) =>
    props?.userProperties ? { ...props, userProperties: [...props.userProperties].sort() } : props;
  const copy = { ...p } as Packet & { properties?: Properties };
  if (copy.properties) copy.properties = sortProps(copy.properties);
  if (copy.type === 'connect' && copy.will?.properties)
    copy.will = { ...copy.will, properties: sortProps(copy.will.properties) };
  return copy;
}

function uniqueUserKeys(p: Packet): boolean {
  const lists: Array<Properties | undefined> = [
    (p as { properties?: Properties }).properties,
    p.type === 'connect' ? p.will?.properties : undefined,
  ];
  return lists.every((props) => {
    const up = props?.userProperties;
    return up === undefined || new Set(up.map(([k]) => k)).size === up.length;
  });
}

/**
 * Packets mqtt-packet handles: unique user property keys; no empty 5.0 SUBSCRIBE property
 * shortcut issues; CONNECT of 3.1 through its own protocolId.
 */
const comparable = (v: ProtocolVersion) => packetOf(v).filter((p) => uniqueUserKeys(p));

describe('differential against mqtt-packet', () => {
  for (const v of [3, 4, 5] as const) {
    it(`MQTT ${v === 3 ? '3.1' : v === 4 ? '3.1.1' : '5.0'}: mqtt-packet parses our bytes into the same packet`, () => {
      fc.assert(
        fc.property(comparable(v), (p) => {
          const parsed = parseTheirs(encode(p, v), v);
          expect(parsed.length).toBe(1);
          expect(parsed[0]).toMatchObject(toTheirs(p, v));
        }),
        { numRuns: 300 },
      );
    });

    it(`MQTT ${v === 3 ? '3.1' : v === 4 ? '3.1.1' : '5.0'}: we parse mqtt-packet's bytes into the same packet`, () => {
      fc.assert(
        fc.property(comparable(v), (p) => {
          // mqtt-packet refuses an empty client id in 3.1, and with clean session off
          if (p.type === 'connect' && p.clientId === '' && (v === 3 || !p.clean)) return;
          // and cannot write a 5.0 password without a user name (5.0 allows it)
          if (p.type === 'connect' && p.password !== undefined && p.username === undefined) return;
          const theirs = mqttPacket.generate(toTheirs(p, v) as unknown as mqttPacket.Packet, {
            protocolVersion: v,
          });
          // their object of user properties puts integer-like keys first: compare as sets
          expect(sortUserProperties(decode(new Uint8Array(theirs), v))).toEqual(sortUserProperties(p));
        }),
        { numRuns: 300 },
      );
    });
  }

  it('covers every packet type in both directions', () => {
    const seen = new Set<string>();
    for (const v of [4, 5] as const)
      for (const p of fc.sample(comparable(v), 400)) {
        seen.add(p.type);
        expect(parseTheirs(encode(p, v), v).length).toBe(1);
      }
    expect(seen.size).toBe(15);
  });
});
