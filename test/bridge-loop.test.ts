/**
 * Loops: two broker-lites bridged both ways on `#`. Each message must be delivered a bounded
 * number of times on each side, never echoed for ever. Counted per message after a fence that
 * went through the same paths later (an endless loop would have multiplied long before).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type BridgedBroker, Recorder, startBridged } from './bridge-helpers.ts';

const open: Array<{ close(): Promise<void> } | Recorder> = [];
afterEach(async () => {
  for (const o of open.reverse()) await (o instanceof Recorder ? o.end() : o.close());
  open.length = 0;
});

async function pair(aConf: (bPort: number) => string, bConf?: (aPort: number) => string) {
  // One bridge: B first, then A bridged to it.
  if (bConf === undefined) {
    const b = await startBridged('');
    open.push(b);
    const a = await startBridged(aConf(b.port));
    open.push(a);
    return { a, b };
  }
  // Cross bridges: each needs the other's port. A's bridge starts against a port B will take.
  const { freePort } = await import('./helpers/mosquitto.ts');
  const bPort = await freePort();
  const a = await startBridged(aConf(bPort));
  open.push(a);
  const b = await startBridged(bConf(a.port), undefined, bPort);
  open.push(b);
  return { a, b };
}

function bridge(name: string, port: number, version: string): string {
  return [
    `connection ${name}`,
    `address 127.0.0.1:${port}`,
    'topic # both 1',
    `bridge_protocol_version ${version}`,
    'restart_timeout 1',
    'cleansession true',
    'notifications false',
  ].join('\n');
}

async function exchange(a: BridgedBroker, b: BridgedBroker, maxCopies: number) {
  await a.waitLog((l) => l.message === 'bridge connected');
  const ra = await Recorder.open(a.port, ['t/#']);
  const rb = await Recorder.open(b.port, ['t/#']);
  open.push(ra, rb);
  const N = 20;
  for (let i = 0; i < N; i++) {
    await ra.client.publish(`t/a/${i}`, 'x', { qos: 1 });
    await rb.client.publish(`t/b/${i}`, 'y', { qos: 1 });
  }
  await ra.client.publish('t/fence-a', 'f', { qos: 1 });
  await rb.client.publish('t/fence-b', 'f', { qos: 1 });
  for (const r of [ra, rb])
    await r.until(() => r.on('t/fence-a').length > 0 && r.on('t/fence-b').length > 0, 'fences');
  for (const r of [ra, rb]) {
    for (let i = 0; i < N; i++) {
      for (const t of [`t/a/${i}`, `t/b/${i}`]) {
        const n = r.on(t).length;
        expect(n, `${t} delivered ${n} times`).toBeGreaterThanOrEqual(1);
        expect(n, `${t} delivered ${n} times`).toBeLessThanOrEqual(maxCopies);
      }
    }
  }
  return { ra, rb };
}

describe('bridge loops between two broker-lites', () => {
  it('MQTT 5, one bridge in both directions: each message exactly once on each side', async () => {
    const { a, b } = await pair((p) => bridge('ab', p, 'mqttv50'));
    const { ra, rb } = await exchange(a, b, 1);
    expect(ra.got.length).toBe(rb.got.length);
  }, 20_000);

  it('MQTT 3.1.1, one bridge in both directions: the bridge bit (try_private) makes it exactly once', async () => {
    const { a, b } = await pair((p) => bridge('ab', p, 'mqttv311'));
    // The remote broker-lite takes the CONNECT's bridge bit as Mosquitto does: the bridge's
    // subscriptions there are no-local, so nothing it brought in is sent back to it.
    await b.waitLog((l) => l.message === 'client connected' && l.fields?.bridge === true);
    const { ra, rb } = await exchange(a, b, 1);
    expect(ra.got.length).toBe(rb.got.length);
  }, 20_000);

  it('MQTT 3.1.1 with try_private false: the remote echo comes back once and stops', async () => {
    const { a, b } = await pair((p) => `${bridge('ab', p, 'mqttv311')}\ntry_private false`);
    // Without the bit 3.1.1 has no no-local: the remote sends our own messages back once; the
    // local side's no-local (the bridge's internal session) ends it there.
    await b.waitLog((l) => l.message === 'client connected' && l.fields?.bridge === undefined);
    await exchange(a, b, 2);
  }, 20_000);

  it('MQTT 5, two bridges (A to B and B to A) both on #: bounded by the path guard', async () => {
    const { a, b } = await pair(
      (p) => bridge('to-b', p, 'mqttv50'),
      (p) => bridge('to-a', p, 'mqttv50'),
    );
    await b.waitLog((l) => l.message === 'bridge connected');
    await exchange(a, b, 3);
    const stopped = a.bridges.stats()[0].loopsStopped + b.bridges.stats()[0].loopsStopped;
    expect(stopped).toBeGreaterThan(0);
  }, 20_000);
});
