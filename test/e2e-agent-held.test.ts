/**
 * Issue 18.4: HELD end to end. The agent's bin, firmware-sim devices on real ptys, broker-lite in
 * process and a recording subscriber. With a commit window far past the devices' 1 s
 * retransmission timeout, a device that says `h` in its HELLO is told HELD for each frame taken,
 * does not resend, and gets its ACK after the commit; the agent commits early when a device's
 * held frames reach half its ring; a device without HELD (older firmware) works as before
 * (resends, deduplicated, ACK after the commit); and a SIGKILL while frames are held loses
 * nothing: they were never ACKed, the device resends them after the hold, the restarted agent
 * stores them.
 */
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { describe, expect, it } from 'vitest';
import {
  AgentProcess,
  brokerWithRecorder,
  testScope,
  until,
  verify,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';
import { parse, value } from './helpers/prom.ts';

const socat = hasSocat();
if (!socat) console.warn('e2e-agent-held: socat missing, the pty tests are skipped (apt-get install socat)');

/** firmware-sim's default sensors: readings per DATA frame. */
const SENSORS = 4;
const { cleanups, tmp } = testScope('e2e-held');

async function chain(opts: {
  windowMs: number;
  devices: Array<{ id: string; intervalMs: number; ringSize?: number; understandsHeld?: boolean }>;
}) {
  const dir = tmp();
  const { url, rec } = await brokerWithRecorder(cleanups, 'held/#', `rec-held-${Date.now()}`);
  const devices: WatchedDevice[] = [];
  for (const [i, d] of opts.devices.entries()) {
    devices.push(
      await WatchedDevice.create(path.join(dir, `tty${i}`), {
        deviceId: d.id,
        intervalMs: d.intervalMs,
        seed: 180 + i,
        ...(d.ringSize === undefined ? {} : { ringSize: d.ringSize }),
        ...(d.understandsHeld === undefined ? {} : { understandsHeld: d.understandsHeld }),
      }),
    );
  }
  cleanups.push(() => Promise.all(devices.map((d) => d.stop())));
  const config = writeJson(path.join(dir, 'agent.json'), {
    agent: { id: 'gw', stateDir: path.join(dir, 'state'), healthInterval: 0 },
    serial: devices.map((d, i) => ({ path: d.agentPath, name: `tty${i}` })),
    mqtt: { url, reconnectMin: '50ms', reconnectMax: '500ms' },
    topics: { prefix: 'held' },
    queue: { fsync: 'batch', commitWindow: `${opts.windowMs}ms` },
    metrics: { listen: '127.0.0.1:0' },
  });
  const agent = new AgentProcess(config);
  cleanups.push(() => agent.kill());
  const metrics = async () => {
    const from = agent.lines.length;
    await agent.start();
    const l = await agent.waitFor((x) => x.msg === 'metrics-listening', 10_000, from);
    const port = l.port as number;
    return async (name: string) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return value(parse(text), name) ?? Number.NaN;
    };
  };
  return { devices, rec, agent, metrics };
}

/** The ids of every reading of these frames, as the agent publishes them. */
function ids(device: WatchedDevice, bootId: number, seqs: number[]): string[] {
  return seqs.flatMap((s) => Array.from({ length: SENSORS }, (_, i) => `${device.id}:${bootId}:${s}:${i}`));
}

/**
 * Once `frames()` names 5 frames or more, SIGKILLs the agent and starts it again, and waits until
 * the device's ring let go of them (sent again after the hold, stored and ACKed by the new agent).
 */
async function killAndResend(agent: AgentProcess, d: WatchedDevice, frames: () => number[]) {
  expect(await until(() => frames().length >= 5, 10_000)).toBe(true);
  const killedAt = Date.now();
  await agent.kill('SIGKILL');
  const seqs = frames();
  expect(seqs.length).toBeGreaterThanOrEqual(5);
  const from = agent.lines.length;
  await agent.start();
  const back = await agent.waitFor((l) => l.msg === 'broker-connected', 15_000, from);
  const reconnectedAt = Date.parse(back.time);
  expect(
    await until(() => {
      const ring = d.sim.firmware.unackedSeqs();
      return seqs.every((s) => !ring.includes(s));
    }, 30_000),
  ).toBe(true);
  return { seqs, killedAt, reconnectedAt };
}

