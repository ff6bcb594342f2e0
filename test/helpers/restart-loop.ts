/**
 * Issue 19's field test as a loop, shared by test/e2e-serial-liveness.test.ts (which asserts on
 * it) and bench/serial-restart.ts (which measures it, against this checkout and against an older
 * one): a firmware-sim device on a socat pty pair -> the agent (a child process) -> broker-lite.
 * Cycles alternate: the agent SIGKILLed, or socat stopped (an unplug: both links vanish); `downMs`
 * with no agent (or no pty), long enough for the device's retransmissions to fill the ptys so that
 * its writes park; then the agent started again (or the pair back).
 *
 * Per cycle: from the restart (agent spawned, or pty back) to the first reading stored, seen as
 * the first ACK at the device (the agent ACKs only what its queue holds); and the longest time the
 * device's tty took no byte while the agent held the port.
 *
 * The process helpers come in as a parameter, so that the bench can drive an older checkout's
 * agent and simulator (its own test/helpers/processes.ts) with this same loop. What older helpers
 * lack (a device's `writtenAt`, its `pty`) is then not measured.
 */
import path from 'node:path';
import type { FirmwareSimOptions, SensorSpec } from '@mqtt-edge/firmware-sim';

export interface LoopAgent {
  readonly starts: number;
  readonly lines: Array<{ msg: string; [k: string]: unknown }>;
  start(timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  waitFor(
    pred: (l: { time: string; msg: string }) => boolean,
    timeoutMs: number,
  ): Promise<{ time: string; msg: string }>;
}

export interface LoopDevice {
  readonly agentPath: string;
  readonly acksAt: number[];
  /** When the device's port took bytes (absent in helpers older than issue 19). */
  readonly writtenAt?: number[];
  readonly pty?: { devicePort?: { writableLength: number } };
  readonly sim: {
    unplug(ms: number): Promise<void>;
    firmware: { stats: object };
    stats: object & { unplugs: number };
  };
  start(): void;
  stop(): Promise<void>;
}

/** What the loop needs of test/helpers/processes.ts (this checkout's, or an older one's). */
export interface LoopHelpers {
  startBrokerLite(): Promise<{ port: number; stop(): Promise<void> }>;
  WatchedDevice: { create(agentPath: string, options: FirmwareSimOptions): Promise<LoopDevice> };
  AgentProcess: new (configFile: string) => LoopAgent;
  writeJson(file: string, value: unknown): string;
}

export interface RestartLoopOptions {
  cycles: number;
  /** How long the agent (or the pty) stays away. */
  downMs: number;
  /** How long each cycle watches the device once the agent holds the port again. */
  watchMs: number;
  /**
   * A cycle also waits, from the restart, up to this long for its first reading stored (0: only
   * `watchMs`). The bench's way to put a figure on a stalled cycle.
   */
  storedWithinMs?: number;
  /** A directory for the pty links, the config and the agent's state. */
  dir: string;
  /** Stops what the loop started, last first; the caller runs them (afterEach, finally). */
  cleanups: Array<() => Promise<unknown> | unknown>;
}

export interface Cycle {
  kind: 'kill' | 'unplug';
  /** Agent spawned again, or the pty back. */
  restartAt: number;
  /** The agent's port-open after the restart. */
  openAt: number;
  /** Until the next disruption. */
  watchEnd: number;
  /** Restart to the first ACK at the device (a reading stored); Infinity: none in the cycle. */
  firstStoredMs: number;
  /** Longest time the device's tty took no byte while the agent held the port (NaN: not measured). */
  longestSilenceMs: number;
  /** A device write was waiting for room in its tty when the agent came back. */
  parked: boolean;
}

export interface RestartLoopResult {
  cycles: Cycle[];
  agent: LoopAgent;
  device: LoopDevice;
  summary: {
    cycles: number;
    downMs: number;
    intervalMs: number;
    restartToFirstStoredMs: { median: number; max: number; perCycle: Array<number | 'none'> };
    /** Cycles with no reading stored within the cycle. */
    cyclesWithoutStored: number;
    longestSilenceMs: number[];
    /** Cycles in which the device was silent for more than two intervals on a held port. */
    silentCycles: number;
    parkedAtRestart: number;
    agentSilences: number;
    writeTimeouts: number;
    device: object;
    deviceTransport: object;
  };
}

/** The device's reporting interval. */
export const LOOP_INTERVAL_MS = 250;

/**
 * 36 sensors: DATA frames of about 900 bytes, retransmitted every 100 ms while unacknowledged,
 * fill the ~36 KiB the two ptys and socat hold within 1.5 s. In the field it took a chattier
 * device or a longer outage; the stall is the same.
 */
const SENSORS: SensorSpec[] = Array.from({ length: 36 }, (_, i) => ({
  name: `s${i}`,
  kind: 'walk',
  min: 0,
  max: 100,
  start: 50,
  step: 0.1,
  noise: 0.05,
  decimals: 2,
}));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const at = (l: { time: string }) => Date.parse(l.time);

/** The lower median (an observed value). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)];
}

/** Resolves once `pred()` holds or `ms` passed, looking every 10 ms. */
async function until(pred: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await sleep(10);
}

export async function runRestartLoop(h: LoopHelpers, o: RestartLoopOptions): Promise<RestartLoopResult> {
  const broker = await h.startBrokerLite();
  o.cleanups.push(() => broker.stop());
  const device = await h.WatchedDevice.create(path.join(o.dir, 'tty0'), {
    deviceId: 'live',
    intervalMs: LOOP_INTERVAL_MS,
    sensors: SENSORS,
    retransmitMs: 100,
    ringSize: 64,
    seed: 19,
  });
  o.cleanups.push(() => device.stop());
  const config = h.writeJson(path.join(o.dir, 'agent.json'), {
    agent: { id: 'live', stateDir: path.join(o.dir, 'state'), healthInterval: 0 },
    serial: [{ path: device.agentPath }],
    mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, reconnectMin: '50ms', reconnectMax: '200ms' },
    topics: { prefix: 'live' },
    queue: { fsync: 'never' },
  });
  const agent = new h.AgentProcess(config);
  await agent.start();
  o.cleanups.push(() => agent.kill());
  device.start();
  const portOpenAfter = (t: number) =>
    agent.waitFor((l) => l.msg === 'port-open' && at(l) >= t, 15_000).then(at);
  await portOpenAfter(0);
  await sleep(o.watchMs);

