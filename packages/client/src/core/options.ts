import type { Properties, ProtocolVersion, QoS, Will } from '@mqtt-edge/codec';
import { utf8Encode } from '@mqtt-edge/codec';
import { isSyncOutbox, MemoryOutbox, type SyncOutbox } from './memory-outbox.ts';

export interface WillOptions {
  topic: string;
  payload: string | Uint8Array;
  qos?: QoS;
  retain?: boolean;
  /** 5.0 will properties: willDelayInterval, messageExpiryInterval, contentType, ... */
  properties?: Properties;
}

export interface SessionOptions {
  /** 3 = MQTT 3.1, 4 = 3.1.1 (default), 5 = 5.0. */
  protocolVersion?: ProtocolVersion;
  /** Empty (the default) asks the server to assign one; 5.0 reports it in the connected event. */
  clientId?: string;
  /**
   * Clean session (3.1.1) / clean start (5.0); default true. `'first'` starts clean on the first
   * connection this session object makes and resumes on every reconnect after it (paho's
   * MQTT_CLEAN_START_FIRST_ONLY): what a process restarted without its packet-id state wants,
   * since ids it reuses could collide with a QoS 2 flow the server still holds.
   */
  clean?: boolean | 'first';
  /** Seconds; 0 disables. Default 60. A 5.0 server keepalive overrides it. */
  keepalive?: number;
  username?: string;
  password?: string | Uint8Array;
  will?: WillOptions;
  /** 5.0: seconds the server keeps the session after the connection ends. */
  sessionExpiryInterval?: number;
  /** 5.0: most incoming QoS 1/2 publishes in flight we accept; advertised. Default 65,535. */
  receiveMaximum?: number;
  /** Largest packet we accept (5.0: advertised); bigger ones close with 0x95. Default 16 MiB. */
  maximumPacketSize?: number;
  /** 5.0: incoming topic aliases we accept; advertised. Default 64. */
  topicAliasMaximum?: number;
  /** 5.0: use topic aliases for outgoing publishes when the server allows them. Default false. */
  outgoingTopicAliases?: boolean;
  /** Other 5.0 CONNECT properties (user properties, request problem information, ...). */
  connectProperties?: Properties;
  /**
   * Our own cap on outgoing QoS 1/2 in flight (the server's receiveMaximum lowers it). Default
   * 4,096: with 1,024 a burst against Mosquitto settles into ping-pong (about 4 PUBLISHes per
   * write, 4 PUBACKs per read, one syscall pair each, on both sides); from 2,048 up both sides
   * move hundreds per syscall and the client's CPU per QoS 1 message halves (bench/RESULTS.md).
   */
  maxInflight?: number;
  /** Milliseconds to wait for CONNACK. Default 30,000. */
  connectTimeout?: number;
  /**
   * Where unacknowledged messages live. Default: a MemoryOutbox the session owns, reads and acks
   * itself (memory: no I/O). `null`: a store outside the session (the Node client's DurableQueue),
   * which the session never calls: it says what it wants (`outboxWant`, `outboxCursor`), its
   * shell hands entries in (`feedOutbox`) and acks in the store the seq of each `published` event.
   */
  outbox?: SyncOutbox | null;
  /** Re-send known subscriptions when the server lost the session. Default true. */
  resubscribe?: boolean;
  /**
   * 3.1 / 3.1.1: connect as a Mosquitto bridge (protocol level | 0x80, Mosquitto's try_private):
   * a Mosquitto server then does not send our own publishes back and keeps retained flags as
   * published. A server that refuses it with return code 1 gets the next CONNECT without it.
   * Ignored for 5.0 (no-local and retain-as-published do that there). Default false.
   */
  bridgeMode?: boolean;
  /**
   * Incoming QoS 1/2 PUBLISHes are acknowledged (PUBACK / PUBREC) only when the application
   * calls `ack(packet)` with the packet of the message event, in the order they were received
   * (one not acknowledged holds back the acks behind it; the server's in-flight window, our
   * receiveMaximum in 5.0, bounds how many wait). For store-and-forward: acknowledge once the
   * message is safe. A message not acknowledged when its connection ends is sent again by the
   * server (QoS 1 as a new message event; QoS 2 under its id, acked by the original's ack).
   * Default false: acknowledged on receipt.
   */
  manualAcks?: boolean;
}

