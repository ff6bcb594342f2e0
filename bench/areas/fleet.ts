/**
 * Issue 16's fleet, the long form of test/fleet-failover.test.ts (`npm run bench -- --only
 * fleet`): a 3-node NATS cluster (Debian's nats-server, JetStream + MQTT, `stream_replicas 3`),
 * three broker-lite gateways with default bridge settings (MQTT 3.1.1, QoS 1, cleansession false,
 * the three nodes as addresses, gateway i listing node i first, each address through a
 * fault-injecting proxy), per gateway an agent with 4 simulated devices (in-process links) and
 * one persistent QoS 1 consumer on the cluster, all on loopback (test/helpers/fleet.ts).
 * Phases, while the devices report (3 sensors each, every 150 ms: 240 readings/s offered):
 * - steady: readings/s at the consumer and end-to-end latency (agent received -> consumer);
 * - capacity: the devices at 20 ms (1,800 readings/s offered) for 20 s: what gets through;
 * - each node in turn SIGKILLed while its gateway's bridge is on it, kept dead 30 s, started
 *   again: failover time per bridge (kill -> first message acknowledged by another node), beside
 *   the engine's own (a persistent session taken over as fast as NATS answers, and a new one);
 * - one node dead and never coming back during the rest of the run is the third kill's case
 *   (its gateway works from the others until the end);
 * - a 60 s uplink cut of one gateway (all its proxies), then the drain of its backlog;
 * - duplicates per 10,000 readings and readings lost over the whole run (must be 0).
 */
import {
  engineRecovery,
  type Fleet,
  firstAtOrAfter,
  type Gateway,
  startFleet,
  witnessSession,
} from '../../test/helpers/fleet.ts';
import { hasNats, natsVersion } from '../../test/helpers/nats.ts';
import { type BenchArea, type BenchOptions, type BenchRow, costRow, rateRow } from '../harness.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`fleet bench: timed out waiting for ${what}`);
    await sleep(50);
  }
}

function setInterval(f: Fleet, ms: number): void {
  for (const g of f.gateways) for (const d of g.devices) d.sim.firmware.intervalMs = ms;
}