  const cycles: Cycle[] = [];
  for (let i = 0; i < o.cycles; i++) {
    const kind = i % 2 === 0 ? 'kill' : 'unplug';
    let restartAt: number;
    let parked = false;
    if (kind === 'kill') {
      await agent.kill('SIGKILL');
      // The outage is the fault being simulated, not a wait for something to happen.
      await sleep(o.downMs);
      // Bytes still in the stream: its write is parked for room in the tty.
      parked = (device.pty?.devicePort?.writableLength ?? 0) > 0;
      restartAt = Date.now();
      await agent.start();
    } else {
      // socat stopped: the agent's port hangs up, the device's too; the pair is made again
      // at the same paths after downMs, and the agent reopens the path.
      await device.sim.unplug(o.downMs);
      restartAt = Date.now();
    }
    const openAt = await portOpenAfter(restartAt - (kind === 'unplug' ? o.downMs : 0));
    await sleep(o.watchMs);
    if (o.storedWithinMs)
      await until(
        () => device.acksAt.some((t) => t >= restartAt),
        Math.max(0, restartAt + o.storedWithinMs - Date.now()),
      );
    const watchEnd = Date.now();
    const firstAck = device.acksAt.find((t) => t >= restartAt);
    let longest = Number.NaN;
    if (device.writtenAt !== undefined) {
      longest = 0;
      let prev = openAt;
      for (const t of device.writtenAt) {
        if (t <= openAt) continue;
        if (t > watchEnd) break;
        longest = Math.max(longest, t - prev);
        prev = t;
      }
      longest = Math.max(longest, watchEnd - prev);
    }
    cycles.push({
      kind,
      restartAt,
      openAt,
      watchEnd,
      firstStoredMs: firstAck === undefined || firstAck > watchEnd ? Infinity : firstAck - restartAt,
      longestSilenceMs: longest,
      parked,
    });
  }

  const stored = cycles.map((c) => c.firstStoredMs);
  return {
    cycles,
    agent,
    device,
    summary: {
      cycles: o.cycles,
      downMs: o.downMs,
      intervalMs: LOOP_INTERVAL_MS,
      restartToFirstStoredMs: {
        median: median(stored),
        max: Math.max(...stored),
        perCycle: stored.map((x) => (Number.isFinite(x) ? x : 'none')),
      },
      cyclesWithoutStored: stored.filter((x) => !Number.isFinite(x)).length,
      longestSilenceMs: cycles.map((c) => c.longestSilenceMs),
      silentCycles: cycles.filter((c) => c.longestSilenceMs > 2 * LOOP_INTERVAL_MS).length,
      parkedAtRestart: cycles.filter((c) => c.parked).length,
      agentSilences: agent.lines.filter((l) => l.msg === 'port-silent').length,
      writeTimeouts: agent.lines.filter((l) => l.msg === 'port-lost' && /no progress/.test(String(l.error)))
        .length,
      device: device.sim.firmware.stats,
      deviceTransport: device.sim.stats,
    },
  };
}
