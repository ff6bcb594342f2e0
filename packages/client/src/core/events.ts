import type { MqttError, Properties, PublishPacket, QoS } from '@mqtt-edge/codec';
import type { ConnackError, RequestError } from './errors.ts';

export interface ConnectedEvent {
  type: 'connected';
  sessionPresent: boolean;
  /** 0; kept so that every CONNACK outcome has the same shape. */
  reasonCode: number;
  /** The id in use: ours, or the one the server assigned (5.0). */
  clientId: string;
  /** The keepalive in force (seconds): ours, or the 5.0 server keepalive. */
  keepalive: number;
  properties: Properties | undefined;
}

/** A message from the server, topic alias already resolved. Payload may view the received bytes. */
export interface MessageEvent {
  type: 'message';
  packet: PublishPacket;
}

/**
 * A publish's QoS flow ended: PUBACK, PUBCOMP, a failing PUBREC, or (QoS 0) written.
 * `seq` is the outbox sequence (absent for QoS 0 written directly); `error` is set on failure.
 */
export interface PublishedEvent {
  type: 'published';
  seq: number | undefined;
  packetId: number | undefined;
  qos: QoS;
  reasonCode: number;
  properties: Properties | undefined;
  error: RequestError | undefined;
}

export interface SubackEvent {
  type: 'suback';
  packetId: number;
  reasonCodes: number[];
  properties: Properties | undefined;
  /** Sent by the session itself to restore subscriptions (no caller is waiting for it). */
  internal: boolean;
}

export interface UnsubackEvent {
  type: 'unsuback';
  packetId: number;
  /** 5.0 reason codes; undefined for 3.1.1 (which has none). */
  reasonCodes: number[] | undefined;
  properties: Properties | undefined;
}

/**
 * The connection ended (session state is kept). Emitted once per connection; the transport
 * must be closed after writing any pending output.
 */
export interface ClosedEvent {
  type: 'closed';
  /** Who ended it: 'client' (disconnect()), 'server' (DISCONNECT or refusal), 'error', 'transport'. */
  by: 'client' | 'server' | 'error' | 'transport';
  /** 5.0 DISCONNECT / CONNACK reason code, or the reason we closed with; 0 for a normal close. */
  reasonCode: number;
  reasonString: string | undefined;
  error: Error | undefined;
  /**
   * The session changed what the server refused (it dropped the bridge marker after return
   * code 1): the next attempt may succeed and need not wait.
   */
  retryNow?: true;
}

export interface ErrorEvent {
  type: 'error';
  error: MqttError | ConnackError | Error;
}

export type SessionEvent =
  | ConnectedEvent
  | MessageEvent
  | PublishedEvent
  | SubackEvent
  | UnsubackEvent
  | ClosedEvent
  | ErrorEvent;
