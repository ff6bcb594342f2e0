/**
 * Issue 15.2: `log_dest topic` beside Debian's mosquitto. Both run `log_dest topic`, `log_type
 * all` and a `log_timestamp_format`; a watcher subscribes `$SYS/broker/log/#` at QoS 2 on each,
 * and the same client connects, subscribes, unsubscribes and leaves. broker-lite must publish on
 * every log topic Mosquitto used, with the same QoS and retain flag, the timestamp in the same
 * form, and the subscribe and unsubscribe lines word for word.
 *
 * Deliberate differences: the text of other lines is broker-lite's own (`client connected
 * clientId=... remote=...`, not `New client connected from ... as ...`); a line over 200 a second
 * is not published (docs/broker-lite-config.md, "log_dest topic").
 */
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { BrokerProcess } from '../packages/broker-lite/test/helpers/broker-process.ts';
import { eventually } from './bridge-helpers.ts';
import { hasMosquitto, type Mosquitto, startMosquitto } from './helpers/mosquitto.ts';

if (!hasMosquitto())
  console.warn('log-topic-mosquitto: /usr/sbin/mosquitto missing, skipped (apt-get install mosquitto)');

interface Line {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
}

const CONF = 'log_dest topic\nlog_dest stderr\nlog_type all\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\n';
const STAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: /;

async function scenario(port: number): Promise<Line[]> {
  const lines: Line[] = [];
  const watcher = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: `watch-${port}`, reconnectPeriod: 0 });
  watcher.on('message', (topic, payload, packet) =>
    lines.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }),
  );
  await new Promise<void>((resolve, reject) => {
    watcher.once('connect', () => resolve());
    watcher.once('error', reject);
  });
  await watcher.subscribeAsync('$SYS/broker/log/#', { qos: 2 });
  const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: 'dev-log-1',
    reconnectPeriod: 0,
  });
  await dev.subscribeAsync('sensors/+/t', { qos: 1 });
  await dev.unsubscribeAsync('sensors/+/t');
  await dev.endAsync();
  await eventually(
    () =>
      lines.some(
        (l) =>
          l.topic === '$SYS/broker/log/N' &&
          l.payload.includes('dev-log-1') &&
          /disconnected/.test(l.payload),
      ),
    `the disconnect line on ${port}`,
  );
  await watcher.endAsync();
  return lines;
}

let mosq: Mosquitto | undefined;
let lite: BrokerProcess | undefined;
afterAll(async () => {
  await mosq?.stop();
  await lite?.stop();
});

describe.skipIf(!hasMosquitto())('issue 15.2: log_dest topic as Mosquitto publishes it', () => {
  it('issue 15.2: the same log topics, QoS 2, not retained, same timestamp form, subscribe lines word for word', async () => {
    mosq = await startMosquitto({ config: CONF });
    lite = await BrokerProcess.startText(CONF);
    const fromMosquitto = await scenario(mosq.port);
    const fromLite = await scenario(lite.port);
    const topics = (ls: Line[]) => [...new Set(ls.map((l) => l.topic))].sort();
    const missing = topics(fromMosquitto).filter((t) => !topics(fromLite).includes(t));
    expect(missing, 'log topics Mosquitto used and broker-lite did not').toEqual([]);
    for (const l of fromLite) {
      expect(l.payload, l.topic).toMatch(STAMP);
      expect([l.topic, l.qos, l.retain]).toEqual([l.topic, 2, false]);
    }
    for (const l of fromMosquitto) expect(l.payload, l.topic).toMatch(STAMP);
    const exact = (ls: Line[], topic: string) =>
      ls
        .filter((l) => l.topic === topic && l.payload.includes('dev-log-1'))
        .map((l) => l.payload.replace(STAMP, ''));
    for (const t of ['$SYS/broker/log/M/subscribe', '$SYS/broker/log/M/unsubscribe'])
      expect(exact(fromLite, t), t).toEqual(exact(fromMosquitto, t));
    expect(exact(fromLite, '$SYS/broker/log/M/subscribe')).toEqual(['dev-log-1 1 sensors/+/t']);
  });
});