describe.skipIf(!socat)('issue 18.4: HELD through the agent bin', () => {
  it('issue 18.4: with a 3 s window a HELD-capable device does not retransmit and gets its ACK after the commit', async () => {
    const windowMs = 3000;
    const { devices, rec, metrics } = await chain({
      windowMs,
      devices: [{ id: 'h0', intervalMs: 250, ringSize: 64 }],
    });
    const scrape = await metrics();
    const [d] = devices;
    d.start();
    // two commits' worth: the first ACKs come only after the first window
    expect(await until(() => d.acks.length >= 20, 15_000)).toBe(true);
    const fw = d.sim.firmware;
    const f0 = await scrape('mqtt_edge_agent_queue_fsyncs_total');
    const t0 = Date.now();
    const acks0 = d.acks.length;
    expect(await until(() => d.acks.length >= acks0 + 20, 15_000)).toBe(true);
    const f1 = await scrape('mqtt_edge_agent_queue_fsyncs_total');
    const elapsed = Date.now() - t0;
    // frames held, none sent twice, nothing overwritten, no HELD for a seq the ring does not hold
    expect(fw.stats.held).toBeGreaterThanOrEqual(d.acks.length);
    expect(fw.stats.retransmits).toBe(0);
    expect(fw.stats.ringOverwrites).toBe(0);
    expect(fw.stats.heldUnknown).toBe(0);
    // ACKs come in one burst per commit, at most one a window (each frame waits for its fsync)
    expect(f1 - f0).toBeLessThanOrEqual(Math.ceil(elapsed / windowMs) + 1);
    const at = d.acksAt.filter((t) => t >= t0);
    let bursts = at.length > 0 ? 1 : 0;
    for (let i = 1; i < at.length; i++) if (at[i] - at[i - 1] > windowMs / 2) bursts++;
    expect(bursts).toBeLessThanOrEqual(Math.ceil(elapsed / windowMs) + 1);
    // at 4 frames a second, a 3 s window gathers several frames per commit
    expect((d.acks.length - acks0) / Math.max(1, f1 - f0)).toBeGreaterThan(4);
    expect(await scrape('mqtt_edge_agent_port_held_sent_total')).toBeGreaterThanOrEqual(d.acks.length);
    expect(await scrape('mqtt_edge_agent_port_early_commits_total')).toBe(0);
    // and what was ACKed reaches the broker, once
    await d.stop();
    const v = () => verify(devices, rec, SENSORS, []);
    expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
    expect(v().duplicates).toEqual([]);
  }, 60_000);

  it('issue 18.4: the agent commits early when the frames held for a device reach half its ring', async () => {
    // an 8-entry ring and a 30 s window: without the early commit the ring overflows in under a second
    const { devices, metrics } = await chain({
      windowMs: 30_000,
      devices: [{ id: 'h1', intervalMs: 100, ringSize: 8 }],
    });
    const scrape = await metrics();
    const [d] = devices;
    d.start();
    const t0 = Date.now();
    expect(await until(() => d.acks.length >= 30, 15_000)).toBe(true);
    const fw = d.sim.firmware;
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(fw.stats.ringOverwrites).toBe(0);
    expect(fw.stats.retransmits).toBe(0);
    const early = await scrape('mqtt_edge_agent_port_early_commits_total');
    expect(early).toBeGreaterThanOrEqual(5);
    // ~4 frames per commit: ACKs and fsyncs follow the ring, not the window
    expect(await scrape('mqtt_edge_agent_queue_fsyncs_total')).toBeGreaterThanOrEqual(5);
  }, 60_000);

  it('issue 18.4: a device without HELD (no h in its HELLO) gets none, resends, is deduplicated and ACKed after the commit', async () => {
    const windowMs = 2500;
    const { devices, rec, metrics } = await chain({
      windowMs,
      devices: [
        { id: 'old0', intervalMs: 200, understandsHeld: false },
        { id: 'new0', intervalMs: 200 },
      ],
    });
    const scrape = await metrics();
    for (const d of devices) d.start();
    expect(await until(() => devices.every((d) => d.acks.length >= 25), 20_000)).toBe(true);
    const [old, young] = devices;
    // the agent sent the old device no HELD (it would have counted one it cannot use)
    expect(old.sim.firmware.stats.heldIgnored).toBe(0);
    // its 1 s timeout is under the window: it resent, and got its ACKs anyway
    expect(old.sim.firmware.stats.retransmits).toBeGreaterThan(0);
    expect(old.sim.firmware.stats.ringOverwrites).toBe(0);
    expect(young.sim.firmware.stats.retransmits).toBe(0);
    expect(young.sim.firmware.stats.held).toBeGreaterThan(0);
    const fsyncs = await scrape('mqtt_edge_agent_queue_fsyncs_total');
    expect(fsyncs).toBeGreaterThan(0);
    await Promise.all(devices.map((d) => d.stop()));
    const v = () => verify(devices, rec, SENSORS, []);
    expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
    // resends were dropped as duplicates by the agent: every reading once at the broker
    expect(v().duplicates).toEqual([]);
    expect(v().acked).toBeGreaterThanOrEqual(50);
  }, 60_000);

  it('issue 18.4: SIGKILL while frames are held: after a restart every reading reaches the broker', async () => {
    const windowMs = 4000;
    const { devices, rec, agent, metrics } = await chain({
      windowMs,
      devices: [{ id: 'k0', intervalMs: 200 }],
    });
    await metrics();
    const [d] = devices;
    const fw = d.sim.firmware;
    d.start();
    // a commit done (some ACKs), and frames held since
    expect(await until(() => d.acks.length >= 5, 15_000)).toBe(true);
    const acked = d.acks.length;
    const bootId = fw.bootId;
    // The frames held at the kill were never ACKed: their records were still in the queue's
    // buffer (written at the commit) or at most in the page cache, gone with the process or with
    // the power. The device sends them again after the hold (window + 1 s) and the restarted
    // agent stores and ACKs them: the ring lets go of them only then.
    const {
      seqs: held,
      killedAt,
      reconnectedAt,
    } = await killAndResend(agent, d, () => (fw.stats.held >= acked + 5 ? fw.unackedSeqs() : []));
    expect(fw.stats.retransmits).toBeGreaterThanOrEqual(held.length);
    expect(fw.stats.ringOverwrites).toBe(0);
    const want = ids(d, bootId, held);
    expect(await until(() => want.every((id) => rec.has(id)), 10_000)).toBe(true);
    await d.stop();
    const v = () => verify(devices, rec, SENSORS, [[killedAt, reconnectedAt]]);
    expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
    expect(v().missing).toEqual([]);
    // at least once: a copy more only of readings the device was never told were stored
    const heldIds = new Set(want);
    expect(v().unexplainedDuplicates.filter((id) => !heldIds.has(id))).toEqual([]);
  }, 90_000);
});

