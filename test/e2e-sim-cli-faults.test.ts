/**
 * The firmware-sim CLI's fault flags, end to end: `firmware-sim --link ...` as a process with
 * every scheduled and per-frame fault turned on (resets mid-frame, bursts, unplugs, garbage, bit
 * flips, dropped bytes) -> the agent as a process -> broker-lite -> a subscriber. Each fault must
 * be visible where it lands: a reset as a new boot id at the agent, an unplug as the agent's port
 * lost and opened again, a burst as a run of readings sharing one device timestamp at the
 * subscriber, corrupted frames as counted framing errors; and the agent stays up throughout.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, watch } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AgentStatus } from '@mqtt-edge/agent';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AgentProcess,
  type LogLine,
  Recorder,
  SimProcess,
  startBrokerLite,
  until,
  writeJson,
} from './helpers/processes.ts';

const socat = hasSocat();
if (!socat) console.warn('e2e-sim-cli-faults: socat missing, skipped (apt-get install socat)');

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const BURST = 12;
const RESETS = 3;
const UNPLUGS = 2;
/** A boot during which the agent held the port this long must have been seen (issue 19.4). */
const HEARD_MS = 500;

describe.skipIf(!socat)('firmware-sim CLI fault flags against the agent', () => {
  it('resets, bursts, unplugs and corrupted frames are each seen and counted; the agent stays up', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-simcli-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const broker = await startBrokerLite();
    cleanups.push(() => broker.stop());
    const rec = await Recorder.start(`mqtt://127.0.0.1:${broker.port}`, 'sf/#', 1, 'rec-simcli');
    cleanups.push(() => rec.stop());

    const link = path.join(dir, 'ttyF');
    // An unplug removes the pty link (socat is gone) until the pair is made again. Seen through
    // inotify (events queue up), not by looking when the log line is read: under load that was
    // after the pair was back (600 ms later). The link is made once, then each unplug removes
    // and makes it again: renames of its name.
    let linkRenames = 0;
    const watcher = watch(dir, (event, name) => {
      if (event === 'rename' && name === path.basename(link)) linkRenames++;
    });
    cleanups.push(() => watcher.close());
    // Co-prime-ish periods so the scheduled faults do not all land on the same tick.
    const sim = await SimProcess.start(link, [
      '--device-id',
      'fx',
      '--seed',
      '21',
      '--interval',
      '40',
      '--retransmit',
      '300',
      '--ring-size',
      '256',
      '--garbage-rate',
      '0.1',
      '--bitflip-rate',
      '0.05',
      '--drop-rate',
      '0.05',
      '--reset-every',
      '2300',
      '--burst-every',
      '1300',
      '--burst-size',
      String(BURST),
      '--unplug-every',
      '3100',
      '--unplug-for',
      '600',
    ]);
    cleanups.push(() => sim.dispose());
    const stateDir = path.join(dir, 'state');
    const config = writeJson(path.join(dir, 'agent.json'), {
      agent: { id: 'simcli', stateDir, healthInterval: 0, statusInterval: '200ms' },
      serial: [{ path: link }],
      mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
      topics: { prefix: 'sf' },
      queue: { fsync: 'never' },
    });
    const agent = new AgentProcess(config);
    await agent.start();
    cleanups.push(() => agent.kill());

    // The schedule runs: RESETS resets and UNPLUGS unplugs each followed by the pty coming back.
    expect(
      await until(
        () => sim.events('reset-mid-frame').length >= RESETS && sim.events('plugged').length >= 1 + UNPLUGS,
        15_000,
      ),
    ).toBe(true);
    expect(sim.events('unplugged').length).toBeGreaterThanOrEqual(UNPLUGS);

    // Resets: every boot the agent could hear is one it saw begin. It could hear a boot during
    // which it held the port for HEARD_MS (a dozen DATA frames at 40 ms). The schedule starts with
    // the simulator: under load the agent has come up after the first reset (its port opened at
    // 4.1 s, the first reset at 2.4 s), and a boot nobody listened to cannot be asked of it. A
    // stalled line (issue 19) still fails here: the agent holds the port and hears nothing.
    const at = (l: LogLine) => Date.parse(l.time);
    const boots = [sim.events('start')[0], ...sim.events('reset-mid-frame')].map((l) => ({
      id: l.bootId,
      from: at(l),
    }));
    const heardBoots = () => {
      const now = Date.now();
      const marks = agent.lines.filter((l) => l.msg === 'port-open' || l.msg === 'port-lost');
      const held: Array<[number, number]> = [];
      marks.forEach((l, i) => {
        if (l.msg !== 'port-open') return;
        const end = marks.slice(i + 1).find((m) => m.msg === 'port-lost');
        held.push([at(l), end === undefined ? now : at(end)]);
      });
      return boots.filter((b, i) => {
        const to = boots[i + 1]?.from ?? now;
        const overlap = held.reduce((n, [a, z]) => n + Math.max(0, Math.min(to, z) - Math.max(b.from, a)), 0);
        return overlap >= HEARD_MS;
      });
    };
    const agentBoots = () => new Set(agent.events('device-boot').map((l) => l.bootId));
    expect(
      await until(() => heardBoots().every((b) => agentBoots().has(b.id)), 5000),
      JSON.stringify({ boots, heard: heardBoots(), agent: [...agentBoots()] }),
    ).toBe(true);
    expect(heardBoots().length).toBeGreaterThanOrEqual(2);

    // Unplugs: the agent's port went away and it opened it again after each.
    const lost = agent.events('port-lost').map(at);
    expect(lost.length).toBeGreaterThanOrEqual(UNPLUGS);
    const opens = () => agent.events('port-open').map(at);
    expect(await until(() => lost.every((t) => opens().some((o) => o > t)), 10_000)).toBe(true);
    expect(await until(() => linkRenames >= 1 + 2 * UNPLUGS, 5000), `renames ${linkRenames}`).toBe(true);
    // The pty is back at its path after the last unplug.
    expect(existsSync(link)).toBe(true);

    // Bursts: BURST DATA frames sampled in the same millisecond of one boot reach the subscriber.
    const largestBurst = () => {
      const frames = new Map<string, Set<number>>();
      for (const a of rec.arrivals) {
        const [device, boot, seq] = a.id.split(':');
        const ts = (JSON.parse(a.payload) as { ts?: number }).ts;
        const k = `${device}:${boot}:${ts}`;
        let s = frames.get(k);
        if (s === undefined) frames.set(k, (s = new Set()));
        s.add(Number(seq));
      }
      return Math.max(0, ...[...frames.values()].map((s) => s.size));
    };
    expect(await until(() => largestBurst() >= BURST, 10_000)).toBe(true);

    // The device stops (Ctrl-C) with its counters; then the agent, cleanly.
    expect(await sim.stop()).toBe(0);
    const stop = sim.events('stop')[0];
    expect(stop).toBeDefined();
    expect(stop.resetsMidFrame).toBeGreaterThanOrEqual(RESETS);
    expect(stop.unplugs).toBeGreaterThanOrEqual(UNPLUGS);
    expect(stop.bursts).toBeGreaterThanOrEqual(2);
    expect(stop.garbageBursts).toBeGreaterThan(0);
    expect(stop.bitflips).toBeGreaterThan(0);
    expect(stop.drops).toBeGreaterThan(0);
    expect(stop.acked).toBeGreaterThan(0);

    // The queue drains to the broker.
    const readStatus = () => {
      try {
        return JSON.parse(readFileSync(path.join(stateDir, 'status.json'), 'utf8')) as AgentStatus;
      } catch {
        return undefined;
      }
    };
    expect(await until(() => readStatus()?.queue.count === 0, 10_000)).toBe(true);
    expect(agent.events('agent-start')).toHaveLength(1);
    expect(await agent.stop()).toBe(0);
    const status = readStatus()!;
    const c = status.counters;
    // Every reading the agent stored reached the subscriber, once.
    expect(await until(() => rec.byId.size >= c.stored, 5000)).toBe(true);
    expect(rec.byId.size).toBe(c.stored);
    const faults = (stop.garbageBursts as number) + (stop.bitflips as number) + (stop.drops as number);
    console.log(
      'e2e-sim-cli-faults:',
      JSON.stringify({
        sim: stop,
        agent: {
          framingErrors: c.framingErrors,
          boots: c.boots,
          portDisconnects: c.portDisconnects,
          stored: c.stored,
          duplicates: c.duplicates,
          framingWarnings: agent.events('framing-errors').length,
        },
        arrivals: rec.arrivals.length,
        largestBurst: largestBurst(),
      }),
    );
    // Corrupted frames and the half frames of the resets are counted, not delivered. A fault
    // while unplugged is lost with its bytes, and two faults can hit one frame: hence the slack.
    expect(c.framingErrors).toBeGreaterThanOrEqual(Math.floor(faults / 3));
    expect(c.framingErrors).toBeGreaterThan(0);
    expect(agent.events('framing-errors').length).toBeGreaterThan(0);
    expect(c.boots).toBeGreaterThanOrEqual(1 + RESETS);
    expect(c.portDisconnects).toBeGreaterThanOrEqual(UNPLUGS);
    expect(c.stored).toBeGreaterThan(0);
    // A stable broker link and no agent crash: no reading arrived twice.
    expect([...rec.byId.values()].filter((l) => l.length > 1)).toEqual([]);
    // Nothing corrupted got through as a reading: every value the subscriber saw is a number.
    for (const a of rec.arrivals)
      expect(typeof (JSON.parse(a.payload) as { value: unknown }).value).toBe('number');
  }, 40_000);
});
