import type { Properties, QoS } from '@mqtt-edge/codec';

/**
 * One application message as the broker holds it, shared by every session that receives it.
 * `payload` is owned (copied out of the socket chunk) whenever the message outlives the turn
 * that parsed it: queued, retained, stored or used as a will.
 */
export interface Message {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  /** Properties forwarded to subscribers (topic alias and subscription ids removed). */
  properties: Properties | undefined;
  /** Wall-clock ms when the message expires (MQTT 5 message expiry); 0 = never. */
  expiresAt: number;
  /** Persistence id; 0 until written to the log. */
  storeId: number;
  /** Persistent-session queue entries that reference the stored copy. */
  storeRefs: number;
  /** Payload copied out of the parser's chunk (safe to keep). */
  owned: boolean;
}

export function makeMessage(
  topic: string,
  payload: Uint8Array,
  qos: QoS,
  retain: boolean,
  properties: Properties | undefined,
  now: number,
): Message {
  let expiresAt = 0;
  if (properties !== undefined && properties.messageExpiryInterval !== undefined)
    expiresAt = now + properties.messageExpiryInterval * 1000;
  return { topic, payload, qos, retain, properties, expiresAt, storeId: 0, storeRefs: 0, owned: false };
}

/** Makes the message safe to keep past the current turn (the payload may view a socket chunk). */
export function own(msg: Message): Message {
  if (!msg.owned) {
    msg.payload = msg.payload.slice();
    msg.owned = true;
  }
  return msg;
}

/** A message queued for, or in flight to, one session. */
export interface Delivery {
  msg: Message;
  qos: QoS;
  /** Retain flag as it goes out (retain-as-published, or a retained message on subscribe). */
  retain: boolean;
  /** MQTT 5 subscription identifiers of the matching subscriptions. */
  subIds: number[] | undefined;
  /** Packet id once sent, 0 while queued. */
  pid: number;
  /** 0: waiting for PUBACK / PUBREC; 1: PUBREL sent, waiting for PUBCOMP. */
  state: 0 | 1;
  /** Persistence key of this queue entry; 0 when not stored. */
  seq?: number;
}
