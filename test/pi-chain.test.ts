/**
 * Issue 18.3, the bounded form of `npm run bench -- --only pi`: the demo's chain (broker-lite,
 * the agent, 3 firmware-sim devices on ptys at 100 readings/s in all, a persistent QoS 1
 * subscriber) with the broker and the agent in a cgroup v1 `cpu` child of 25% of one core. It
 * must keep up: readings arrive at the rate they are made and the agent's queue does not grow.
 * The latency target (p99 < 100 ms) is the bench's row; here the bound is loose (1 s), so that
 * other work on a loaded 2-core machine cannot fail the test, while a chain that falls behind
 * (its queue and latency growing for the whole window) still does.
 */
import { mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterAll, describe, expect, it } from 'vitest';
import { type Cgroup, makeCgroup, percentile, sleep, startChain } from './helpers/pi-chain.ts';

function cgroupUnavailable(): string | undefined {
  const probe = `/sys/fs/cgroup/cpu/mqtt-edge-probe-${process.pid}`;
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return undefined;
  } catch (err) {
    return `no cgroup v1 cpu controller to make a group in (${(err as Error).message}; needs root)`;
  }
}

const why = hasSocat() ? cgroupUnavailable() : 'socat missing (apt-get install socat)';
if (why !== undefined) console.warn(`issue 18.3 chain test skipped: ${why}`);

describe.skipIf(why !== undefined)('issue 18.3: a Pi-sized box', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pi-chain-'));
  let cg: Cgroup | null = null;
  afterAll(async () => {
    await cg?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it('issue 18.3: the demo chain keeps up at 100 readings/s in a quarter of one core', {
    timeout: 120_000,
  }, async () => {
    const made = makeCgroup(`mqtt-edge-test-pi-${process.pid}`, 25_000, 100_000);
    if (typeof made === 'string') throw new Error(made);
    cg = made;
    // The bins on the sources (this environment's source condition), as every test runs them.
    const chain = await startChain({
      dir,
      readingsPerSecond: 100,
      broker: 'broker-lite',
      cgroup: cg,
      env: process.env,
    });
    try {
      // Start-up (tsx compiles the sources inside the quota) until readings flow, then a warm-up.
      const deadline = Date.now() + 60_000;
      while (chain.received.length === 0 && Date.now() < deadline) await sleep(100);
      expect(chain.received.length).toBeGreaterThan(0);
      await sleep(3000);
      const from = chain.received.length;
      const t0 = Date.now();
      await sleep(10_000);
      const t1 = Date.now();
      const win = chain.received.slice(from).filter((r) => r.at <= t1);
      const rate = (win.length * 1000) / (t1 - t0);
      expect(rate).toBeGreaterThan(90);
      expect(
        percentile(
          win.map((r) => r.latency),
          0.99,
        ),
      ).toBeLessThan(1000);
      // the agent's health (every 2 s) tells its queue depth: not growing at the end of the window
      const depths = chain.queue.filter((q) => q.at >= t0).map((q) => q.count);
      expect(depths.length).toBeGreaterThan(2);
      expect(depths[depths.length - 1]).toBeLessThan(50);
      // and the group was really in force: its periods were counted
      expect(cg.stat().periods).toBeGreaterThan(0);
    } finally {
      await chain.stop();
    }
  });
});
