/**
 * Putting one message on its way to one session: straight onto the wire when the in-flight
 * window has room, into the session's queue otherwise, with the backpressure that keeps
 * QoS 1/2 from being dropped. Encoded bytes are shared between subscribers of one message.
 */
import type { QoS } from '@mqtt-edge/codec';
import type { Broker } from './broker.ts';
import { ConnState } from './conn-state.ts';
import type { Connection } from './connection.ts';
import type { InternalPeer } from './internal-client.ts';
import { type Delivery, type Message, own } from './message.ts';
import { HARD_WRITE_LIMIT, SOFT_WRITE_LIMIT } from './options.ts';
import type { Session } from './session.ts';
import { NAME_TOPIC, type OutAliases, writeAliased } from './topic-alias.ts';

/**
 * Encoded PUBLISH bytes of the message being routed, one slot per (protocol 5 or not, QoS,
 * retain): the first subscriber's copy is reused for the rest, packet id patched in place.
 */
export class EncodeCache {
  readonly slots: Array<Uint8Array | null> = [
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
  ];
  clear(): void {
    const s = this.slots;
    for (let i = 0; i < 12; i++) s[i] = null;
  }
}

/**
 * What one route() passes to each deliver(): the publisher whose PUBLISH is being routed (null
 * for the broker's own messages: wills, $SYS, bridges), which backpressure may pause, and the
 * encoded bytes shared by its subscribers. The router owns one and reuses it for every message.
 */
export class RouteContext {
  publisher: Connection | null = null;
  readonly cache = new EncodeCache();
}

/** In-flight window towards this connection: the broker's bound and the client's receive maximum. */
export function windowOf(b: Broker, conn: Connection): number {
  const mine = conn.maxInflight > 0 ? conn.maxInflight : b.options.maxInflightMessages;
  return mine > 0 && mine < conn.receiveMax ? mine : conn.receiveMax;
}

export function deliver(
  b: Broker,
  s: Session,
  msg: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | undefined,
  ctx: RouteContext | null,
): void {
  const conn = s.conn;
  const online = conn !== null && conn.state === ConnState.Connected;
  if (qos === 0) {
    // QoS 0 is not queued for offline sessions (Mosquitto's default too).
    if (!online) return;
    const backlog = conn.backlog;
    if (backlog > SOFT_WRITE_LIMIT) {
      if (backlog > HARD_WRITE_LIMIT) {
        b.dropped(s, msg, 'subscriber not reading (QoS 0)', 'slow_subscriber');
        return;
      }
      slowDownPublisher(b, s, ctx);
      conn.waitDrain();
    }
    writePublish(b, conn, msg, 0, retain, subIds, 0, false, ctx === null ? null : ctx.cache);
    return;
  }
  const d: Delivery = { msg, qos, retain, subIds, pid: 0, state: 0 };
  if (online && s.queueLength === 0 && s.inflightCount < windowOf(b, conn)) {
    const pid = s.allocPid();
    if (!writePublish(b, conn, msg, qos, retain, subIds, pid, false, ctx === null ? null : ctx.cache)) return;
    d.pid = pid;
    s.inflight.set(pid, d);
    if (conn.pausedBy > 0) conn.socket.resume(); // it must read the acks it now owes us
    if (s.persistent && b.persist !== null) {
      b.persist.queueAdd(s, d);
      b.persist.queueSent(s, d, conn);
    }
    return;
  }
  const max = b.options.maxQueuedMessages;
  const maxBytes = b.options.maxQueuedBytes;
  const full = (max > 0 && s.queueLength >= max) || (maxBytes > 0 && s.queuedBytes >= maxBytes);
  if (full) {
    // Nobody reads an offline session's queue: the bound the user set applies.
    if (!online) {
      b.dropped(s, msg, 'offline session queue full', 'queue_full');
      return;
    }
    // Online, the publisher is slowed down instead. Where it cannot be (it is owed acks, it
    // is the subscriber itself, or the broker publishes), the queue may go past the bound, but
    // not past twice it: memory stays bounded whoever publishes.
    if (
      !slowDownPublisher(b, s, ctx) &&
      ((max > 0 && s.queueLength >= 2 * max) || (maxBytes > 0 && s.queuedBytes >= 2 * maxBytes))
    ) {
      b.dropped(s, msg, 'queue at twice its bound and the publisher cannot be paused', 'queue_overflow');
      return;
    }
  }
  own(msg);
  s.enqueue(d);
  if (s.persistent && b.persist !== null) b.persist.queueAdd(s, d);
}

