/**
 * PUBLISH from a client: topic alias, size and retain limits, the ACL's `write`, QoS 2
 * duplicate suppression, retained store, routing, then the acknowledgement (after the group
 * commit when persistence is on and something was written).
 */
import { type Properties, type PublishPacket, type QoS, ReasonCode } from '@mqtt-edge/codec';
import type { Connection } from './connection.ts';
import { makeMessage } from './message.ts';
import { TOPIC_ALIAS_MAXIMUM } from './options.ts';
import type { Persistence } from './persist.ts';
import type { Session } from './session.ts';
import { clientMayWriteSys } from './sys.ts';

const PUBACK = 0x40;
const PUBREC = 0x50;

export function handlePublish(conn: Connection, p: PublishPacket): void {
  const b = conn.broker;
  const session = conn.session;
  if (session === null) return;
  let topic = p.topic;
  let props = p.properties;
  if (props !== undefined) {
    if (props.subscriptionIdentifiers !== undefined || props.subscriptionIdentifier !== undefined) {
      // MQTT 5 3.3.4: only the server puts them on a PUBLISH.
      conn.fail(ReasonCode.ProtocolError, 'a PUBLISH from a client must not carry a subscription identifier');
      return;
    }
    const alias = props.topicAlias;
    if (alias !== undefined) {
      if (alias > TOPIC_ALIAS_MAXIMUM) {
        conn.fail(
          ReasonCode.TopicAliasInvalid,
          `topic alias ${alias} above the maximum ${TOPIC_ALIAS_MAXIMUM}`,
        );
        return;
      }
      if (topic === '') {
        const known = conn.aliases?.[alias];
        if (known === undefined) {
          conn.fail(ReasonCode.ProtocolError, `topic alias ${alias} was never set`);
          return;
        }
        topic = known;
      } else {
        if (conn.aliases === null) conn.aliases = [];
        conn.aliases[alias] = topic;
      }
    }
    props = forwardable(props);
  }
  const qos = p.qos;
  const pid = p.packetId ?? 0;
  if (p.retain && !b.options.retainAvailable) {
    conn.fail(ReasonCode.RetainNotSupported, 'retained messages are not available');
    return;
  }
  if (qos === 2) {
    let seen = session.incomingQos2;
    if (seen?.has(pid)) {
      // A retransmission of a message already routed: only the PUBREC again.
      ack(conn, PUBREC, pid, 0);
      return;
    }
    if (seen === null) seen = session.incomingQos2 = new Set();
    if (seen.size >= 65_535) {
      conn.fail(ReasonCode.ReceiveMaximumExceeded, 'too many QoS 2 messages awaiting PUBREL');
      return;
    }
  }
  if (qos > 0 && conn.version === 5) {
    // MQTT 5 section 4.9: QoS 1 counts until its PUBACK is sent (group commit may defer it),
    // QoS 2 until the PUBCOMP (the id stays in incomingQos2 until PUBREL).
    const unacked = conn.pendingPubacks + (session.incomingQos2?.size ?? 0);
    if (unacked >= b.receiveMaximum) {
      conn.fail(
        ReasonCode.ReceiveMaximumExceeded,
        'more unacknowledged QoS 1/2 PUBLISH than Receive Maximum',
      );
      return;
    }
  }
  takePublish(conn, session, p, topic, props);
}

/**
 * The rest of a PUBLISH, once its packet-level checks passed: memory_limit, message_size_limit,
 * the ACL's `write`, a refusing disk, then the retained store, routing and the acknowledgement.
 * An in-process peer (internal-client.ts) publishes from here: its message is an object already.
 */
export function takePublish(
  conn: Connection,
  session: Session,
  p: PublishPacket,
  topic: string,
  props: Properties | undefined,
): void {
  const b = conn.broker;
  const qos = p.qos;
  const pid = p.packetId ?? 0;
  if (b.memoryFull) {
    refuseOverMemory(conn, qos, pid);
    return;
  }
  const limit = b.options.messageSizeLimit;
  if (limit > 0 && p.payload.length > limit) {
    b.counters.dropped++;
    b.counters.drops.message_size_limit++;
    b.log('notice', 'message over message_size_limit dropped', {
      clientId: conn.clientId,
      topic,
      bytes: p.payload.length,
    });
    if (qos === 1) ack(conn, PUBACK, pid, ReasonCode.QuotaExceeded);
    else if (qos === 2) ack(conn, PUBREC, pid, ReasonCode.QuotaExceeded);
    return;
  }
  const acl = b.perListener ? b.aclFor(session) : b.accessControl;
  const denied = conn.internal
    ? topic.startsWith('$SYS') && !topic.startsWith('$SYS/broker/connection/')
    : !clientMayWriteSys(topic) ||
      (acl !== undefined &&
        !acl.allowed('write', { clientId: conn.clientId, username: conn.username }, topic));
  if (denied) {
    logDenied(conn, p, topic);
    // 3.1.1 has no way to say no: the message is acknowledged and dropped, as Mosquitto does.
    const rc = conn.version === 5 ? ReasonCode.NotAuthorized : 0;
    if (qos === 1) ack(conn, PUBACK, pid, rc);
    else if (qos === 2) {
      if (rc === 0) (session.incomingQos2 as Set<number>).add(pid);
      ack(conn, PUBREC, pid, rc);
    }
    return;
  }
  const persist = b.persist;
  if (qos > 0 && persist !== null && persist.refusing) {
    refuseWhileDiskFails(conn, qos, pid);
    return;
  }
  const msg = makeMessage(topic, p.payload, qos, p.retain, props, Date.now());
  if (p.retain) b.retainMessage(msg);
  const matched = b.router.route(msg, session, conn);
  // MQTT 5 lets the server say 0x10 when no subscription matched; Mosquitto does, for QoS 1
  // only (its PUBREC comes before it routes), and publishers written against it read it.
  if (qos === 1)
    ack(conn, PUBACK, pid, conn.version === 5 && !matched ? ReasonCode.NoMatchingSubscribers : 0);
  else if (qos === 2) {
    // A peer's call is its own exactly-once: no PUBREL will follow, so no id is kept for one.
    if (!conn.direct) {
      (session.incomingQos2 as Set<number>).add(pid);
      if (session.persistent && b.persist !== null) b.persist.incomingAdd(session, pid);
    }
    ack(conn, PUBREC, pid, 0);
  }
}