export interface ResolvedOptions {
  protocolVersion: ProtocolVersion;
  clientId: string;
  /** The clean flag of the first CONNECT. */
  clean: boolean;
  /** Later CONNECTs after the first CONNACK resume (clean: 'first'). */
  cleanFirstOnly: boolean;
  keepalive: number;
  username: string | undefined;
  password: Uint8Array | undefined;
  will: Will | undefined;
  sessionExpiryInterval: number | undefined;
  receiveMaximum: number;
  maximumPacketSize: number;
  topicAliasMaximum: number;
  outgoingTopicAliases: boolean;
  connectProperties: Properties | undefined;
  maxInflight: number;
  connectTimeout: number;
  /** null: the store is the shell's, fed in through feedOutbox(). */
  outbox: SyncOutbox | null;
  resubscribe: boolean;
  bridgeMode: boolean;
  manualAcks: boolean;
}

function intIn(name: string, v: number, lo: number, hi: number): number {
  if (Math.floor(v) !== v || v < lo || v > hi)
    throw new RangeError(`${name} must be an integer in ${lo}..${hi}`);
  return v;
}

export function toBytes(v: string | Uint8Array): Uint8Array {
  return typeof v === 'string' ? utf8Encode(v) : v;
}

/**
 * The session reads and acks only a store that is its own memory (putSync: MemoryOutbox). A store
 * it would have to wait for, or read from a disk (a DurableQueue), belongs to the shell; a
 * JavaScript caller handing one in is told how to wire it.
 */
function ownOutbox(outbox: SyncOutbox | null | undefined): SyncOutbox | null {
  if (outbox === undefined) return new MemoryOutbox();
  if (outbox === null || isSyncOutbox(outbox)) return outbox;
  throw new TypeError(
    'the session reads only a synchronous in-memory outbox (putSync); for any other store pass ' +
      'outbox: null and feed the session from it (outboxWant, outboxCursor, feedOutbox), as the Node client does',
  );
}

export function resolveOptions(o: SessionOptions): ResolvedOptions {
  const protocolVersion = o.protocolVersion ?? 4;
  if (protocolVersion !== 3 && protocolVersion !== 4 && protocolVersion !== 5)
    throw new RangeError('protocolVersion must be 3, 4 or 5');
  if (o.clean !== undefined && typeof o.clean !== 'boolean' && o.clean !== 'first')
    throw new RangeError("clean must be true, false or 'first'");
  const clean = o.clean ?? true;
  const clientId = o.clientId ?? '';
  if (clientId === '' && clean !== true && protocolVersion !== 5)
    throw new RangeError(`MQTT 3.1.1 needs a client id when clean is ${String(clean)}`);
  if (clientId === '' && protocolVersion === 3) throw new RangeError('MQTT 3.1 needs a client id');
  const will = o.will
    ? {
        topic: o.will.topic,
        payload: toBytes(o.will.payload),
        qos: o.will.qos ?? 0,
        retain: o.will.retain ?? false,
        properties: o.will.properties,
      }
    : undefined;
  return {
    protocolVersion,
    clientId,
    clean: clean !== false,
    cleanFirstOnly: clean === 'first',
    keepalive: intIn('keepalive', o.keepalive ?? 60, 0, 65535),
    username: o.username,
    password: o.password === undefined ? undefined : toBytes(o.password),
    will,
    sessionExpiryInterval: o.sessionExpiryInterval,
    receiveMaximum: intIn('receiveMaximum', o.receiveMaximum ?? 65535, 1, 65535),
    maximumPacketSize: intIn('maximumPacketSize', o.maximumPacketSize ?? 16 * 1024 * 1024, 16, 268435460),
    topicAliasMaximum: intIn('topicAliasMaximum', o.topicAliasMaximum ?? 64, 0, 65535),
    outgoingTopicAliases: o.outgoingTopicAliases ?? false,
    connectProperties: o.connectProperties,
    maxInflight: intIn('maxInflight', o.maxInflight ?? 4096, 1, 65535),
    connectTimeout: o.connectTimeout ?? 30_000,
    outbox: ownOutbox(o.outbox),
    resubscribe: o.resubscribe ?? true,
    bridgeMode: o.bridgeMode ?? false,
    manualAcks: o.manualAcks ?? false,
  };
}
