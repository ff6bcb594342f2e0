/**
 * Issue 12 (bridge) point 3 against Debian's mosquitto as the upstream: a message larger than
 * the gateway accepts never closes the bridge's local session. MQTT 5: mosquitto honours the
 * maximum packet size the bridge advertises and does not send it; 3.1.1: the bridge receives it,
 * drops it (counted) and acknowledges it.
 */
import { describe, expect, it } from 'vitest';
import { closeAfterEach, Recorder, startBridged } from './bridge-helpers.ts';
import { hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';

const HAS = hasMosquitto();
const closers = closeAfterEach();

describe.skipIf(!HAS)(
  `issue 12 (bridge): too large for the gateway, from mosquitto${HAS ? '' : ' (skipped: /usr/sbin/mosquitto not installed)'}`,
  () => {
    for (const version of ['mqttv50', 'mqttv311'] as const) {
      it(`issue 12 (bridge): ${version}: a message over the gateway's max_packet_size does not close the bridge's local session; the next one arrives`, async () => {
        const m = await startMosquitto();
        closers.push(() => m.stop());
        const gw = await startBridged(
          [
            'connection up',
            `address 127.0.0.1:${m.port}`,
            'topic in/# in 1',
            `bridge_protocol_version ${version}`,
            'restart_timeout 1',
          ].join('\n'),
          undefined,
          0,
          {},
          { maxPacketSize: 10_000 },
        );
        closers.push(() => gw.close());
        await gw.waitLog((l) => l.message === 'bridge connected');
        const local = await Recorder.open(gw.port, ['in/#']);
        closers.push(() => local.end());
        const pub = await Recorder.open(m.port, []);
        closers.push(() => pub.end());
        await pub.client.publish('in/big', Buffer.alloc(20_000, 0x62), { qos: 1 });
        await pub.client.publish('in/after', 'small', { qos: 1 });
        await local.until(() => local.got.length >= 1, 'in/after here');
        expect(local.got.map((x) => x.topic)).toEqual(['in/after']);
        expect(gw.logs.filter((l) => l.message === 'bridge local session down')).toEqual([]);
        const st = gw.bridges.stats()[0];
        if (version === 'mqttv50') {
          // Not sent at all: mosquitto knows the bridge's maximum packet size.
          expect([st.inReceived, st.inDropped]).toEqual([1, 0]);
        } else {
          expect([st.inReceived, st.inDropped]).toEqual([2, 1]);
        }
      });
    }
  },
);
