/**
 * Issue 18.3: a Pi-sized box. The demo's chain (test/helpers/pi-chain.ts: broker-lite's bin as the demo
 * configures it, the agent's bin, 3 firmware-sim devices on ptys at 100 readings/s in all, a
 * persistent QoS 1 subscriber on `demo/#`) with the broker and the agent in a cgroup v1 `cpu`
 * child of cfs_quota_us 25000 / cfs_period_us 100000, pinned to one CPU where the `cpuset`
 * controller is there: one core at 25%. The devices (they stand for microcontrollers) and the
 * subscriber (the consumer) stay outside. After a warm-up, over a window: reading (the
 * device's sample time) to subscriber latency, readings delivered against offered, the agent's
 * queue depth (its health messages), the CPU seconds broker and agent spent per 1,000 readings,
 * their RSS. Skipped, with the reason, where no group can be made (not root, no cgroup v1).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { cpuSeconds, makeCgroup, percentile, rssMb, sleep, startChain } from '../../test/helpers/pi-chain.ts';
import { type BenchArea, type BenchOptions, type BenchRow, costRow, rateRow } from '../harness.ts';

const RATE = 100;
const QUOTA_US = 25_000;
const PERIOD_US = 100_000;

function skipped(why: string): BenchRow[] {
  console.error(`pi: skipped: ${why}`);
  return [
    {
      name: 'pi: demo chain at 25% of one core',
      unit: '-',
      ours: Number.NaN,
      peer: null,
      peerName: '-',
      ratio: null,
      note: `skipped: ${why}`,
    },
  ];
}

export default {
  area: 'pi',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (!hasSocat()) return skipped('socat missing: the devices need ptys');
    const cg = makeCgroup(`mqtt-edge-bench-pi-${process.pid}`, QUOTA_US, PERIOD_US);
    if (typeof cg === 'string') return skipped(cg);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-pi-'));
    const WARMUP_MS = options.quick ? 5000 : 15_000;
    const WINDOW_MS = options.quick ? 10_000 : 60_000;
    try {
      const chain = await startChain({ dir, readingsPerSecond: RATE, broker: 'broker-lite', cgroup: cg });
      try {
        await sleep(WARMUP_MS);
        const pids = { broker: chain.broker.pid as number, agent: chain.agent.pid as number };
        const cpu0 = { broker: cpuSeconds(pids.broker), agent: cpuSeconds(pids.agent) };
        const st0 = cg.stat();
        const t0 = Date.now();
        const from = chain.received.length;
        await sleep(WINDOW_MS);
        const t1 = Date.now();
        const cpu1 = { broker: cpuSeconds(pids.broker), agent: cpuSeconds(pids.agent) };
        const st1 = cg.stat();
        const rss = { broker: rssMb(pids.broker), agent: rssMb(pids.agent) };
        const win = chain.received.slice(from).filter((r) => r.at <= t1);
        const lat = win.map((r) => r.latency);
        const rate = (win.length * 1000) / (t1 - t0);
        const per1000 = (s: number) => (s / Math.max(1, win.length)) * 1000;
        const q = chain.queue.filter((x) => x.at >= t0 && x.at <= t1).map((x) => x.count);
        const throttled = `${st1.throttled - st0.throttled} of ${st1.periods - st0.periods} periods throttled (${(st1.throttledS - st0.throttledS).toFixed(1)} s)`;
        const note = `window ${WINDOW_MS / 1000} s after ${WARMUP_MS / 1000} s; broker-lite and agent in a cgroup of ${QUOTA_US}/${PERIOD_US} us: ${throttled}; agent queue depth in the window ${q.length > 0 ? `${Math.min(...q)}..${Math.max(...q)}, last ${q[q.length - 1]}` : 'not reported'}`;
        if (process.env.BENCH_VERBOSE) console.error(`  pi: ${note}`);
        const cpuB = cpu1.broker - cpu0.broker;
        const cpuA = cpu1.agent - cpu0.agent;
        return [
          costRow(
            'pi: reading to subscriber p99 (target < 100 ms)',
            'ms',
            percentile(lat, 0.99),
            100,
            'target',
            1,
            note,
          ),
          costRow('pi: reading to subscriber p50', 'ms', percentile(lat, 0.5), null, '-'),
          rateRow('pi: readings delivered', 'readings/s', rate, RATE, 'offered', 0.98),
          costRow(
            'pi: agent queue depth, last in the window',
            'messages',
            q.length > 0 ? q[q.length - 1] : Number.NaN,
            null,
            '-',
            undefined,
            'a growing queue is a chain that does not keep up',
          ),
          costRow(
            'pi: broker-lite CPU per 1,000 readings',
            's',
            per1000(cpuB),
            null,
            '-',
            undefined,
            `${((cpuB / (WINDOW_MS / 1000)) * 100).toFixed(1)}% of a core`,
          ),
          costRow(
            'pi: agent CPU per 1,000 readings',
            's',
            per1000(cpuA),
            null,
            '-',
            undefined,
            `${((cpuA / (WINDOW_MS / 1000)) * 100).toFixed(1)}% of a core`,
          ),
          costRow('pi: broker-lite RSS', 'MB', rss.broker, null, '-'),
          costRow('pi: agent RSS', 'MB', rss.agent, null, '-'),
        ];
      } finally {
        await chain.stop();
      }
    } finally {
      await cg.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  },
} satisfies BenchArea;
