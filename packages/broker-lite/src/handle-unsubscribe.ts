/** UNSUBSCRIBE: removes each filter from the session and the index; UNSUBACK. */
import { ReasonCode, type UnsubscribePacket } from '@mqtt-edge/codec';
import type { Connection } from './connection.ts';
import { tooDeep } from './topic-levels.ts';

export function handleUnsubscribe(conn: Connection, p: UnsubscribePacket): void {
  const b = conn.broker;
  const s = conn.session;
  if (s === null) return;
  const codes: number[] = [];
  for (const filter of p.topicFilters) {
    // Mosquitto's unsubscribe line, for every filter asked: CLIENTID FILTER.
    if (b.logUnsubscribe) b.log('notice', `${conn.clientId} ${filter}`, { logType: 'unsubscribe' });
    // Never subscribed (SUBSCRIBE refuses it); 5.0 can say why, 3.1.1 acknowledges as usual.
    if (conn.version === 5 && tooDeep(filter, b.maxTopicLevels)) {
      codes.push(ReasonCode.TopicFilterInvalid);
      continue;
    }
    const sub = s.subs.get(filter);
    if (sub === undefined) {
      codes.push(ReasonCode.NoSubscriptionExisted);
      continue;
    }
    s.subs.delete(filter);
    b.router.remove(sub);
    if (s.persistent && b.persist !== null) b.persist.subDel(s, filter);
    codes.push(0);
  }
  if (s.persistent && b.persist !== null) b.persist.holdUntilCommit(conn);
  conn.sendPacket(
    conn.version === 5
      ? { type: 'unsuback', packetId: p.packetId, reasonCodes: codes }
      : { type: 'unsuback', packetId: p.packetId },
  );
}
