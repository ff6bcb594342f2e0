/**
 * The packet model shared by the encoder, the parser and every package above them.
 * One discriminated union on `type`; fields hold what the wire holds, in JavaScript terms.
 * Binary fields are `Uint8Array`; decoded payloads may be views into the parser's input.
 */

/** 3 = MQTT 3.1 (`MQIsdp`), 4 = MQTT 3.1.1, 5 = MQTT 5.0: the protocol level byte of CONNECT. */
export type ProtocolVersion = 3 | 4 | 5;
export type QoS = 0 | 1 | 2;

/** Fixed-header packet type numbers (upper nibble of the first byte). */
export const PacketTypeCode = {
  connect: 1,
  connack: 2,
  publish: 3,
  puback: 4,
  pubrec: 5,
  pubrel: 6,
  pubcomp: 7,
  subscribe: 8,
  suback: 9,
  unsubscribe: 10,
  unsuback: 11,
  pingreq: 12,
  pingresp: 13,
  disconnect: 14,
  auth: 15,
} as const;
export type PacketType = keyof typeof PacketTypeCode;

export type UserProperties = Array<[key: string, value: string]>;

/**
 * Every MQTT 5 property. Which ones a packet may carry is checked by the codec
 * (a property not allowed in that packet is a protocol error, 0x82... or 0x81 on decode).
 * 0/1 byte properties are booleans; `maximumQoS` stays a number because it is a QoS.
 */
export interface Properties {
  payloadFormatIndicator?: boolean; // 0x01
  messageExpiryInterval?: number; // 0x02
  contentType?: string; // 0x03
  responseTopic?: string; // 0x08
  correlationData?: Uint8Array; // 0x09
  /** 0x0B in SUBSCRIBE: at most one, 1..268,435,455. */
  subscriptionIdentifier?: number;
  /** 0x0B in PUBLISH (server to client): one per matching subscription. */
  subscriptionIdentifiers?: number[];
  sessionExpiryInterval?: number; // 0x11
  assignedClientIdentifier?: string; // 0x12
  serverKeepAlive?: number; // 0x13
  authenticationMethod?: string; // 0x15
  authenticationData?: Uint8Array; // 0x16
  requestProblemInformation?: boolean; // 0x17
  willDelayInterval?: number; // 0x18
  requestResponseInformation?: boolean; // 0x19
  responseInformation?: string; // 0x1A
  serverReference?: string; // 0x1C
  reasonString?: string; // 0x1F
  receiveMaximum?: number; // 0x21
  topicAliasMaximum?: number; // 0x22
  topicAlias?: number; // 0x23
  maximumQoS?: 0 | 1; // 0x24
  retainAvailable?: boolean; // 0x25
  /** 0x26: order kept, duplicate keys and empty values allowed. */
  userProperties?: UserProperties;
  maximumPacketSize?: number; // 0x27
  wildcardSubscriptionAvailable?: boolean; // 0x28
  subscriptionIdentifiersAvailable?: boolean; // 0x29
  sharedSubscriptionAvailable?: boolean; // 0x2A
}

export interface Will {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** MQTT 5 will properties (will delay, message expiry, content type, ...). */
  properties?: Properties;
}

export interface ConnectPacket {
  type: 'connect';
  /** 3 writes protocol name `MQIsdp`, 4 and 5 write `MQTT`. */
  protocolVersion: ProtocolVersion;
  clientId: string;
  /** Clean session (3.1.1) / clean start (5.0). */
  clean: boolean;
  /** Seconds; 0 disables keepalive. */
  keepalive: number;
  username?: string;
  password?: Uint8Array;
  will?: Will;
  properties?: Properties;
  /**
   * A Mosquitto bridge (`try_private true`): the protocol level byte has its high bit set
   * (0x83, 0x84), so the server can avoid echoing messages back and keep retain flags. 3.1 and
   * 3.1.1 only. Decoded as true, absent otherwise.
   */
  bridge?: boolean;
}

export interface ConnackPacket {
  type: 'connack';
  sessionPresent: boolean;
  /** 5.0 reason code, or the 3.1.1 return code (0..5). */
  reasonCode: number;
  properties?: Properties;
}

export interface PublishPacket {
  type: 'publish';
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** Present exactly when qos > 0. */
  packetId?: number;
  properties?: Properties;
}

/** PUBACK, PUBREC, PUBREL and PUBCOMP share one shape. */
export interface PubAckLikePacket<T extends 'puback' | 'pubrec' | 'pubrel' | 'pubcomp'> {
  type: T;
  packetId: number;
  /** 5.0 only; absent or 0 means success. */
  reasonCode?: number;
  properties?: Properties;
}
export type PubackPacket = PubAckLikePacket<'puback'>;
export type PubrecPacket = PubAckLikePacket<'pubrec'>;
export type PubrelPacket = PubAckLikePacket<'pubrel'>;
export type PubcompPacket = PubAckLikePacket<'pubcomp'>;

export interface Subscription {
  topicFilter: string;
  qos: QoS;
  /** 5.0 subscription options; false / 0 when absent. */
  noLocal?: boolean;
  retainAsPublished?: boolean;
  retainHandling?: 0 | 1 | 2;
}

export interface SubscribePacket {
  type: 'subscribe';
  packetId: number;
  subscriptions: Subscription[];
  properties?: Properties;
}

export interface SubackPacket {
  type: 'suback';
  packetId: number;
  /** Granted QoS (0..2) or a failure code (0x80 and up), one per subscription. */
  reasonCodes: number[];
  properties?: Properties;
}

export interface UnsubscribePacket {
  type: 'unsubscribe';
  packetId: number;
  topicFilters: string[];
  properties?: Properties;
}

export interface UnsubackPacket {
  type: 'unsuback';
  packetId: number;
  /** 5.0 only: one per filter. */
  reasonCodes?: number[];
  properties?: Properties;
}

export interface PingreqPacket {
  type: 'pingreq';
}
export interface PingrespPacket {
  type: 'pingresp';
}

export interface DisconnectPacket {
  type: 'disconnect';
  /** 5.0 only; absent means 0 (normal disconnection). */
  reasonCode?: number;
  properties?: Properties;
}

export interface AuthPacket {
  type: 'auth';
  /** 5.0 only; absent means 0 (success). */
  reasonCode?: number;
  properties?: Properties;
}

export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PubackPacket
  | PubrecPacket
  | PubrelPacket
  | PubcompPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket
  | AuthPacket;
