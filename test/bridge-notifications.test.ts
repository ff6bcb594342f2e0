/**
 * Bridge notifications between two broker-lites: the retained state topic on each side (`1`
 * while connected, `0` after: on the remote side as the bridge's will when the link is cut),
 * `notification_topic`, `notifications_local_only`, and which `$SYS` topics a client may write
 * (only `$SYS/broker/connection/+/state`, as in Mosquitto 2.0).
 */
import type { Broker } from '@mqtt-edge/broker-lite';
import { connect } from '@mqtt-edge/client';
import { afterEach, describe, expect, it } from 'vitest';
import { type BridgedBroker, forwardPort, Recorder, startBridged } from './bridge-helpers.ts';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers.length = 0;
});

async function broker(lines: string[]): Promise<BridgedBroker> {
  const b = await startBridged(lines.join('\n'));
  closers.push(() => b.close());
  return b;
}

function retained(b: Broker, topic: string): string | undefined {
  const m = b.retain.get(topic);
  return m === undefined ? undefined : Buffer.from(m.payload).toString();
}

/**
 * An upstream broker-lite and a gateway bridged to it through a forwarder (to cut the link
 * without a DISCONNECT), topic f/# out; resolves once a fence message crossed the bridge.
 */
async function bridged(extra: string[]) {
  const up = await broker([]);
  const fwd = await forwardPort(0, up.port);
  closers.push(() => fwd.close());
  const gw = await broker([
    'connection nt',
    `address 127.0.0.1:${fwd.port}`,
    'remote_clientid gw-nt',
    'topic f/# out 1',
    'restart_timeout 1',
    'cleansession true',
    ...extra,
  ]);
  await gw.waitLog((l) => l.message === 'bridge connected');
  const there = await Recorder.open(up.port, ['f/#']);
  closers.push(() => there.end());
  const here = await Recorder.open(gw.port, []);
  closers.push(() => here.end());
  await here.client.publish('f/fence', 'x', { qos: 1 });
  // The state is published right after the CONNACK, before anything queued: once the fence is
  // there, so is the state (one TCP connection, in order).
  await there.until(() => there.on('f/fence').length === 1, 'the fence upstream');
  /** Cuts the link; resolves once the upstream saw the bridge's connection end. */
  const cut = async () => {
    await fwd.close();
    await up.waitLog((l) => l.message === 'client disconnected' && l.fields?.clientId === 'gw-nt');
  };
  return { up, gw, cut };
}

describe('bridge notifications into a broker-lite upstream', () => {
  it('default: $SYS/broker/connection/REMOTE_CLIENTID/state is 1 on both sides, then 0 (the will upstream)', async () => {
    const { up, gw, cut } = await bridged([]);
    const topic = '$SYS/broker/connection/gw-nt/state';
    expect(retained(up.broker, topic)).toBe('1');
    expect(retained(gw.broker, topic)).toBe('1');
    expect(up.logs.filter((l) => l.message === 'publish denied')).toEqual([]);
    // A subscriber upstream gets it as a retained message.
    const watcher = await Recorder.open(up.port, ['$SYS/broker/connection/+/state']);
    closers.push(() => watcher.end());
    await watcher.until(() => watcher.on(topic).length === 1, 'retained state upstream');
    expect(watcher.on(topic)[0]).toMatchObject({ payload: '1', retain: true });
    await cut();
    await watcher.until(() => watcher.on(topic).some((m) => m.payload === '0'), 'the will upstream');
    expect(retained(up.broker, topic)).toBe('0');
    await gw.waitLog((l) => l.message === 'bridge disconnected');
    expect(retained(gw.broker, topic)).toBe('0');
  });

  it('notification_topic: the state goes to that topic on both sides, not to $SYS', async () => {
    const { up, gw, cut } = await bridged(['notification_topic bridges/gw/state']);
    expect(retained(up.broker, 'bridges/gw/state')).toBe('1');
    expect(retained(gw.broker, 'bridges/gw/state')).toBe('1');
    expect(retained(up.broker, '$SYS/broker/connection/gw-nt/state')).toBeUndefined();
    expect(retained(gw.broker, '$SYS/broker/connection/gw-nt/state')).toBeUndefined();
    await cut();
    expect(retained(up.broker, 'bridges/gw/state')).toBe('0');
  });

  it('notifications_local_only: the state here only; nothing upstream, not even a will', async () => {
    const { up, gw, cut } = await bridged(['notifications_local_only true']);
    const topic = '$SYS/broker/connection/gw-nt/state';
    expect(retained(gw.broker, topic)).toBe('1');
    expect(retained(up.broker, topic)).toBeUndefined();
    await cut();
    expect(retained(up.broker, topic)).toBeUndefined();
    expect(up.logs.filter((l) => l.message === 'sending will')).toEqual([]);
  });

  it('notifications false: no state on either side', async () => {
    const { up, gw, cut } = await bridged(['notifications false']);
    const topic = '$SYS/broker/connection/gw-nt/state';
    expect(retained(gw.broker, topic)).toBeUndefined();
    expect(retained(up.broker, topic)).toBeUndefined();
    await cut();
    expect(retained(up.broker, topic)).toBeUndefined();
  });
});

describe('$SYS publishes from clients', () => {
  it('only $SYS/broker/connection/+/state is accepted; other $SYS topics are refused', async () => {
    const b = await broker([]);
    const c = connect({ host: '127.0.0.1', port: b.port, protocolVersion: 5, reconnect: false });
    closers.push(() => c.end());
    await new Promise<void>((r) => c.once('connect', () => r()));
    const ok = await c.publish('$SYS/broker/connection/other-gw/state', '1', { qos: 1, retain: true });
    // Accepted and retained; 0x10 (no matching subscribers) as from Mosquitto, nobody subscribes.
    expect(ok.reasonCode).toBe(0x10);
    expect(retained(b.broker, '$SYS/broker/connection/other-gw/state')).toBe('1');
    for (const topic of [
      '$SYS/broker/connection/other-gw/messages/sent',
      '$SYS/broker/connection/other-gw',
      '$SYS/broker/connection/a/b/state',
      '$SYS/broker/uptime',
      '$SYS/x/state',
    ]) {
      // 5.0: PUBACK 0x87 (not authorised), which the client reports as a rejection.
      await expect(c.publish(topic, '9', { qos: 1, retain: true }), topic).rejects.toThrow(/0x87/);
      expect(retained(b.broker, topic), topic).toBeUndefined();
    }
  });
});
