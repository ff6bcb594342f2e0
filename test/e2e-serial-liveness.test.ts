/**
 * Issue 19: a gateway failing as gateways do in the field, in a loop (test/helpers/restart-loop.ts:
 * a firmware-sim device on a socat pty pair, the agent as a process; cycles of SIGKILL or unplug,
 * DOWN ms away, restart). In every cycle, while the agent holds the port, the device must never
 * be silent (no byte reaching its tty) for more than two of its intervals, and a reading is
 * stored again. The restart-to-first-stored times are logged; bench/serial-restart.ts measures
 * them before and after (bench/RESULTS.md, "serial (issue 19)").
 *
 * Bounded for npm test: 20 cycles, DOWN 1.5 s (about 75 s). AGENT_LIVENESS_SOAK=N runs N cycles
 * with the field report's 3 s down and longer watches (opt-in, not in npm test).
 */

import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Agent, parseConfig, silentLogger } from '@mqtt-edge/agent';
import { createLinkPair, hasSocat, InProcessTransport } from '@mqtt-edge/firmware-sim';
import { encodeFrame } from '@mqtt-edge/serial-protocol';
import { describe, expect, it } from 'vitest';
import { hasPython, ptyWithFarEnd } from '../packages/serial-protocol/test/pty-helpers.ts';
import {
  AGENT_BIN,
  AgentProcess,
  agentStatus,
  startBrokerLite,
  testScope,
  until,
  WatchedDevice,
  writeJson,
} from './helpers/processes.ts';
import { parse, value } from './helpers/prom.ts';
import { LOOP_INTERVAL_MS, runRestartLoop } from './helpers/restart-loop.ts';

const socat = hasSocat();
if (!socat) console.warn('e2e-serial-liveness: socat missing, skipped (apt-get install socat)');
if (!hasPython)
  console.warn('e2e-serial-liveness: python3 (its pty module) missing, the write bound test skipped');

const SOAK = Number(process.env.AGENT_LIVENESS_SOAK ?? 0);
const CYCLES = SOAK > 0 ? SOAK : 20;
const DOWN_MS = SOAK > 0 ? 3000 : 1500;
/** How long each cycle watches the device once the agent holds the port again. */
const WATCH_MS = SOAK > 0 ? 3000 : 1250;

const { cleanups, tmp } = testScope('e2e-live');

describe.skipIf(!socat)('issue 19: kill, unplug, restart, in a loop', () => {
  it(
    `issue 19.4: ${CYCLES} cycles of SIGKILL or unplug, ${DOWN_MS} ms down, restart: the device is never silent for more than two intervals while the agent holds the port`,
    async () => {
      const { cycles, agent, device, summary } = await runRestartLoop(
        { startBrokerLite, WatchedDevice, AgentProcess, writeJson },
        { cycles: CYCLES, downMs: DOWN_MS, watchMs: WATCH_MS, dir: tmp(), cleanups },
      );
      console.log('e2e-serial-liveness:', JSON.stringify(summary));

      // Every cycle stored readings again, and the device never went quiet on a held port.
      expect(cycles.filter((c) => !Number.isFinite(c.firstStoredMs)).map((c) => cycles.indexOf(c))).toEqual(
        [],
      );
      expect(cycles.every((c) => Number.isFinite(c.longestSilenceMs))).toBe(true);
      expect(
        cycles
          .map((c, i) => ({ cycle: i, kind: c.kind, longestSilenceMs: c.longestSilenceMs }))
          .filter((c) => c.longestSilenceMs > 2 * LOOP_INTERVAL_MS),
      ).toEqual([]);
      // The run did what it says: the agent was killed and restarted, the pty unplugged and back,
      // and the device's writes had backed up (parked) when the agent came back, most times.
      expect(cycles.filter((c) => c.parked).length).toBeGreaterThanOrEqual(Math.floor(CYCLES / 4));
      expect(agent.starts).toBe(1 + Math.ceil(CYCLES / 2));
      expect(device.sim.stats.unplugs).toBe(Math.floor(CYCLES / 2));
    },
    (SOAK > 0 ? CYCLES * (DOWN_MS + WATCH_MS + 4000) : 150_000) + 30_000,
  );
});