/**
 * Pauses the socket of the publisher being routed (ctx) until `s` drains; false when it cannot. A
 * connection that has messages in flight towards it is never paused: it must keep reading
 * their acks (two clients publishing to each other would otherwise wait on each other for ever).
 */
function slowDownPublisher(b: Broker, s: Session, ctx: RouteContext | null): boolean {
  if (ctx === null) return false;
  const pub = ctx.publisher;
  if (pub === null || pub.closed || pub.session === s) return false;
  const ps = pub.session;
  if (ps !== null && (ps.inflightCount > 0 || ps.queueLength > 0)) return false;
  if (s.blocked === null) s.blocked = [];
  else if (s.blocked.includes(pub)) return true;
  s.blocked.push(pub);
  pub.pauseFor();
  b.counters.publisherPauses++;
  return true;
}

/** Resumes the publishers `s` paused once its queue is at the low-water mark or less. */
export function releasePublishers(b: Broker, s: Session, force: boolean): void {
  const blocked = s.blocked;
  if (blocked === null) return;
  if (!force) {
    const max = b.options.maxQueuedMessages;
    if (max > 0 && s.queueLength > max >> 1) return;
    const maxBytes = b.options.maxQueuedBytes;
    if (maxBytes > 0 && s.queuedBytes > maxBytes / 2) return;
    const conn = s.conn;
    if (conn !== null && conn.backlog > SOFT_WRITE_LIMIT >> 1) {
      conn.waitDrain();
      return;
    }
  }
  s.blocked = null;
  for (const pub of blocked) pub.resumeFor();
}

/** Sends queued messages while the in-flight window has room. */
export function pump(b: Broker, s: Session): void {
  const conn = s.conn;
  if (conn === null || conn.state !== ConnState.Connected) return;
  const window = windowOf(b, conn);
  if (s.queueLength === 0) {
    if (s.blocked !== null) releasePublishers(b, s, false);
    return;
  }
  while (s.inflightCount < window) {
    const d = s.dequeue();
    if (d === undefined) break;
    const pid = s.allocPid();
    if (!writePublish(b, conn, d.msg, d.qos, d.retain, d.subIds, pid, false, null)) {
      if (s.persistent && b.persist !== null) b.persist.queueDel(s, d);
      continue;
    }
    d.pid = pid;
    s.inflight.set(pid, d);
    if (s.persistent && b.persist !== null) b.persist.queueSent(s, d, conn);
  }
  if (s.blocked !== null) releasePublishers(b, s, false);
}

/**
 * Re-sends what was in flight when the session's previous connection ended (DUP set). A PUBLISH
 * that can no longer go (it expired meanwhile, or is larger than the new connection's maximum
 * packet size; writePublish counted it) leaves the window and the store: kept, it would hold a
 * slot of the window for good. The caller pumps the queue into the slots freed.
 */
export function resendInflight(b: Broker, s: Session): void {
  const conn = s.conn as Connection;
  for (const d of s.inflight.values()) {
    if (d.state === 1) conn.sendAck(0x62, d.pid, 0);
    else if (!writePublish(b, conn, d.msg, d.qos, d.retain, d.subIds, d.pid, true, null)) {
      // Deleting the entry being visited is safe in a Map iteration.
      s.inflight.delete(d.pid);
      if (s.persistent && b.persist !== null) b.persist.queueDel(s, d);
    }
  }
}

/**
 * Encodes (or copies from the cache) and queues one PUBLISH for `conn`. False when the message
 * expired or is larger than the client accepts (it is dropped for that client and counted).
 */