describe.skipIf(!socat)('issue 18.5: publish before the commit, ACK after it', () => {
  it('issue 18.5: with a 3 s window a reading reaches the subscriber well before its device ACK, and the ACK still waits for the commit', async () => {
    const windowMs = 3000;
    const { devices, rec, metrics } = await chain({
      windowMs,
      devices: [{ id: 'e0', intervalMs: 250, ringSize: 64 }],
    });
    const scrape = await metrics();
    const [d] = devices;
    d.start();
    // the first reading is at the subscriber while no commit has run, so no ACK either
    expect(await until(() => rec.byId.size > 0, 10_000)).toBe(true);
    expect(d.acks.length).toBe(0);
    expect(await until(() => d.acks.length >= 24, 20_000)).toBe(true);
    const fsyncs = await scrape('mqtt_edge_agent_queue_fsyncs_total');
    const fw = d.sim.firmware;
    expect(fw.stats.retransmits).toBe(0);
    // per ACKed frame: how long before its ACK its first reading reached the subscriber
    const leads = d.acks.map((a, i) => {
      const first = rec.byId.get(`${d.id}:${a.bootId}:${a.seq}:0`)?.[0];
      return first === undefined ? Number.NaN : d.acksAt[i] - first.at;
    });
    expect(leads.filter((l) => !(l >= 0))).toEqual([]);
    const sorted = [...leads].sort((a, b) => a - b);
    // frames arrive spread over the window and are ACKed at its end: half wait 1.5 s or more
    expect(sorted[Math.floor(sorted.length / 2)]).toBeGreaterThan(windowMs / 4);
    // ACKs still come in one burst per commit (each frame waits for the fsync that covers it)
    let bursts = 1;
    for (let i = 1; i < d.acksAt.length; i++) if (d.acksAt[i] - d.acksAt[i - 1] > windowMs / 2) bursts++;
    expect(bursts).toBeLessThanOrEqual(fsyncs + 1);
    expect(bursts).toBeGreaterThanOrEqual(2);
    await d.stop();
    const v = () => verify(devices, rec, SENSORS, []);
    expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
    expect(v().duplicates).toEqual([]);
  }, 60_000);

  it('issue 18.5: SIGKILL after frames were published and before their commit: not ACKed, sent again after the restart, a duplicate at the subscriber, nothing lost', async () => {
    const windowMs = 4000;
    const { devices, rec, agent, metrics } = await chain({
      windowMs,
      devices: [{ id: 'k1', intervalMs: 200 }],
    });
    await metrics();
    const [d] = devices;
    const fw = d.sim.firmware;
    d.start();
    expect(await until(() => d.acks.length >= 5, 15_000)).toBe(true);
    const bootId = fw.bootId;
    // frames held (not ACKed) whose readings the subscriber already has
    const published = () => fw.unackedSeqs().filter((s) => ids(d, bootId, [s]).every((id) => rec.has(id)));
    // never ACKed: sent again after the hold, stored and ACKed by the restarted agent
    const { seqs: before, killedAt, reconnectedAt } = await killAndResend(agent, d, published);
    const want = ids(d, bootId, before);
    // published again by the restarted agent: a second copy at the subscriber
    expect(await until(() => want.every((id) => (rec.byId.get(id)?.length ?? 0) >= 2), 10_000)).toBe(true);
    await d.stop();
    const v = () => verify(devices, rec, SENSORS, [[killedAt, reconnectedAt]]);
    expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
    expect(v().missing).toEqual([]);
    expect(v().unexplainedDuplicates).toEqual([]);
    // the copies differ only in the agent's receive time (`at`): the same reading, stored twice
    const reading = (payload: string) => {
      const { at: _at, ...rest } = JSON.parse(payload) as Record<string, unknown>;
      return rest;
    };
    for (const id of want) {
      const [first, ...again] = rec.byId.get(id)!;
      for (const c of again) expect(reading(c.payload)).toEqual(reading(first.payload));
    }
  }, 90_000);
});