describe.skipIf(!socat)(
  'issue 19.2: a silent port is woken (the agent as a process, a device on a pty)',
  () => {
    it('issue 19.2: a device that hangs gets a HELLO request, then its port reopened, while the silence lasts; one warning, one line when it speaks again; counted in status and /metrics', async () => {
      const dir = tmp();
      const broker = await startBrokerLite();
      cleanups.push(() => broker.stop());
      // 200 ms in its HELLO (p): silent after 700 ms, reopened 1 s after an unanswered request.
      const device = await WatchedDevice.create(path.join(dir, 'tty0'), {
        deviceId: 'quiet',
        intervalMs: 200,
        seed: 7,
      });
      cleanups.push(() => device.stop());
      const stateDir = path.join(dir, 'state');
      const config = writeJson(path.join(dir, 'agent.json'), {
        agent: { id: 'lv', stateDir, healthInterval: 0, statusInterval: '100ms' },
        serial: [{ path: device.agentPath, name: 'tty0' }],
        mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
        topics: { prefix: 'lv' },
        queue: { fsync: 'never' },
        metrics: { listen: '127.0.0.1:0' },
      });
      const agent = new AgentProcess(config);
      await agent.start();
      cleanups.push(() => agent.kill());
      const listening = await agent.waitFor((l) => l.msg === 'metrics-listening', 10_000);
      const metrics = async () =>
        parse(await (await fetch(`http://127.0.0.1:${listening.port as number}/metrics`)).text());
      device.start();
      await agent.waitFor((l) => l.msg === 'device-online', 10_000);
      const port = () => agentStatus(stateDir)?.ports[0];
      expect(await until(() => port()?.expectedIntervalMs === 200, 5000)).toBe(true);

      // The firmware hangs: it neither writes nor reads; the agent's port stays open.
      const hungAt = Date.now();
      device.sim.hang();
      const silent = await agent.waitFor((l) => l.msg === 'port-silent', 10_000);
      expect(silent).toMatchObject({
        level: 'warning',
        port: 'tty0',
        device: 'quiet',
        expectedIntervalMs: 200,
        next: 'hello',
      });
      expect(Date.parse(silent.time) - hungAt).toBeGreaterThanOrEqual(500);
      // Unanswered: the port is reopened, and again after further requests while the hang lasts.
      expect(await until(() => (port()?.counters.silenceReopens ?? 0) >= 2, 15_000)).toBe(true);
      const during = port()!;
      expect(during.counters).toMatchObject({ silences: 1 });
      expect(during.counters.silenceProbes).toBeGreaterThanOrEqual(2);
      expect(during.silentSince).toBeGreaterThan(0);
      const st = spawnSync(process.execPath, [AGENT_BIN, 'status', '-c', config], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      expect(st.status, st.stderr).toBe(0);
      expect(st.stdout).toMatch(/port tty0 .*SILENT for [0-9.]+ (ms|s) \(HELLO asked \d+x, reopened \d+x\)/);
      expect(st.stdout).toMatch(/port tty0 .*silences 1\b/);
      const m = await metrics();
      expect(value(m, 'mqtt_edge_agent_port_silent', { port: 'tty0' })).toBe(1);
      expect(value(m, 'mqtt_edge_agent_port_silences_total', { port: 'tty0' })).toBe(1);
      expect(value(m, 'mqtt_edge_agent_port_silence_probes_total', { port: 'tty0' })).toBeGreaterThanOrEqual(
        2,
      );
      expect(value(m, 'mqtt_edge_agent_port_silence_reopens_total', { port: 'tty0' })).toBeGreaterThanOrEqual(
        2,
      );
      expect(value(m, 'mqtt_edge_agent_port_expected_interval_seconds', { port: 'tty0' })).toBe(0.2);

      // It comes back: the spell ends, one line says so, readings flow.
      const acks = device.acksAt.length;
      device.sim.resume();
      const alive = await agent.waitFor((l) => l.msg === 'port-alive', 10_000);
      expect(alive).toMatchObject({ level: 'info', port: 'tty0', device: 'quiet' });
      expect(alive.reopens).toBeGreaterThanOrEqual(2);
      expect(await until(() => device.acksAt.length > acks + 3, 5000)).toBe(true);
      expect(await until(() => port()?.silentSince === undefined, 5000)).toBe(true);
      expect(value(await metrics(), 'mqtt_edge_agent_port_silent', { port: 'tty0' })).toBe(0);
      // Once per spell: one warning, one end, no port-lost for the reopens.
      expect(agent.events('port-silent')).toHaveLength(1);
      expect(agent.events('port-alive')).toHaveLength(1);
      expect(agent.events('port-lost')).toEqual([]);
    }, 60_000);
  },
);

/** A directory, broker-lite and an in-process link for an agent in this process; all gone after the test. */
async function inProcess() {
  const dir = tmp();
  const broker = await startBrokerLite();
  cleanups.push(() => broker.stop());
  const pair = createLinkPair();
  cleanups.push(() => pair.close());
  return { dir, broker, pair };
}

describe('issue 19.2: the expected interval follows a reload (the agent in process)', () => {
  it('issue 19.2: agent.expectedInterval and serial[].expectedInterval change live, without reopening the port', async () => {
    const { dir, broker, pair } = await inProcess();
    // No p in its HELLO: the config decides the port's interval.
    const device = WatchedDevice.over(new InProcessTransport(pair), {
      deviceId: 'rl19',
      intervalMs: 100,
      seed: 5,
      announceInterval: false,
    });
    cleanups.push(() => device.stop());
    const doc = (agentInterval: string, portInterval?: string) => ({
      agent: {
        id: 'rl19',
        stateDir: path.join(dir, 'state'),
        healthInterval: 0,
        expectedInterval: agentInterval,
      },
      serial: [
        {
          path: path.join(dir, 'link0'),
          name: 'tty0',
          ...(portInterval ? { expectedInterval: portInterval } : {}),
        },
      ],
      mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
      topics: { prefix: 'rl19' },
      queue: { fsync: 'never' },
    });
    const config = (a: string, p?: string) => parseConfig(doc(a, p), { baseDir: dir, env: {} });
    const agent = await Agent.start({
      config: config('60s'),
      log: silentLogger,
      statusFile: false,
      openPort: async () => pair.host,
    });
    cleanups.push(() => agent.stop(200));
    device.start();
    expect(await until(() => device.acks.length >= 3, 10_000)).toBe(true);
    const port = () => agent.snapshot().ports[0];
    expect(port().expectedIntervalMs).toBe(60_000);
    const opens = port().counters.linkOpens;

    const first = await agent.reload(config('10s'));
    expect(first.applied).toEqual(['agent.expectedInterval']);
    expect(port().expectedIntervalMs).toBe(10_000);
    const second = await agent.reload(config('10s', '2s'));
    expect(second.applied).toEqual(['serial']);
    expect(second.portsReopened).toEqual([]);
    expect(port().expectedIntervalMs).toBe(2000);
    const off = await agent.reload(config('10s', '0'));
    expect(off.portsReopened).toEqual([]);
    expect(port().expectedIntervalMs).toBe(0);
    // The port stayed open throughout, and readings went on.
    expect(port().counters.linkOpens).toBe(opens);
    const acks = device.acks.length;
    expect(await until(() => device.acks.length >= acks + 3, 10_000)).toBe(true);
  }, 30_000);
});

describe.skipIf(!hasPython)("issue 19.1: the agent's writes are bounded (a real pty nobody reads)", () => {
  it('issue 19.1: ACKs that find no room in the tty for serial[].writeTimeout fail the write; the port is lost, counted and opened again', async () => {
    const dir = tmp();
    const broker = await startBrokerLite();
    cleanups.push(() => broker.stop());
    // The device end is a pty's master held by python3, full duplex like a UART: it writes what
    // it is given and reads nothing, so the agent's ACKs fill the pty, and then its write waits
    // for room that never comes. (socat in between would not do: its one loop blocks on the
    // full side and stops the other direction too, so the agent would run out of DATA to ACK.)
    const far = await ptyWithFarEnd();
    cleanups.push(() => far.close());
    const lines: Array<{ level: string; event: string; fields: Record<string, unknown> }> = [];
    const config = parseConfig(
      {
        agent: { id: 'wt19', stateDir: path.join(dir, 'state'), healthInterval: 0, expectedInterval: 0 },
        serial: [{ path: far.path, name: 'tty0', writeTimeout: '300ms' }],
        mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
        topics: { prefix: 'wt19' },
        queue: { fsync: 'never' },
      },
      { baseDir: dir, env: {} },
    );
    const agent = await Agent.start({
      config,
      statusFile: false,
      log: { log: (level, event, fields = {}) => lines.push({ level, event, fields }), enabled: () => true },
    });
    cleanups.push(() => agent.stop(200));
    const port = () => agent.snapshot().ports[0];
    expect(await until(() => port().state === 'open', 10_000)).toBe(true);

    // A HELLO, then DATA frames, each of which the agent stores and ACKs (about 15 bytes each:
    // 4,000 of them are more than the pty holds).
    const bootId = 0x1919;
    far.write(
      encodeFrame({
        type: 'hello',
        seq: 0,
        deviceId: 'wt',
        firmware: 't-1',
        bootId,
        sensors: [{ name: 'x' }],
      }),
    );
    for (let seq = 1; seq <= 4000; seq += 100) {
      const batch = [];
      for (let i = seq; i < seq + 100; i++)
        batch.push(encodeFrame({ type: 'data', seq: i, bootId, readings: [{ sensor: 'x', value: i }] }));
      far.write(Buffer.concat(batch));
    }

    expect(
      await until(() => (port().counters.linkWriteTimeouts ?? 0) >= 1, 20_000),
      JSON.stringify(port()),
    ).toBe(true);
    const lost = lines.find((l) => l.event === 'port-lost');
    expect(lost?.fields).toMatchObject({ port: 'tty0', reason: 'error' });
    expect(String(lost?.fields.error)).toMatch(/no progress for 300 ms/);
    expect(port().counters.linkDisconnects).toBeGreaterThanOrEqual(1);
    expect(port().counters.stored).toBeGreaterThan(2000);
    // Opened again, on the same path (the pty is still there).
    expect(await until(() => (port().counters.linkOpens ?? 0) >= 2, 10_000)).toBe(true);
  }, 40_000);
});

describe('issue 19.2: a HELLO interval past what a timer holds (the agent in process)', () => {
  it('issue 19.2: p = 2^32-1 ms is taken as it is; the silence timer does not overflow into a 1 ms loop', async () => {
    const { dir, broker, pair } = await inProcess();
    const overflows: string[] = [];
    const onWarning = (w: Error) => {
      if (w.name === 'TimeoutOverflowWarning') overflows.push(w.message);
    };
    process.on('warning', onWarning);
    cleanups.push(() => process.off('warning', onWarning));
    const config = parseConfig(
      {
        agent: { id: 'p19', stateDir: path.join(dir, 'state'), healthInterval: 0 },
        serial: [{ path: path.join(dir, 'link0'), name: 'tty0' }],
        mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
        topics: { prefix: 'p19' },
        queue: { fsync: 'never' },
      },
      { baseDir: dir, env: {} },
    );
    const lines: string[] = [];
    const agent = await Agent.start({
      config,
      statusFile: false,
      log: { log: (_level, event) => lines.push(event), enabled: () => true },
      openPort: async () => pair.host,
    });
    cleanups.push(() => agent.stop(200));
    // A device (hostile, or mistaken) says it reports once every 49.7 days: 1.5 of that is
    // beyond setTimeout's 2^31-1 ms, which Node turns into 1 ms.
    const intervalMs = 0xffffffff;
    pair.device.write(
      encodeFrame({
        type: 'hello',
        seq: 0,
        deviceId: 'p19',
        firmware: 't',
        bootId: 1,
        sensors: [],
        intervalMs,
      }),
    );
    const port = () => agent.snapshot().ports[0];
    expect(await until(() => port().expectedIntervalMs === intervalMs, 5000)).toBe(true);
    // Long enough for a 1 ms timer loop to have turned hundreds of times.
    await new Promise((r) => setTimeout(r, 300));
    expect(overflows).toEqual([]);
    expect(lines.filter((l) => l === 'port-silent')).toEqual([]);
    expect(port().silentSince).toBeUndefined();
  }, 20_000);
});
