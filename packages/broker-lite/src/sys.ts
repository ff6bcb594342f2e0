/**
 * `$SYS/broker/...`: Mosquitto's topic names, published retained every `sysInterval` seconds
 * (and not persisted: they describe this run).
 */
import type { Broker, BrokerCounters } from './broker.ts';
import { makeMessage } from './message.ts';
import { LOAD_WINDOWS, LoadAverage } from './sys-load.ts';

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

/** The counters behind `$SYS/broker/load/NAME/{1min,5min,15min}`, as Mosquitto names them. */
const LOADS: ReadonlyArray<[string, (c: BrokerCounters) => number]> = [
  ['messages/received', (c) => c.packetsIn],
  ['messages/sent', (c) => c.packetsOut],
  ['publish/dropped', (c) => c.dropped],
  ['publish/received', (c) => c.msgsIn],
  ['publish/sent', (c) => c.msgsOut],
  ['bytes/received', (c) => c.bytesIn],
  ['bytes/sent', (c) => c.bytesOut],
  ['sockets', (c) => c.sockets],
  ['connections', (c) => c.connects],
];

/**
 * The `$SYS/broker/...` tree of one broker: Mosquitto 2.0's topics, published retained every
 * sys_interval (and once at the start), each only when its value changed. Figures are read from
 * counters the broker keeps anyway; nothing here runs on the message path.
 */
export class SysTree {
  private readonly loads: LoadAverage[];
  private last = Date.now();
  private clientsMaximum = 0;

  constructor(private readonly b: Broker) {
    this.loads = LOADS.map(([, read]) => new LoadAverage(read(b.counters)));
  }

  publish(now = Date.now()): void {
    const b = this.b;
    const st = b.stats();
    const c = b.counters;
    const seconds = (now - this.last) / 1000;
    this.last = now;
    if (st.clientsTotal > this.clientsMaximum) this.clientsMaximum = st.clientsTotal;
    const disconnected = st.clientsTotal - st.clientsConnected;
    const stored = st.retained + st.queuedMessages;
    const values: Array<[string, string | number]> = [
      ['version', BROKER_VERSION],
      ['uptime', `${st.uptimeSeconds} seconds`],
      ['clients/total', st.clientsTotal],
      ['clients/maximum', this.clientsMaximum],
      ['clients/connected', st.clientsConnected],
      ['clients/active', st.clientsConnected],
      ['clients/disconnected', disconnected],
      ['clients/inactive', disconnected],
      ['clients/expired', c.sessionsExpired],
      ['messages/stored', stored],
      ['store/messages/count', stored],
      ['store/messages/bytes', b.retain.bytes + st.queuedBytes],
      ['subscriptions/count', st.subscriptions],
      ['shared_subscriptions/count', b.router.sharedSubscriptions],
      ['retained messages/count', st.retained],
      // The process's resident memory, the figure memory_limit bounds (Mosquitto: its allocations).
      ['heap/current', process.memoryUsage.rss()],
      ['heap/maximum', process.resourceUsage().maxRSS * 1024],
      ['messages/received', st.messagesReceived],
      ['messages/sent', st.messagesSent],
      ['messages/dropped', st.messagesDropped],
      ['publish/messages/received', st.publishReceived],
      ['publish/messages/sent', st.publishSent],
      ['publish/messages/dropped', st.messagesDropped],
      ['publish/bytes/received', c.pubBytesIn],
      ['publish/bytes/sent', c.pubBytesOut],
      ['bytes/received', st.bytesReceived],
      ['bytes/sent', st.bytesSent],
    ];
    for (let i = 0; i < LOADS.length; i++) {
      const load = this.loads[i];
      load.update(LOADS[i][1](c), seconds);
      for (let w = 0; w < LOAD_WINDOWS.length; w++)
        values.push([`load/${LOADS[i][0]}/${LOAD_WINDOWS[w][0]}`, load.values[w].toFixed(2)]);
    }
    for (const [name, value] of values) {
      const topic = `$SYS/broker/${name}`;
      const payload = Buffer.from(String(value));
      const prev = b.retain.get(topic);
      if (prev !== undefined && Buffer.compare(prev.payload, payload) === 0) continue;
      b.publish(makeMessage(topic, payload, 0, true, undefined, now));
    }
  }
}
