/**
 * SUBSCRIBE: the ACL's `subscribe`, subscription options, identifiers, SUBACK, then the
 * retained messages each new (or, by retain handling, renewed) subscription asks for.
 */
import { ReasonCode, type SubscribePacket, splitShared } from '@mqtt-edge/codec';
import type { Connection } from './connection.ts';
import { deliver } from './deliver.ts';
import { Subscription } from './session.ts';
import { tooDeep, topicForLog } from './topic-levels.ts';

export function handleSubscribe(conn: Connection, p: SubscribePacket): void {
  const b = conn.broker;
  const s = conn.session;
  if (s === null) return;
  const v5 = conn.version === 5;
  const id = p.properties?.subscriptionIdentifier;
  const codes: number[] = [];
  let retained: Subscription[] | null = null;
  let tooDeepCount = 0;
  for (const req of p.subscriptions) {
    const filter = req.topicFilter;
    const shared = filter.startsWith('$share/');
    if (shared && req.noLocal === true) {
      conn.fail(ReasonCode.ProtocolError, 'no local on a shared subscription');
      return;
    }
    // Counted over the whole filter, a $share/group/ prefix included, as Mosquitto does.
    if (tooDeep(filter, b.maxTopicLevels)) {
      if (tooDeepCount++ === 0)
        b.log('notice', 'subscription refused: topic filter over max_topic_levels', {
          clientId: conn.clientId,
          filter: topicForLog(filter),
          maxTopicLevels: b.maxTopicLevels,
        });
      codes.push(v5 ? ReasonCode.TopicFilterInvalid : 0x80);
      continue;
    }
    const acl = b.aclFor(s);
    if (
      acl !== undefined &&
      !conn.internal &&
      !acl.allowed('subscribe', { clientId: conn.clientId, username: conn.username }, filter)
    ) {
      b.log('debug', 'subscribe denied', { clientId: conn.clientId, filter });
      codes.push(v5 ? ReasonCode.NotAuthorized : 0x80);
      continue;
    }
    // A Mosquitto bridge (3.1.1 has no subscription options): no-local and retain-as-published.
    const bridge = s.bridge && !shared;
    let sub = s.subs.get(filter);
    const existed = sub !== undefined;
    if (sub !== undefined) {
      sub.qos = req.qos;
      sub.noLocal = bridge || req.noLocal === true;
      sub.retainAsPublished = bridge || req.retainAsPublished === true;
      sub.retainHandling = req.retainHandling ?? 0;
      sub.id = id;
    } else {
      sub = new Subscription(
        s,
        filter,
        req.qos,
        bridge || req.noLocal === true,
        bridge || req.retainAsPublished === true,
        req.retainHandling ?? 0,
        id,
        shared,
      );
      s.subs.set(filter, sub);
      b.router.add(sub);
    }
    if (s.persistent && b.persist !== null) b.persist.subPut(s, sub);
    // Mosquitto's subscribe line: CLIENTID QOS FILTER.
    if (b.logSubscribe) b.log('notice', `${conn.clientId} ${req.qos} ${filter}`, { logType: 'subscribe' });
    codes.push(req.qos);
    const rh = sub.retainHandling;
    if (!shared && rh !== 2 && !(rh === 1 && existed)) (retained ??= []).push(sub);
  }
  if (s.persistent && b.persist !== null) b.persist.holdUntilCommit(conn);
  conn.sendPacket({ type: 'suback', packetId: p.packetId, reasonCodes: codes });
  if (retained === null) return;
  const acl = b.aclFor(s);
  for (const sub of retained) {
    const ids = sub.id !== undefined ? [sub.id] : undefined;
    const filter = sub.shared ? (splitShared(sub.filter)?.filter ?? sub.filter) : sub.filter;
    b.retain.match(filter, (msg) => {
      if (
        acl !== undefined &&
        !s.internal &&
        !acl.allowed('read', { clientId: s.clientId, username: s.username }, msg.topic)
      )
        return;
      deliver(b, s, msg, sub.qos < msg.qos ? sub.qos : msg.qos, true, ids, null);
    });
  }
}
