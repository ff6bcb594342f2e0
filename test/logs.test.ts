/**
 * Issue 13.6 and the agent's small log fixes, with the real processes: broker-lite, the agent
 * and firmware-sim write one JSON shape (time, level, msg, then fields; the same level names);
 * under systemd (JOURNAL_STREAM names their stderr) every line starts with its syslog priority,
 * which is what `journalctl -p warning` selects on. The agent names a port one way in every port
 * line, says nothing at warning level on a clean stop, and its health `published` counts
 * readings, not its own status messages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasSocat } from '@mqtt-edge/firmware-sim';
import { LEVELS, type Level, PRIORITY } from '@mqtt-edge/log';
import { describe, expect, it } from 'vitest';
import {
  AGENT_BIN,
  AgentProcess,
  agentStatus,
  brokerWithRecorder,
  SIM_BIN,
  SimProcess,
  testScope,
  until,
  verify,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const socat = hasSocat();
if (!socat)
  console.warn('logs: socat missing, the tests with devices on ptys are skipped (apt-get install socat)');

const { cleanups, tmp } = testScope('logs');

/** The one shape: `time`, `level` (one of the shared names), `msg`, in that order, then fields. */
function expectShape(lines: Array<Record<string, unknown>>, who: string): void {
  expect(lines.length, who).toBeGreaterThan(0);
  for (const l of lines) {
    expect(Object.keys(l).slice(0, 3), `${who}: ${JSON.stringify(l)}`).toEqual(['time', 'level', 'msg']);
    expect(LEVELS, `${who}: ${JSON.stringify(l)}`).toContain(l.level);
    expect(typeof l.msg).toBe('string');
    expect(Number.isNaN(Date.parse(String(l.time)))).toBe(false);
  }
}

