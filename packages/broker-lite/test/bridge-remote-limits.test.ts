/**
 * Issue 16.4: what a remote cannot take, handled by the bridge rather than stalling it. Against a
 * scripted remote over a real socket (the same cases run against NATS 2.9 itself in
 * test/fleet-nats-gaps.test.ts):
 * - an MQTT 5 remote whose CONNACK says Maximum QoS 1: QoS 2 goes out at QoS 1 (not refused by
 *   the client and dropped), with one warning;
 * - a 3.1.1 remote that closes the connection on QoS 2 (NATS 2.9): after three such closes QoS 2
 *   goes out at QoS 1, the message in flight too;
 * - a remote that closes the connection on one message every time: that message is dropped
 *   (counted, logged) after three closes, the ones behind it go on;
 * - a remote that holds a message for seconds before closing (a cluster electing leaders) is no
 *   such case: nothing is dropped.
 */
import { encode, PacketParser, type PublishPacket } from '@mqtt-edge/codec';
import { describe, expect, it } from 'vitest';
import { closeAfterEach, Recorder, startBridged, tcpServer } from '../../../test/bridge-helpers.ts';

const closers = closeAfterEach();

interface Remote {
  port: number;
  /** PUBLISHes it took (acknowledged), in order, but the bridge's `$SYS` notifications. */
  taken: PublishPacket[];
  connects: number;
}

/**
 * A remote that answers CONNECT (5.0: with `maximumQoS` when given), acknowledges QoS 1 and 2,
 * and closes the connection on a PUBLISH `refuse` picks (after `holdMs` when given).
 */
async function scriptedRemote(rules: {
  maximumQoS?: 0 | 1;
  refuse?: (p: PublishPacket) => boolean;
  holdMs?: number;
  /** Closes each connection this long after its CONNACK, taking nothing (a session taken over). */
  kickAfterMs?: () => number | undefined;
}): Promise<Remote> {
  const remote: Remote = { port: 0, taken: [], connects: 0 };
  const server = await tcpServer(closers, (s) => {
    const parser = new PacketParser();
    let version: 3 | 4 | 5 = 4;
    let refused = false;
    s.on('data', (chunk: Buffer) => {
      if (refused) return;
      try {
        parser.push(new Uint8Array(chunk), (p) => {
          if (refused) return;
          if (p.type === 'connect') {
            version = p.protocolVersion;
            remote.connects++;
            const properties =
              version === 5 && rules.maximumQoS !== undefined ? { maximumQoS: rules.maximumQoS } : undefined;
            s.write(encode({ type: 'connack', sessionPresent: false, reasonCode: 0, properties }, version));
            const kick = rules.kickAfterMs?.();
            if (kick !== undefined) {
              refused = true;
              setTimeout(() => s.end(), kick);
            }
          } else if (p.type === 'publish') {
            if (rules.refuse?.(p)) {
              refused = true;
              // What it acknowledged before goes out first (end, not destroy).
              if (rules.holdMs === undefined) s.end();
              else setTimeout(() => s.end(), rules.holdMs);
              return;
            }
            // The bridge's own state notifications ($SYS/...) are not what the tests count.
            if (!p.topic.startsWith('$')) remote.taken.push(p);
            if (p.qos === 1) s.write(encode({ type: 'puback', packetId: p.packetId! }, version));
            if (p.qos === 2) s.write(encode({ type: 'pubrec', packetId: p.packetId! }, version));
          } else if (p.type === 'pubrel') s.write(encode({ type: 'pubcomp', packetId: p.packetId }, version));
          else if (p.type === 'pingreq') s.write(encode({ type: 'pingresp' }, version));
        });
      } catch {
        s.destroy();
      }
    });
  });
  remote.port = server.port;
  return remote;
}

async function bridgedTo(remote: Remote, lines: string[]) {
  const gw = await startBridged(
    ['connection r', `address 127.0.0.1:${remote.port}`, 'remote_clientid gw-r', ...lines].join('\n'),
  );
  closers.push(() => gw.close());
  await gw.waitLog((l) => l.message === 'bridge connected');
  const pub = await Recorder.open(gw.port, [], { clientId: 'pub' });
  closers.push(() => pub.end());
  return { gw, pub };
}