export function writePublish(
  b: Broker,
  conn: Connection,
  msg: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | undefined,
  pid: number,
  dup: boolean,
  cache: EncodeCache | null,
): boolean {
  const v5 = conn.version === 5;
  let props = v5 ? msg.properties : undefined;
  let cacheable = cache !== null && !dup;
  if (msg.expiresAt !== 0) {
    const left = Math.ceil((msg.expiresAt - Date.now()) / 1000);
    if (left <= 0) {
      b.counters.expired++;
      return false;
    }
    if (v5) {
      props = { ...props, messageExpiryInterval: left };
      cacheable = false;
    }
  }
  if (v5 && subIds !== undefined) {
    props = { ...props, subscriptionIdentifiers: subIds };
    cacheable = false;
  }
  if (conn.direct) {
    // An in-process peer (internal-client.ts) takes the message object itself: nothing encoded.
    b.counters.packetsOut++;
    b.counters.msgsOutQos[qos]++;
    b.counters.pubBytesOut += msg.payload.length;
    (conn.peer as InternalPeer).message(msg, qos, retain, props, pid);
    return true;
  }
  const slot = (v5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0);
  const cached = cacheable ? (cache as EncodeCache).slots[slot] : null;
  // Read for MQTT 5 connections only; null unless the client allows topic aliases.
  const aliases = v5 && !dup ? conn.outAliases : null;
  if (cached !== null) {
    if (aliases !== null && sendAliased(conn, aliases, msg.topic, cached, qos, pid)) {
      b.counters.msgsOutQos[qos]++;
      b.counters.pubBytesOut += msg.payload.length;
      return true;
    }
    if (cached.length > conn.maxOut) return tooLarge(b, conn, msg);
    if (qos > 0) patchPid(conn.sendView(cached), pid);
    else conn.send(cached);
  } else {
    let bytes: Uint8Array;
    try {
      bytes = b.writer.encode(
        {
          type: 'publish',
          topic: msg.topic,
          payload: msg.payload,
          qos,
          retain,
          dup,
          packetId: qos > 0 ? pid : undefined,
          properties: props,
        },
        conn.version,
      );
    } catch {
      // Over MQTT's largest packet with what this client adds (its subscription identifiers):
      // the broker's receive limit keeps room for the rest (REENCODE_ROOM in broker.ts).
      return tooLarge(b, conn, msg, 'too large for MQTT with its subscription identifiers');
    }
    if (aliases !== null && sendAliased(conn, aliases, msg.topic, bytes, qos, pid)) {
      // `bytes` is the writer's, overwritten by the next encode: the cache keeps a copy.
      if (cacheable) (cache as EncodeCache).slots[slot] = bytes.slice();
      b.counters.msgsOutQos[qos]++;
      b.counters.pubBytesOut += msg.payload.length;
      return true;
    }
    if (bytes.length > conn.maxOut) return tooLarge(b, conn, msg);
    if (cacheable) (cache as EncodeCache).slots[slot] = conn.sendView(bytes);
    else conn.send(bytes);
  }
  b.counters.msgsOutQos[qos]++;
  b.counters.pubBytesOut += msg.payload.length;
  return true;
}

/**
 * Sends the encoded PUBLISH `src` with the topic alias `aliases` has for `topic` (named too on
 * its first use). False, sending nothing, when the topic gets no alias or the aliased form is
 * over the client's maximum packet size: the caller sends `src` as it is.
 */
function sendAliased(
  conn: Connection,
  aliases: OutAliases,
  topic: string,
  src: Uint8Array,
  qos: QoS,
  pid: number,
): boolean {
  const code = aliases.lookup(topic);
  if (code === 0) return false;
  if (writeAliased(conn, src, code, qos, pid, conn.maxOut)) return true;
  if (code & NAME_TOPIC) aliases.unname(code & 0xffff);
  return false;
}

function tooLarge(
  b: Broker,
  conn: Connection,
  msg: Message,
  why = 'larger than the client maximum packet size',
): false {
  b.dropped(conn.session, msg, why, 'too_large');
  return false;
}

/** Writes `pid` into an encoded PUBLISH (after the fixed header and the topic). */
function patchPid(bytes: Uint8Array, pid: number): void {
  let i = 1;
  while (bytes[i] & 0x80) i++;
  i++;
  const at = i + 2 + ((bytes[i] << 8) | bytes[i + 1]);
  bytes[at] = pid >> 8;
  bytes[at + 1] = pid & 0xff;
}