/**
 * Persistence cannot write (a full disk): a new QoS 1/2 message would be acknowledged without
 * being stored, so it is not taken. MQTT 5 hears 0x97 Quota exceeded (after any ack still owed
 * to it: acks keep their order). MQTT 3.1.1 has no negative PUBACK and an ack would be a lie, so
 * the message is dropped unacknowledged: the connection stays up (its subscriptions and QoS 0
 * keep working) and is closed once the disk is back, so the client re-sends it.
 */
function refuseWhileDiskFails(conn: Connection, qos: QoS, pid: number): void {
  const b = conn.broker;
  const persist = b.persist as Persistence;
  if (conn.version === 5) {
    const first = qos === 1 ? PUBACK : PUBREC;
    if (conn.pendingAcks > 0) persist.deferAck(conn, first, pid, ReasonCode.QuotaExceeded);
    else conn.sendAck(first, pid, ReasonCode.QuotaExceeded);
  } else persist.refusedUnacked(conn);
}

/**
 * memory_limit: the message is not taken. 5.0 can say so (0x97 quota exceeded, the QoS 2 flow
 * ends there); a 3.1.1 PUBACK would claim it was taken, so that publisher is disconnected and
 * keeps the message to send again, as Mosquitto does; QoS 0 is dropped (counted).
 */
function refuseOverMemory(conn: Connection, qos: number, pid: number): void {
  const b = conn.broker;
  b.counters.dropped++;
  b.counters.drops.memory_limit++;
  b.memory.refused++;
  b.memory.refusedTotal++;
  if (qos === 0) return;
  if (conn.version === 5) {
    ack(conn, qos === 1 ? PUBACK : PUBREC, pid, ReasonCode.QuotaExceeded);
    return;
  }
  b.log('notice', 'client disconnected: memory_limit exceeded', { clientId: conn.clientId });
  conn.fail(ReasonCode.QuotaExceeded, 'memory_limit exceeded');
}

/**
 * One "Denied PUBLISH" line per connection per this many ms; the denials in between are counted
 * and reported by the next line, or when the client goes.
 */
export const DENIED_LOG_INTERVAL_MS = 10_000;

/**
 * Mosquitto's words for a publish the ACL refuses. Mosquitto says it at debug, so a default
 * Mosquitto (and broker-lite until issue 13) is silent about a client publishing where it may
 * not; here it is a notice, rate-limited per client so that a flood of denied publishes cannot
 * flood the log.
 */
function logDenied(conn: Connection, p: PublishPacket, topic: string): void {
  const now = Date.now();
  const d = conn.deniedLog;
  if (d !== null && now - d.loggedAt < DENIED_LOG_INTERVAL_MS) {
    d.unlogged++;
    return;
  }
  const more = d === null ? 0 : d.unlogged;
  let message = `Denied PUBLISH from ${conn.clientId} (d${p.dup ? 1 : 0}, q${p.qos}, r${p.retain ? 1 : 0}, m${p.packetId ?? 0}, '${topic}', ... (${p.payload.length} bytes))`;
  if (more > 0) message += `; ${more} more denied since the last such line`;
  conn.broker.log('notice', message, { clientId: conn.clientId, username: conn.username, topic });
  if (d === null) conn.deniedLog = { loggedAt: now, unlogged: 0 };
  else {
    d.loggedAt = now;
    d.unlogged = 0;
  }
}

/** The denials a connection had not logged one by one, when it closes. */
export function flushDeniedLog(conn: Connection): void {
  const d = conn.deniedLog;
  if (d === null || d.unlogged === 0) return;
  conn.broker.log(
    'notice',
    `Denied ${d.unlogged} more PUBLISH from ${conn.clientId}, not logged one by one`,
    {
      clientId: conn.clientId,
      username: conn.username,
      denied: d.unlogged,
    },
  );
  d.unlogged = 0;
}

/** Acks now, or after the log is on disk when this turn wrote to it (group commit). */
function ack(conn: Connection, first: number, pid: number, rc: number): void {
  const persist = conn.broker.persist;
  if (persist !== null && (persist.unsynced || conn.pendingAcks > 0)) persist.deferAck(conn, first, pid, rc);
  else conn.sendAck(first, pid, rc);
}

/** Drops what must not be forwarded: the topic alias (it names the topic on this connection only). */
function forwardable(props: Properties): Properties | undefined {
  if (props.topicAlias === undefined) return props;
  const { topicAlias: _a, ...rest } = props;
  for (const _k in rest) return rest;
  return undefined;
}
