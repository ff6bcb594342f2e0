/**
 * Issue 12.12, end to end: the agent (a child process) with its queue directory on a small real
 * tmpfs that the test fills and later frees, a simulated device on a real pty (socat), the broker
 * connected throughout. While the disk is full the agent must not ACK readings (the device keeps
 * them in its ring and retransmits), must say so in its log and status, must keep running, and
 * must take readings again by itself once there is room; every reading it ACKed arrives, once.
 * Needs root (the tmpfs mount) and socat; skipped with the reason otherwise.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AgentProcess,
  agentStatus,
  Recorder,
  startBrokerLite,
  until,
  verify,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';
import { mountTmpfs, tmpfsUnavailable } from './helpers/tmpfs.ts';

const why = tmpfsUnavailable() ?? (hasSocat() ? undefined : 'socat missing (apt-get install socat)');
if (why !== undefined) console.warn(`agent-disk-full: skipped: ${why}`);

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const SENSORS = 4;

describe.skipIf(why !== undefined)(
  `agent with its queue on a disk that fills up${why ? ` (skipped: ${why})` : ''}`,
  () => {
    it('issue 12.12: no ACK while the disk is full, nothing ACKed lost, the flow resumes by itself when space is back', async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-disk-full-'));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      const fs = mountTmpfs(2 << 20);
      cleanups.push(() => fs.unmount());
      const broker = await startBrokerLite();
      cleanups.push(() => broker.stop());
      const url = `mqtt://127.0.0.1:${broker.port}`;
      const rec = await Recorder.start(url, 'full/#', 1, 'rec-disk-full');
      cleanups.push(() => rec.stop());
      const device = await WatchedDevice.create(path.join(dir, 'tty0'), {
        deviceId: 'f0',
        intervalMs: 40,
        ringSize: 2048,
        retransmitMs: 250,
        seed: 12,
      });
      cleanups.push(() => device.stop());
      const stateDir = path.join(dir, 'state');
      const config = writeJson(path.join(dir, 'agent.json'), {
        agent: { id: 'disk-full', stateDir, healthInterval: 0, statusInterval: '100ms' },
        serial: [{ path: device.agentPath, name: 'tty0' }],
        mqtt: { url, reconnectMin: '50ms', reconnectMax: '200ms' },
        topics: { prefix: 'full' },
        queue: { dir: path.join(fs.dir, 'queue') },
      });
      const agent = new AgentProcess(config);
      await agent.start();
      cleanups.push(() => agent.kill());
      device.start();
      const fw = device.sim.firmware;
      const acked = () => new Set(device.acks.map((a) => `${a.bootId}:${a.seq}`)).size;
      expect(await until(() => acked() >= 20, 15_000)).toBe(true);

      // The disk fills up.
      fs.fill();
      const failed = await agent.waitFor((l) => l.msg === 'queue-write-failed', 15_000);
      expect(failed).toMatchObject({ level: 'error', code: 'NO_SPACE' });
      fs.fill(); // whatever the cut of the torn record gave back
      // Two more failed retries: the last page's remainder of the queue file is used up too (a
      // batch that fits in it is stored and ACKed, rightly: it is durable).
      expect(await until(() => (agentStatus(stateDir)?.queue.writeFailures ?? 0) >= 3, 15_000)).toBe(true);
      const ackedWhenFull = acked();
      const unackedWhenFull = fw.unacked;
      const retransmits = fw.stats.retransmits;
      expect(
        await until(
          () => fw.stats.retransmits >= retransmits + 12 && fw.unacked >= unackedWhenFull + 40,
          15_000,
        ),
      ).toBe(true);
      // A batch of 4 readings smaller than the page remainder a failed one left could still fit:
      // at most one frame; in practice none.
      const ackedDuringFull = acked() - ackedWhenFull;
      expect(ackedDuringFull).toBeLessThanOrEqual(1);
      const full = agentStatus(stateDir)!;
      expect(full.queue.failed).toBe(true);
      expect(full.queue.writeError?.code).toBe('NO_SPACE');
      expect(full.ports[0].counters.storeErrors).toBeGreaterThan(0);
      expect(full.broker.connected).toBe(true);

      // Space is back: the agent takes readings again without a restart.
      const freedAt = Date.now();
      const held = fw.unackedSeqs().map((seq) => `${fw.bootId}:${seq}`);
      fs.free();
      await agent.waitFor((l) => l.msg === 'queue-write-recovered' && Date.parse(l.time) >= freedAt, 15_000);
      const ackedKeys = () => new Set(device.acks.map((a) => `${a.bootId}:${a.seq}`));
      expect(
        await until(
          () => held.every((k) => ackedKeys().has(k)) && acked() >= ackedWhenFull + held.length + 20,
          20_000,
        ),
      ).toBe(true);
      await device.stop();
      expect(await until(() => agentStatus(stateDir)?.queue.count === 0, 15_000)).toBe(true);
      const v = () => verify([device], rec, SENSORS, []);
      expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
      const verdict = v();
      console.log(
        'agent-disk-full:',
        JSON.stringify({
          ackedBeforeFull: ackedWhenFull,
          ackedDuringFull,
          heldAtFree: held.length,
          acked: verdict.acked,
          retransmits: fw.stats.retransmits,
          storeErrors: agentStatus(stateDir)?.ports[0].counters.storeErrors,
          writeFailures: agentStatus(stateDir)?.queue.writeFailures,
        }),
      );
      expect(verdict.missing).toEqual([]);
      // Issue 18.5: a reading is published before its commit. One whose commit failed was not
      // ACKed, the device sent it again and it was published again: a second copy, the same
      // reading, of a frame ACKed only after the disk failed, first published before it was freed.
      const failedAt = Date.parse(failed.time as string);
      const firstAck = new Map<string, number>();
      device.acks.forEach((a, i) => {
        const k = `${a.bootId}:${a.seq}`;
        if (!firstAck.has(k)) firstAck.set(k, device.acksAt[i]);
      });
      const reading = (payload: string) => {
        const { at: _at, ...rest } = JSON.parse(payload) as Record<string, unknown>;
        return rest;
      };
      for (const id of verdict.duplicates) {
        const [first, ...again] = rec.byId.get(id)!;
        for (const c of again) expect(reading(c.payload)).toEqual(reading(first.payload));
        expect(first.at).toBeLessThan(freedAt);
        const frame = id.split(':').slice(1, 3).join(':');
        expect(firstAck.get(frame)).toBeGreaterThan(failedAt);
      }
      expect(verdict.orderViolations).toEqual([]);
      expect(fw.stats.ringOverwrites).toBe(0);
      const after = agentStatus(stateDir)!;
      expect(after.queue.failed).toBe(false);
      // One line when a spell of failures started, one when it ended; the agent never restarted.
      // A batch that fitted in the page remainder a failed write left ends a spell early (it is
      // durable, so it is stored and ACKed) and the next write starts another: lines alternate.
      const spells = agent.lines
        .filter((l) => l.msg === 'queue-write-failed' || l.msg === 'queue-write-recovered')
        .map((l) => l.msg);
      expect(spells.length % 2).toBe(0);
      expect(spells.length).toBeLessThanOrEqual(6);
      expect(spells).toEqual(
        spells.map((_, i) => (i % 2 === 0 ? 'queue-write-failed' : 'queue-write-recovered')),
      );
      expect(agent.events('agent-start')).toHaveLength(1);
      expect(await agent.stop()).toBe(0);
    }, 90_000);
  },
);