async function until(pred: () => boolean, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('issue 16.4: what the remote cannot take', () => {
  it('issue 16.4: an MQTT 5 remote with Maximum QoS 1: QoS 2 goes out at QoS 1, one warning, nothing refused', async () => {
    const remote = await scriptedRemote({ maximumQoS: 1 });
    const { gw, pub } = await bridgedTo(remote, ['topic q/# out 2', 'bridge_protocol_version mqttv50']);
    for (let i = 0; i < 3; i++) await pub.client.publish('q/x', `m${i}`, { qos: 2 });
    await until(() => remote.taken.length === 3, 'three messages at the remote', 5000);
    expect(remote.taken.map((p) => [p.qos, Buffer.from(p.payload).toString()])).toEqual([
      [1, 'm0'],
      [1, 'm1'],
      [1, 'm2'],
    ]);
    expect(gw.logs.filter((l) => l.message.includes('takes at most QoS 1'))).toHaveLength(1);
    await until(() => gw.bridges.stats()[0].outAcked === 3, 'all acknowledged', 5000);
    expect(gw.bridges.stats()[0].outDropped).toBe(0);
  });

  it('issue 16.4: a 3.1.1 remote that closes the connection on QoS 2: after three closes QoS 2 goes out at QoS 1', async () => {
    const remote = await scriptedRemote({ refuse: (p) => p.qos === 2 });
    const { gw, pub } = await bridgedTo(remote, ['topic q/# out 2']);
    await pub.client.publish('q/x', 'first', { qos: 2 });
    await pub.client.publish('q/x', 'second', { qos: 2 });
    await until(() => remote.taken.length === 2, 'both at the remote', 10_000);
    expect(remote.taken.map((p) => [p.qos, Buffer.from(p.payload).toString()])).toEqual([
      [1, 'first'],
      [1, 'second'],
    ]);
    // Three connections ended on it (the first one included: nothing was acknowledged on it
    // either), the fourth took it.
    expect(remote.connects).toBe(4);
    const warned = gw.logs.filter((l) => l.message.includes('does not take QoS 2'));
    expect(warned).toHaveLength(1);
    expect(warned[0].fields).toMatchObject({ topic: 'q/x', qos: 2, closes: 3 });
    await until(() => gw.bridges.stats()[0].outAcked === 2, 'both acknowledged', 5000);
    expect(gw.bridges.stats()[0].outDropped).toBe(0);
  });

  it('issue 16.4: a message the remote closes the connection on every time is dropped after three closes; the rest go on', async () => {
    const remote = await scriptedRemote({ refuse: (p) => p.topic.includes('.') });
    const { gw, pub } = await bridgedTo(remote, ['topic q/# out 1']);
    for (const t of ['q/a', 'q/b.c', 'q/d']) await pub.client.publish(t, t, { qos: 1 });
    await until(() => remote.taken.length === 2, 'the two others at the remote', 10_000);
    expect(remote.taken.map((p) => p.topic)).toEqual(['q/a', 'q/d']);
    const dropped = gw.logs.filter((l) => l.message.includes('closes the connection on this message'));
    expect(dropped.map((l) => [l.level, l.fields?.topic])).toEqual([['error', 'q/b.c']]);
    await until(() => gw.bridges.stats()[0].outAcked === 2, 'both acknowledged', 5000);
    expect(gw.bridges.stats()[0]).toMatchObject({ outDropped: 1, queue: { count: 0 } });
  });

  it('issue 16.4: a session taken over again and again (two gateways, one client id) is no refusal: nothing dropped', async () => {
    // Each of the first five connections is closed 300 ms after its CONNACK with nothing taken,
    // as when another client with the same id keeps taking the session; then they last.
    let kicks = 5;
    const remote = await scriptedRemote({ kickAfterMs: () => (kicks-- > 0 ? 300 : undefined) });
    const { gw, pub } = await bridgedTo(remote, ['topic q/# out 1']);
    await pub.client.publish('q/x', 'kept', { qos: 1 });
    await until(() => remote.taken.length === 1, 'the message at the remote', 20_000);
    expect(Buffer.from(remote.taken[0].payload).toString()).toBe('kept');
    expect(remote.connects).toBeGreaterThanOrEqual(6);
    expect(gw.logs.filter((l) => l.message.includes('closes the connection on'))).toEqual([]);
    expect(gw.bridges.stats()[0].outDropped).toBe(0);
  }, 30_000);

  it('issue 16.4: a remote that holds the message for seconds before it closes (an election) loses nothing', async () => {
    let holds = 3;
    const remote = await scriptedRemote({ refuse: () => holds-- > 0, holdMs: 2300 });
    const { gw, pub } = await bridgedTo(remote, ['topic q/# out 1']);
    await pub.client.publish('q/x', 'held', { qos: 1 });
    await until(() => remote.taken.length === 1, 'the message at the remote', 20_000);
    expect(Buffer.from(remote.taken[0].payload).toString()).toBe('held');
    expect(remote.connects).toBe(4);
    expect(gw.logs.filter((l) => l.message.includes('closes the connection on'))).toEqual([]);
    expect(gw.bridges.stats()[0].outDropped).toBe(0);
  }, 30_000);
});