/** Readings/s at the consumer over `ms`, and the latency percentiles of what arrived then. */
async function window(f: Fleet, ms: number): Promise<{ rate: number; p50: number; p99: number }> {
  const r0 = f.consumer.received;
  const l0 = f.consumer.latencies.length;
  const t0 = performance.now();
  await sleep(ms);
  const rate = ((f.consumer.received - r0) * 1000) / (performance.now() - t0);
  const lat = f.consumer.latencies.slice(l0).sort((a, b) => a - b);
  return { rate, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

interface Kill {
  gateway: string;
  node: string;
  failoverMs: number;
  /** The engine alone: a persistent session taken over, and a new session (undefined: over 30 s). */
  sessionMs: number | undefined;
  newSessionMs: number | undefined;
  /** The longest gap between acknowledgements of the other gateways around the kill. */
  othersGapMs: number;
}

function longestGap(times: number[], from: number, to: number): number {
  let last = from;
  let gap = 0;
  for (const t of times) {
    if (t < from) continue;
    if (t > to) break;
    gap = Math.max(gap, t - last);
    last = t;
  }
  return Math.max(gap, to - last);
}

async function killNodeOf(f: Fleet, g: Gateway, deadMs: number, restart: boolean): Promise<Kill> {
  const k = f.connectedNode(g);
  if (k === undefined) throw new Error(`fleet bench: ${g.name} is not connected`);
  const node = f.cluster.nodes[k];
  const others = f.gateways.filter((x) => x !== g);
  const witness = await witnessSession(node, `bench-witness-${node.name}`);
  await node.kill();
  const killedAt = node.killedAt;
  const survivors = f.cluster.nodes.filter((n) => n !== node);
  const [session, fresh] = await Promise.all([
    witness.handover(survivors, 30_000),
    engineRecovery(survivors, killedAt, 30_000),
    waitFor(
      () => {
        const c = f.connections(g).find((x) => x.at >= killedAt && x.node !== k);
        return c !== undefined && firstAtOrAfter(g.ackTimes, c.at) !== undefined;
      },
      60_000,
      `${g.name} failing over`,
    ),
  ]);
  const conn = f.connections(g).find((x) => x.at >= killedAt && x.node !== k)!;
  const failoverMs = firstAtOrAfter(g.ackTimes, conn.at)! - killedAt;
  // Much slower than the engine: show what the bridge did (stderr, beside the table).
  if (session !== undefined && failoverMs > session - killedAt + 5000)
    for (const l of g.logs)
      if (l.at >= killedAt && l.at <= killedAt + failoverMs && l.message.startsWith('bridge'))
        console.error(`  ${g.name} +${l.at - killedAt} ms ${l.message} ${JSON.stringify(l.fields)}`);
  const rest = deadMs - (Date.now() - killedAt);
  if (rest > 0) await sleep(rest);
  const othersGapMs = Math.max(...others.map((o) => longestGap(o.ackTimes, killedAt - 1000, Date.now())));
  if (restart) {
    await node.start();
    await node.mqttReady(60_000);
  }
  return {
    gateway: g.name,
    node: node.name,
    failoverMs,
    sessionMs: session === undefined ? undefined : session - killedAt,
    newSessionMs: fresh === undefined ? undefined : fresh - killedAt,
    othersGapMs,
  };
}

async function run(options: BenchOptions): Promise<BenchRow[]> {
  if (!hasNats())
    return [
      rateRow(
        'fleet:readings end to end',
        'readings/s',
        0,
        null,
        '-',
        undefined,
        'nats-server not installed',
      ),
    ];
  const quick = options.quick;
  const STEADY_MS = quick ? 10_000 : 30_000;
  const CAPACITY_MS = quick ? 5000 : 20_000;
  const DEAD_MS = quick ? 10_000 : 30_000;
  const CUT_MS = quick ? 15_000 : 60_000;
  const f = await startFleet({ gateways: 3, devicesPerGateway: 4, sensors: 3, intervalMs: 150 });
  const rows: BenchRow[] = [];
  try {
    f.startDevices();
    await waitFor(() => f.gateways.every((g) => g.ackTimes.length > 50), 30_000, 'every bridge flowing');
    await sleep(3000);
    const steady = await window(f, STEADY_MS);
    const offered = (3 * 4 * 3 * 1000) / 150;
    rows.push(
      rateRow(
        'fleet:readings end to end (steady, 3 gateways)',
        'readings/s',
        steady.rate,
        offered,
        'offered',
        undefined,
        `device -> agent -> broker-lite -> bridge -> NATS ${natsVersion()} (3 nodes, R3) -> consumer, QoS 1 all the way; latency p50 ${steady.p50} ms, p99 ${steady.p99} ms`,
      ),
    );
    setInterval(f, 20);
    await sleep(2000);
    const cap = await window(f, CAPACITY_MS);
    setInterval(f, 150);
    rows.push(
      rateRow(
        'fleet:readings end to end (offered 1,800/s)',
        'readings/s',
        cap.rate,
        1800,
        'offered',
        undefined,
        `latency p50 ${cap.p50} ms, p99 ${cap.p99} ms (what is not delivered at once queues in the agents and bridges)`,
      ),
    );
    // Let the capacity phase's backlog drain before the kills.
    await waitFor(
      () => f.gateways.every((g) => g.agent.queueStats().count < 50 && g.bridges.stats()[0].queue.count < 50),
      120_000,
      'the backlog after the capacity phase',
    );

    const kills: Kill[] = [];
    for (const [i, g] of f.gateways.entries()) {
      // The last node killed stays dead until the end of the run: the cut below runs without it.
      const k = await killNodeOf(f, g, DEAD_MS, i < f.gateways.length - 1);
      kills.push(k);
      console.error(`fleet: ${JSON.stringify(k)}`);
      await sleep(quick ? 3000 : 10_000);
    }
    for (const k of kills)
      rows.push(
        costRow(
          `fleet:failover ${k.gateway} (node ${k.node} killed)`,
          'ms',
          k.failoverMs,
          k.sessionMs ?? null,
          'engine alone',
          undefined,
          `kill -> first message acknowledged by another node; the engine alone: a persistent session taken over after ${k.sessionMs ?? '>30000'} ms, a new session after ${k.newSessionMs ?? '>30000'} ms; the other gateways' longest pause ${k.othersGapMs} ms`,
        ),
      );

    // A gateway's uplink cut for CUT_MS (one node still dead), then its backlog drains.
    const g = f.gateways[0];
    await Promise.all(g.proxies.map((p) => p.cut('drop', CUT_MS)));
    const healed = Date.now();
    const backlog = g.bridges.stats()[0].queue.count + g.agent.queueStats().count;
    await waitFor(
      () => f.connections(g).some((c) => c.at >= healed),
      120_000,
      'the bridge back after the cut',
    );
    const back = f.connections(g).find((c) => c.at >= healed)!.at;
    const acked0 = g.bridges.stats()[0].outAcked;
    await waitFor(() => g.bridges.stats()[0].queue.count === 0, 300_000, 'the backlog to drain');
    const drainS = (Date.now() - back) / 1000;
    const drained = g.bridges.stats()[0].outAcked - acked0;
    rows.push(
      rateRow(
        `fleet:backlog drain after a ${CUT_MS / 1000} s uplink cut`,
        'msgs/s',
        drained / drainS,
        null,
        '-',
        undefined,
        `${backlog} messages queued at the end of the cut; reconnected ${((back - healed) / 1000).toFixed(1)} s after the link came back (restart_timeout's backoff once the 30 s failover window is over), then ${drained} acknowledged in ${drainS.toFixed(1)} s while new readings kept coming (80/s; one node dead)`,
      ),
    );

    await f.stopDevices();
    const v = await f.drained(120_000);
    rows.push(
      costRow(
        'fleet:duplicates per 10,000 readings',
        'dups',
        (v.duplicates * 10_000) / Math.max(1, v.expectedReadings),
        null,
        '-',
        undefined,
        `${v.expectedReadings} readings acknowledged to the devices, ${v.received} received, ${v.duplicates} duplicates, ${v.missing.length} lost${v.missing.length > 0 ? ` (e.g. ${v.missing.slice(0, 3).join(', ')})` : ''}`,
      ),
    );
    return rows;
  } finally {
    await f.stop();
  }
}

const area: BenchArea = { area: 'fleet', run };
export default area;
