/**
 * `$SYS/broker/...`: Mosquitto's topic names, published retained every `sysInterval` seconds
 * (and not persisted: they describe this run).
 */
import type { Broker } from './broker.ts';
import { makeMessage } from './message.ts';

export const BROKER_VERSION = 'broker-lite 0.1.0';

const BRIDGE_STATE_PREFIX = '$SYS/broker/connection/';

/**
 * Whether a client's PUBLISH or will may go to `topic` as far as `$SYS` goes (the ACL decides
 * the rest): `$SYS` is the broker's own except `$SYS/broker/connection/+/state`, where bridges
 * from other brokers write their connection state (`1`, and `0` as their will), as in Mosquitto.
 */
export function clientMayWriteSys(topic: string): boolean {
  if (!topic.startsWith('$SYS')) return true;
  const slash = topic.indexOf('/', BRIDGE_STATE_PREFIX.length);
  return topic.startsWith(BRIDGE_STATE_PREFIX) && slash === topic.length - 6 && topic.endsWith('/state');
}

export function publishSys(b: Broker): void {
  const st = b.stats();
  const values: Array<[string, string | number]> = [
    ['version', BROKER_VERSION],
    ['uptime', `${st.uptimeSeconds} seconds`],
    ['clients/connected', st.clientsConnected],
    ['clients/active', st.clientsConnected],
    ['clients/disconnected', st.clientsTotal - st.clientsConnected],
    ['clients/total', st.clientsTotal],
    ['messages/received', st.messagesReceived],
    ['messages/sent', st.messagesSent],
    ['messages/dropped', st.messagesDropped],
    ['publish/messages/received', st.publishReceived],
    ['publish/messages/sent', st.publishSent],
    ['publish/messages/dropped', st.messagesDropped],
    ['bytes/received', st.bytesReceived],
    ['bytes/sent', st.bytesSent],
    ['subscriptions/count', st.subscriptions],
    ['retained messages/count', st.retained],
    ['store/messages/count', st.queuedMessages],
  ];
  for (const [name, value] of values) {
    const topic = `$SYS/broker/${name}`;
    const payload = Buffer.from(String(value));
    const prev = b.retain.get(topic);
    if (prev !== undefined && Buffer.compare(prev.payload, payload) === 0) continue;
    b.publish(makeMessage(topic, payload, 0, true, undefined, Date.now()));
  }
}
