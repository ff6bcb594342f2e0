/**
 * A full queue, under each drop policy, with the broker unreachable (a proxy refusing every
 * connection) and a device reporting every 20 ms. reject-new: readings are refused, not
 * acknowledged (the device keeps them), counted; once the broker is back every acknowledged
 * reading arrives. drop-oldest: everything is acknowledged, the oldest are dropped and
 * counted; what is missing at the subscriber is no more than what was counted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent, parseConfig, silentLogger } from '@mqtt-edge/agent';
import { createLinkPair, InProcessTransport } from '@mqtt-edge/firmware-sim';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy } from './helpers/fault-proxy.ts';
import { Recorder, startBrokerLite, until, verify, WatchedDevice } from './helpers/processes.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('agent: a full queue', () => {
  for (const policy of ['reject-new', 'drop-oldest'] as const) {
    it(`${policy}: drops counted, no acknowledged reading lost`, async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-full-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const broker = await startBrokerLite();
      cleanups.push(() => broker.stop());
      const proxy = await FaultProxy.start(broker.port);
      cleanups.push(() => proxy.close());
      const outage = proxy.cut('drop', 60_000);
      const rec = await Recorder.start(`mqtt://127.0.0.1:${broker.port}`, 'q/#', 1, `rec-${policy}`);
      cleanups.push(() => rec.stop());

      const pair = createLinkPair();
      const device = WatchedDevice.over(new InProcessTransport(pair), {
        deviceId: 'q0',
        intervalMs: 20,
        ringSize: 16,
        retransmitMs: 150,
        seed: 5,
      });
      const config = parseConfig(
        {
          agent: { id: 'full', stateDir: path.join(dir, 'state'), healthInterval: 0 },
          serial: [{ path: path.join(dir, 'link'), name: 'link' }],
          mqtt: { url: proxy.url, reconnectMin: '50ms', reconnectMax: '200ms' },
          topics: { prefix: 'q' },
          queue: { fsync: 'never', maxCount: 60, dropPolicy: policy },
        },
        { env: {} },
      );
      const agent = await Agent.start({
        config,
        log: silentLogger,
        openPort: async () => pair.host,
        statusFile: false,
      });
      cleanups.push(() => agent.stop(500));
      device.start();
      cleanups.push(() => device.stop());

      const counted = () =>
        policy === 'reject-new' ? agent.queueStats().rejectedNew : agent.queueStats().droppedOldest;
      expect(await until(() => counted() >= 100, 15_000)).toBe(true);
      expect(agent.queueStats().count).toBeLessThanOrEqual(60);
      const ackedWhileFull = device.acks.length;
      if (policy === 'reject-new') {
        // Refused readings were not acknowledged: the device still holds them (or its ring overflowed, its count).
        expect(agent.ports[0].session.counters.rejected).toBeGreaterThan(0);
        expect(ackedWhileFull).toBeLessThanOrEqual(15);
        expect(device.sim.firmware.unacked).toBeGreaterThan(0);
      } else {
        expect(ackedWhileFull).toBeGreaterThan(30);
      }

      proxy.heal();
      await outage;
      expect(await until(() => agent.isConnected, 10_000)).toBe(true);
      // Reporting goes on for a while after the broker is back, then stops; the queue drains.
      const ackedAtHeal = device.acks.length;
      expect(await until(() => device.acks.length >= ackedAtHeal + 20, 10_000)).toBe(true);
      await device.stop();
      expect(await until(() => agent.queueStats().count === 0, 10_000)).toBe(true);

      const v = () => verify([device], rec, 4, []);
      if (policy === 'reject-new') {
        expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
        expect(v().missing).toEqual([]);
        expect(v().duplicates).toEqual([]);
        expect(v().orderViolations).toEqual([]);
      } else {
        await until(() => v().missing.length <= counted(), 10_000);
        const { missing } = v();
        expect(missing.length).toBeGreaterThan(0);
        expect(missing.length).toBeLessThanOrEqual(counted());
      }
    }, 60_000);
  }
});