/** A process whose stderr is a file that JOURNAL_STREAM names, as systemd's journal stream is. */
function underJournal(args: string[], file: string): ChildProcess {
  const fd = openSync(file, 'w');
  const st = fstatSync(fd, { bigint: true });
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'ignore', fd],
    env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
  });
  closeSync(fd);
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Journal lines: `<N>` then the JSON line, N its level's priority. */
function journalLines(file: string): Array<{ priority: number; line: Record<string, unknown> }> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^<(\d)>(\{.*\})$/.exec(l);
      if (m === null) throw new Error(`not a journal line: ${l}`);
      return { priority: Number(m[1]), line: JSON.parse(m[2]) as Record<string, unknown> };
    });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('issue 13.6: one log shape, journald priorities', () => {
  it('issue 13.6: under systemd every line of broker-lite, the agent and firmware-sim carries its syslog priority', async () => {
    const dir = tmp();
    // broker-lite: starts, is stopped.
    const conf = path.join(dir, 'broker.conf');
    writeFileSync(conf, 'listener 0 127.0.0.1\nsys_interval 0\n');
    const brokerLog = path.join(dir, 'broker.journal');
    const broker = underJournal([BROKER_BIN, '-c', conf], brokerLog);
    expect(await until(() => readFileSync(brokerLog, 'utf8').includes('"msg":"ready"'), 15_000)).toBe(true);
    broker.kill('SIGTERM');
    expect(await exited(broker)).toBe(0);
    // The agent: a port that is not there (a warning), a broker nobody runs (a warning), stopped.
    const agentConf = writeJson(path.join(dir, 'agent.json'), {
      agent: { id: 'j', stateDir: path.join(dir, 'state'), healthInterval: 0 },
      serial: [{ path: path.join(dir, 'no-such-tty'), name: 'ghost' }],
      mqtt: { url: 'mqtt://127.0.0.1:1', reconnectMin: '1s' },
    });
    const agentLog = path.join(dir, 'agent.journal');
    const agent = underJournal([AGENT_BIN, '-c', agentConf], agentLog);
    expect(
      await until(() => readFileSync(agentLog, 'utf8').includes('"msg":"port-open-failed"'), 15_000),
    ).toBe(true);
    agent.kill('SIGTERM');
    expect(await exited(agent)).toBe(0);
    // firmware-sim: a tty that does not exist (an error), exits 1.
    const simLog = path.join(dir, 'sim.journal');
    const sim = underJournal([SIM_BIN, '--port', path.join(dir, 'no-such-tty')], simLog);
    expect(await exited(sim)).toBe(1);

    const byLevel = new Map<string, number>();
    for (const [who, file] of [
      ['broker-lite', brokerLog],
      ['agent', agentLog],
      ['firmware-sim', simLog],
    ]) {
      const lines = journalLines(file);
      expectShape(
        lines.map((l) => l.line),
        who,
      );
      for (const { priority, line } of lines) {
        expect(priority, `${who}: ${JSON.stringify(line)}`).toBe(PRIORITY[line.level as Level]);
        byLevel.set(`${who}:${line.level}`, priority);
      }
    }
    // What `journalctl -p warning` would show of them: errors and warnings, nothing else.
    expect(byLevel.get('broker-lite:notice')).toBe(5);
    expect(byLevel.get('agent:info')).toBe(6);
    expect(byLevel.get('agent:warning')).toBe(4);
    expect(byLevel.get('firmware-sim:error')).toBe(3);
  }, 60_000);

  it.skipIf(!socat)(
    'issue 13: one JSON shape from all three; ports named one way; a clean stop is no warning; health counts readings',
    async () => {
      const dir = tmp();
      const { url, rec } = await brokerWithRecorder(cleanups, 'lg/#', 'rec-logs');
      const sim = await SimProcess.start(path.join(dir, 'tty-sim'), [
        '--device-id',
        'simdev',
        '--interval',
        '50ms',
      ]);
      cleanups.push(() => sim.dispose());
      const device = await WatchedDevice.create(path.join(dir, 'tty0'), {
        deviceId: 'dev0',
        intervalMs: 40,
        seed: 9,
      });
      cleanups.push(() => device.stop());
      const stateDir = path.join(dir, 'state');
      const config = writeJson(path.join(dir, 'agent.json'), {
        agent: { id: 'lg', stateDir, statusInterval: '100ms', healthInterval: '1s' },
        serial: [
          { path: device.agentPath, name: 'tty0' },
          { path: path.join(dir, 'tty-sim'), name: 'sim' },
        ],
        mqtt: { url, reconnectMin: '50ms', reconnectMax: '500ms' },
        topics: { prefix: 'lg' },
      });
      const agent = new AgentProcess(config);
      await agent.start();
      cleanups.push(() => agent.kill());
      device.start();
      expect(await until(() => device.acks.length >= 20, 15_000)).toBe(true);
      // The device's pty goes away for a moment: port-lost, then port-open again.
      await device.sim.transport.unplug(300);
      await agent.waitFor((l) => l.msg === 'port-lost', 10_000);
      const acked = device.acks.length;
      expect(await until(() => device.acks.length >= acked + 10, 15_000)).toBe(true);
      await device.stop();
      // Stopping the device closes its pty: the agent loses that port again, before its own stop.
      const firstLost = agent.lines.findIndex((l) => l.msg === 'port-lost' && l.port === 'tty0');
      await agent.waitFor((l) => l.msg === 'port-lost' && l.port === 'tty0', 10_000, firstLost + 1);
      const v = () => verify([device], rec, 4, []);
      expect(await until(() => v().missing.length === 0, 10_000)).toBe(true);
      expect(v().duplicates).toEqual([]);

      // Health: `published` is readings (all of them arrived once), not statuses.
      const readings = () => rec.arrivals.length;
      expect(
        await until(() => agentStatus(stateDir)?.counters.published === readings(), 10_000),
        `published ${agentStatus(stateDir)?.counters.published} readings ${readings()}`,
      ).toBe(true);
      const counters = agentStatus(stateDir)!.counters;
      expect(counters.controlPublished).toBeGreaterThanOrEqual(3);
      const health = rec.other.filter((m) => m.topic === 'lg/_agent/lg/health');
      expect(health.length).toBeGreaterThan(0);
      const last = JSON.parse(health.at(-1)!.payload).counters;
      expect(last.published).toBeGreaterThan(0);
      expect(last.published).toBeLessThanOrEqual(readings());

      // Every port line names the port by its configured name and its path, the same way.
      const portLines = agent.lines.filter((l) => l.msg.startsWith('port-') && l.port === 'tty0');
      expect(portLines.map((l) => l.msg)).toEqual(expect.arrayContaining(['port-open', 'port-lost']));
      for (const l of portLines) expect(l.path, JSON.stringify(l)).toBe(device.agentPath);
      const lost = portLines.find((l) => l.msg === 'port-lost')!;
      expect(['closed', 'end of stream', 'error']).toContain(lost.reason);

      // A clean stop: nothing at warning or above from the stop itself.
      const from = agent.lines.length;
      expect(await agent.stop()).toBe(0);
      const stopping = agent.lines.slice(from);
      expect(stopping.find((l) => l.msg === 'broker-disconnected')).toMatchObject({
        level: 'info',
        by: 'client',
      });
      expect(stopping.filter((l) => l.level === 'warning' || l.level === 'error')).toEqual([]);

      expect(await sim.stop()).toBe(0);
      expectShape(agent.lines, 'agent');
      expectShape(sim.lines, 'firmware-sim');
      expect(sim.lines.at(-1)).toMatchObject({ level: 'info', msg: 'stop', device: 'simdev' });
    },
    60_000,
  );
});
