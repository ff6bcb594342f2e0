/**
 * The other direction of interop: a Debian mosquitto gateway bridged into broker-lite with its
 * own bridge (`topic # both 1`, try_private at its default, true). broker-lite takes the
 * bridge bit as Mosquitto does, so nothing the bridge brings in is sent back to it: every
 * message arrives once on each side, and retained flags cross intact.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Recorder, startBridged } from './bridge-helpers.ts';
import { hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';

const HAS = hasMosquitto();
if (!HAS)
  console.warn('mosquitto not installed (/usr/sbin/mosquitto): mosquitto-to-broker-lite bridge test skipped');

const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe.skipIf(!HAS)('mosquitto bridged into broker-lite', () => {
  it('topic # both: each message once on each side, the bridge bit seen, retain kept', async () => {
    const bl = await startBridged('');
    cleanup.push(() => bl.close());
    const m = await startMosquitto({
      config: [
        'connection gw',
        `address 127.0.0.1:${bl.port}`,
        'topic # both 1',
        'bridge_protocol_version mqttv311',
        'cleansession true',
        'notifications false',
        'restart_timeout 1',
      ].join('\n'),
    });
    cleanup.push(() => m.stop());
    const connected = await bl.waitLog((l) => l.message === 'client connected' && l.fields?.bridge === true);
    expect(connected.fields?.protocol).toBe(4);

    const rBl = await Recorder.open(bl.port, ['t/#']);
    const rM = await Recorder.open(m.port, ['t/#']);
    cleanup.push(
      () => rBl.end(),
      () => rM.end(),
    );
    // Mosquitto subscribes over its bridge after the CONNACK: wait until a probe crosses it.
    for (let i = 0; ; i++) {
      await rBl.client.publish(`t/probe/${i}`, 'p', { qos: 1 });
      try {
        await rM.until(() => rM.got.some((g) => g.topic.startsWith('t/probe/')), 'a probe', 200);
        break;
      } catch (err) {
        if (i >= 50) throw err;
      }
    }
    const N = 20;
    for (let i = 0; i < N; i++) {
      await rBl.client.publish(`t/bl/${i}`, 'x', { qos: 1 });
      await rM.client.publish(`t/m/${i}`, 'y', { qos: 1 });
    }
    await rM.client.publish('t/retained', 'r', { qos: 1, retain: true });
    await rBl.client.publish('t/fence-bl', 'f', { qos: 1 });
    await rM.client.publish('t/fence-m', 'f', { qos: 1 });
    for (const r of [rBl, rM])
      await r.until(() => r.on('t/fence-bl').length > 0 && r.on('t/fence-m').length > 0, 'fences');
    for (const r of [rBl, rM]) {
      for (let i = 0; i < N; i++)
        for (const t of [`t/bl/${i}`, `t/m/${i}`]) expect(r.on(t).length, `${t} copies`).toBe(1);
      expect(r.on('t/retained').length).toBe(1);
    }
    // Retained as published into broker-lite: a new subscriber there gets it from the store.
    const late = await Recorder.open(bl.port, ['t/retained']);
    cleanup.push(() => late.end());
    await late.until(() => late.got.length > 0, 'the retained message');
    expect(late.got[0]).toMatchObject({ topic: 't/retained', payload: 'r', retain: true });
  }, 30_000);

  it('default notifications: the state topic on broker-lite reads 1 while connected, 0 (the will) once mosquitto is killed', async () => {
    const bl = await startBridged('');
    cleanup.push(() => bl.close());
    const watcher = await Recorder.open(bl.port, ['$SYS/broker/connection/+/state']);
    cleanup.push(() => watcher.end());
    const m = await startMosquitto({
      config: [
        'connection gw',
        `address 127.0.0.1:${bl.port}`,
        'remote_clientid mgw',
        'topic n/# out 1',
        'bridge_protocol_version mqttv311',
        'cleansession true',
        'restart_timeout 1',
      ].join('\n'),
    });
    cleanup.push(() => m.stop());
    // Mosquitto 2.0 names the state topic after remote_clientid.
    const topic = '$SYS/broker/connection/mgw/state';
    await watcher.until(() => watcher.on(topic).some((x) => x.payload === '1'), 'state 1 from mosquitto');
    expect(bl.logs.filter((l) => l.message === 'publish denied')).toEqual([]);
    const state = () => {
      const r = bl.broker.retain.get(topic);
      return r === undefined ? undefined : Buffer.from(r.payload).toString();
    };
    expect(state()).toBe('1');
    // SIGKILL: no DISCONNECT, so broker-lite publishes mosquitto's will.
    await m.kill();
    await watcher.until(() => watcher.on(topic).some((x) => x.payload === '0'), 'the will (0)');
    expect(state()).toBe('0');
    const seen = watcher.on(topic).map((x) => x.payload);
    expect([seen[0], seen.at(-1)]).toEqual(['1', '0']);
  }, 20_000);
});
