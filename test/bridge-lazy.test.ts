/**
 * start_type lazy against Debian's mosquitto: the bridge stays disconnected until more than
 * `threshold` messages are queued, then delivers them in order, and disconnects after
 * `idle_timeout` seconds with no traffic and an empty queue.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, Recorder, startBridged } from './bridge-helpers.ts';
import { hasMosquitto, startMosquitto } from './helpers/mosquitto.ts';

const HAS = hasMosquitto();
if (!HAS) console.warn('mosquitto not installed (/usr/sbin/mosquitto): lazy bridge test skipped');

const cleanup: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

describe.skipIf(!HAS)('start_type lazy bridge to mosquitto', () => {
  it('connects past the threshold, delivers in order, disconnects when idle, starts again', async () => {
    const m = await startMosquitto();
    cleanup.push(() => m.stop());
    const b = await startBridged(
      [
        'connection lazy',
        `address 127.0.0.1:${m.port}`,
        'topic lz/# out 1',
        'start_type lazy',
        'threshold 3',
        'idle_timeout 1',
        'restart_timeout 1',
        'cleansession true',
      ].join('\n'),
    );
    cleanup.push(() => b.close());
    const bridge = b.bridges.list[0];
    const up = await Recorder.open(m.port, ['lz/#']);
    const local = await Recorder.open(b.port, []);
    cleanup.push(
      () => up.end(),
      () => local.end(),
    );
    expect(bridge.state).toBe('idle');

    // Three queued (= threshold): still idle, nothing upstream, no connection tried.
    for (let i = 1; i <= 3; i++) await local.client.publish('lz/a', `m${i}`, { qos: 1 });
    await eventually(() => bridge.stats().queue.count === 3, 'three messages queued');
    expect(bridge.state).toBe('idle');
    expect(bridge.stats().connects + bridge.stats().connectFailures).toBe(0);
    expect(b.logs.some((l) => l.message === 'bridge connected')).toBe(false);

    // The fourth passes the threshold: connect, and all four arrive in order.
    await local.client.publish('lz/a', 'm4', { qos: 1 });
    await b.waitLog((l) => l.message === 'bridge connected');
    await up.until(() => up.on('lz/a').length >= 4, 'four messages upstream');
    expect(up.on('lz/a').map((x) => x.payload)).toEqual(['m1', 'm2', 'm3', 'm4']);
    await eventually(() => bridge.stats().queue.count === 0, 'queue drained');

    // Connected, a message goes straight through.
    await local.client.publish('lz/a', 'm5', { qos: 1 });
    await up.until(() => up.on('lz/a').length >= 5, 'the fifth upstream');

    // idle_timeout 1: disconnected about a second after the last message.
    const idle = await b.waitLog((l) => l.message.startsWith('bridge idle'), 5000);
    expect(idle.fields?.bridge).toBe('lazy');
    expect(bridge.state).toBe('idle');
    expect(bridge.stats().connects).toBe(1);

    // Below the threshold again: kept on disk, not sent.
    await local.client.publish('lz/a', 'm6', { qos: 1 });
    await eventually(() => bridge.stats().queue.count === 1, 'one message queued');
    expect(bridge.state).toBe('idle');
    expect(up.on('lz/a').length).toBe(5);

    // Past it: a second connection delivers the backlog.
    for (let i = 7; i <= 9; i++) await local.client.publish('lz/a', `m${i}`, { qos: 1 });
    await up.until(() => up.on('lz/a').length >= 9, 'the backlog after the restart');
    expect(up.on('lz/a').map((x) => x.payload)).toEqual([
      'm1',
      'm2',
      'm3',
      'm4',
      'm5',
      'm6',
      'm7',
      'm8',
      'm9',
    ]);
    expect(bridge.stats().connects).toBe(2);
  }, 20_000);
});
