/**
 * The guarantee under faults, in one bounded run (~60 s; AGENT_SOAK_S=N for a longer soak):
 * three devices on real ptys -> the agent (a child process) -> a fault-injecting TCP proxy ->
 * broker-lite -> a subscriber connected directly to the broker. Meanwhile: the link cut ~20
 * times (drop, stall, reset), the broker restarted, the agent SIGKILLed and restarted three
 * times (once with a torn record appended to its queue while it was down), a pty unplugged and
 * plugged back, garbage on a serial line. Then: every reading a device was acknowledged
 * arrived, in order per topic, and the only duplicates straddle a SIGKILL and are the same
 * reading (identical but for a later receive time `at`: see verify()).
 */
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy } from './helpers/fault-proxy.ts';
import {
  AgentProcess,
  Recorder,
  startBrokerLite,
  until,
  verify,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';

const socat = hasSocat();
if (!socat) console.warn('e2e-faults: socat missing, skipped (apt-get install socat)');
const SOAK_S = Number(process.env.AGENT_SOAK_S ?? 0);
const RUN_MS = Math.max(60_000, SOAK_S * 1000);
const SENSORS = 4;

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!socat)('agent under faults', () => {
  it(
    'link cuts, broker restart, agent SIGKILLs, torn queue record, pty unplug, garbage: nothing acknowledged is lost',
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-faults-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const broker = await startBrokerLite(path.join(dir, 'broker'));
      cleanups.push(() => broker.stop());
      const proxy = await FaultProxy.start(broker.port);
      cleanups.push(() => proxy.close());
      const rec = await Recorder.start(`mqtt://127.0.0.1:${broker.port}`, 'f/#', 2);
      cleanups.push(() => rec.stop());

      const devices = [
        await WatchedDevice.create(path.join(dir, 'tty0'), { deviceId: 'd0', intervalMs: 100, seed: 11 }),
        await WatchedDevice.create(path.join(dir, 'tty1'), {
          deviceId: 'd1',
          intervalMs: 100,
          seed: 12,
          faults: { garbage: 0.05, bitflip: 0.02 },
        }),
        await WatchedDevice.create(path.join(dir, 'tty2'), {
          deviceId: 'd2',
          intervalMs: 150,
          seed: 13,
          ringSize: 64,
        }),
      ];
      cleanups.push(() => Promise.all(devices.map((d) => d.stop())));
      const queueDir = path.join(dir, 'state', 'queue');
      const config = writeJson(path.join(dir, 'agent.json'), {
        agent: { id: 'gw', stateDir: path.join(dir, 'state'), healthInterval: 0 },
        serial: devices.map((d) => ({ path: d.agentPath })),
        mqtt: {
          url: proxy.url,
          version: 5,
          qos: 2,
          persistentSession: true,
          keepalive: 2,
          reconnectMin: '50ms',
          reconnectMax: '400ms',
        },
        topics: { prefix: 'f' },
        queue: { fsync: 'batch', segmentBytes: '64KiB' },
      });
      const agent = new AgentProcess(config);
      await agent.start();
      cleanups.push(() => agent.kill());
      for (const d of devices) d.start();

      const killTimes: number[] = [];
      const started = Date.now();
      const at = (ms: number) => sleep(Math.max(0, started + ms - Date.now()));
      const kinds = ['drop', 'stall', 'reset'] as const;

      // Link cuts: every ~2.8 s, 300..1200 ms each, cycling through the kinds.
      const cuts = (async () => {
        for (let i = 0; Date.now() - started < RUN_MS - 4000; i++) {
          await at(1500 + i * 2800);
          if (Date.now() - started >= RUN_MS - 4000) break;
          await proxy.cut(kinds[i % 3], 300 + ((i * 337) % 900));
        }
      })();
      // SIGKILL and restart, three times; the second time a torn record goes into the queue first.
      const kills = (async () => {
        for (const [i, t] of [12_000, 27_000, 43_000].entries()) {
          await at(t);
          killTimes.push(Date.now());
          await agent.kill('SIGKILL');
          if (i === 1) {
            const segs = readdirSync(queueDir)
              .filter((n) => /^\d{20}\.log$/.test(n))
              .sort();
            const last = segs[segs.length - 1];
            // The first bytes of a record whose write the kill cut short: a header promising more.
            if (last)
              appendFileSync(
                path.join(queueDir, last),
                Buffer.from([0xff, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03]),
              );
          }
          await sleep(300);
          await agent.start();
        }
      })();
      // The broker restarted (persistent sessions on both sides), a pty unplugged for 2 s.
      const other = (async () => {
        await at(20_000);
        await broker.restart(1000);
        proxy.retarget(broker.port);
        await at(34_000);
        await devices[2].sim.unplug(2000);
      })();
      await Promise.all([cuts, kills, other]);
      await at(RUN_MS);
      const stoppedAt = Date.now();
      await Promise.all(devices.map((d) => d.stop()));

      const reconnectedAfter = (k: number) =>
        agent
          .events('broker-connected')
          .map((l) => Date.parse(l.time))
          .find((t) => t > k) ?? Number.POSITIVE_INFINITY;
      const v = () =>
        verify(
          devices,
          rec,
          SENSORS,
          killTimes.map((k): [number, number] => [k, reconnectedAfter(k)]),
        );
      await until(() => v().missing.length === 0, 30_000, 100);
      const verdict = v();
      const summary = {
        acked: verdict.acked,
        readings: verdict.expectedReadings,
        arrivals: rec.arrivals.length,
        duplicates: verdict.duplicates.length,
        cuts: proxy.stats.cuts,
        proxyConnections: proxy.stats.connections,
        agentStarts: agent.starts,
        recoveries: agent.events('queue-open').map((l) => l.recovery),
        // The unplug, seen by the agent while the run lasted (not the ports closing at its end),
        // and the port opened again after it.
        unplugSeen: agent
          .events('port-lost')
          .filter((l) => l.port === 'tty2' && Date.parse(l.time) < stoppedAt)
          .map((l) => Date.parse(l.time)),
        replugSeen: agent
          .events('port-open')
          .filter((l) => l.port === 'tty2' && Date.parse(l.time) < stoppedAt)
          .map((l) => Date.parse(l.time)),
        framingWarnings: agent.events('framing-errors').length,
        ringOverwrites: devices.map((d) => d.sim.firmware.stats.ringOverwrites),
      };
      console.log('e2e-faults:', JSON.stringify(summary));
      if (process.env.AGENT_FAULTS_DEBUG) {
        const hist = devices.map((d) => {
          const h: number[] = [];
          for (const a of d.acksAt)
            h[Math.floor((a - started) / 2000)] = (h[Math.floor((a - started) / 2000)] ?? 0) + 1;
          return Array.from(h, (x) => x ?? 0).join(',');
        });
        console.log('acks per 2 s:', hist.join('\n'));
        console.log(
          agent.lines
            .filter((l) => l.level !== 'debug' && l.msg !== 'framing-errors')
            .map(
              (l) =>
                `${Math.round((Date.parse(l.time) - started) / 100) / 10} ${l.msg} ${JSON.stringify(l).slice(0, 200)}`,
            )
            .join('\n'),
        );
      }
      if (verdict.unexplainedDuplicates.length > 0) {
        const rel = (t: number) => ((t - started) / 1000).toFixed(3);
        console.log(
          'e2e-faults: kills (killed, reconnected):',
          killTimes.map((k) => `${rel(k)}..${rel(reconnectedAfter(k))}`).join(' '),
          '\nunexplained duplicates (arrivals):',
          verdict.unexplainedDuplicates
            .slice(0, 8)
            .map(
              (id) =>
                `${id} ${rec.byId
                  .get(id)!
                  .map((c) => `${rel(c.at)}#${c.n}`)
                  .join(' ')}`,
            )
            .join('\n'),
        );
      }
      expect(verdict.missing.slice(0, 20)).toEqual([]);
      expect(verdict.orderViolations.slice(0, 20)).toEqual([]);
      expect(verdict.unexplainedDuplicates.slice(0, 20)).toEqual([]);
      expect(verdict.inconsistentDuplicates).toEqual([]);
      // The run did what it says.
      expect(verdict.acked).toBeGreaterThan(600);
      expect(proxy.stats.cuts.drop + proxy.stats.cuts.stall + proxy.stats.cuts.reset).toBeGreaterThanOrEqual(
        18,
      );
      expect(agent.starts).toBe(4);
      expect(summary.recoveries.some((r) => (r as { truncatedTails?: number }).truncatedTails! > 0)).toBe(
        true,
      );
      expect(summary.unplugSeen.length).toBeGreaterThan(0);
      expect(summary.replugSeen.some((t) => t > summary.unplugSeen[0])).toBe(true);
      expect(summary.framingWarnings).toBeGreaterThan(0);
    },
    RUN_MS + 60_000,
  );
});
