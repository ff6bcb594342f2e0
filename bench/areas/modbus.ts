/**
 * Modbus RTU (issue 20): polls per second the agent gets from one line at 9,600 and at 115,200
 * baud, against the line's own limit for the same frames, and the agent's CPU per 1,000 polls.
 *
 * The agent (the installed bin, a child process, publishing to broker-lite in another) polls 20
 * units at 100 ms each, 10 holding registers a poll: more than either line can carry, so the line
 * is the limit. The line is a pty whose far end keeps the baud rate's clock
 * (bench/modbus-line.ts): each response's last byte arrives when it would on the wire. The
 * limit for one poll is its request (8 bytes) and response (25 bytes) at 11 bits a character
 * (8E1) and two frame gaps (3.5 characters; 1.75 ms above 19,200 baud):
 *   polls/s = 1 / ((8 + 25) x char + 2 x gap)
 * Ours counts the responses the line delivered in the window (the agent's polls); CPU is the
 * agent process's user + system time over the window (/proc/PID/stat), per 1,000 polls.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { createSocatPair, hasSocat } from '@mqtt-edge/firmware-sim';
import { modbusCharTimeUs, modbusFrameGapUs } from '@mqtt-edge/serial-protocol';
import { type BenchArea, type BenchOptions, type BenchRow, costRow, freePort, rateRow } from '../harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const AGENT_BIN = path.join(ROOT, 'packages/agent/bin/mqtt-edge-agent.js');
const BROKER_BIN = path.join(ROOT, 'packages/broker-lite/bin/broker-lite.js');
const UNITS = 20;
const REGISTERS = 10;
const REQUEST_BYTES = 8;
const RESPONSE_BYTES = 5 + 2 * REGISTERS;
const FORMAT = { dataBits: 8, parity: 'even', stopBits: 1 } as const;
const TICK_MS = 1000 / 100; // CLK_TCK

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

interface LineStats {
  requests: number;
  responses: number;
  bad: number;
  overlapped: number;
  /** From each response's last byte to the master's next request, summed. */
  turnaroundMs: number;
  turnarounds: number;
}

/** The line emulator: asks for its counters (one JSON line per request). */
class Line {
  private readonly replies: Array<(s: string) => void> = [];
  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (l) => this.replies.shift()?.(l));
  }
  next(): Promise<Record<string, number>> {
    return new Promise((resolve) => this.replies.push((l) => resolve(JSON.parse(l))));
  }
  async stats(): Promise<LineStats> {
    const p = this.next();
    this.child.stdin!.write('stats\n');
    return (await p) as unknown as LineStats;
  }
}

async function measure(
  baud: number,
  seconds: number,
): Promise<{ pollsPerS: number; cpuPer1000: number; note: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-modbus-'));
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const pair = await createSocatPair(path.join(dir, 'line'), path.join(dir, 'agent-tty'));
    stops.push(() => pair.close());
    const emulator = spawn(
      process.execPath,
      [
        '--conditions=mqtt-edge-source',
        '--import',
        'tsx',
        path.join(ROOT, 'bench/modbus-line.ts'),
        pair.devicePath,
        String(baud),
        FORMAT.parity,
      ],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    stops.push(() => {
      emulator.stdin!.end();
      return stopChild(emulator);
    });
    const line = new Line(emulator);
    await line.next(); // ready
    const brokerPort = await freePort();
    const broker = spawn(process.execPath, [BROKER_BIN, '-p', String(brokerPort)], { stdio: 'ignore' });
    stops.push(() => stopChild(broker));
    const config = path.join(dir, 'agent.json');
    writeFileSync(
      config,
      JSON.stringify({
        agent: {
          id: 'bench',
          stateDir: path.join(dir, 'state'),
          healthInterval: 0,
          log: { level: 'warning' },
        },
        serial: [
          {
            name: 'line',
            path: pair.agentPath,
            protocol: 'modbus-rtu',
            baud,
            parity: FORMAT.parity,
            responseTimeout: '1s',
            retries: 0,
            devices: Array.from({ length: UNITS }, (_, i) => ({
              id: `u${i + 1}`,
              unit: i + 1,
              interval: '100ms',
              registers: Array.from({ length: REGISTERS }, (_, r) => ({
                name: `r${r}`,
                table: 'holding',
                address: r,
              })),
            })),
          },
        ],
        mqtt: { url: `mqtt://127.0.0.1:${brokerPort}`, reconnectMin: '50ms' },
        topics: { prefix: 'bench' },
      }),
    );
    const agent = spawn(process.execPath, [AGENT_BIN, '-c', config], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    stops.push(() => stopChild(agent));
    // Warm up: the agent started, connected and polled for a while.
    const warmEnd = Date.now() + 15_000;
    while ((await line.stats()).responses < 50 && Date.now() < warmEnd)
      await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000));
    const s0 = await line.stats();
    const c0 = cpuMs(agent.pid as number);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const s1 = await line.stats();
    const c1 = cpuMs(agent.pid as number);
    const secs = (performance.now() - t0) / 1000;
    const polls = s1.responses - s0.responses;
    return {
      pollsPerS: polls / secs,
      cpuPer1000: ((c1 - c0) / Math.max(1, polls)) * 1000,
      note: `master's turnaround (response's last byte to the next request) ${((s1.turnaroundMs - s0.turnaroundMs) / Math.max(1, s1.turnarounds - s0.turnarounds)).toFixed(2)} ms against a gap of ${(modbusFrameGapUs(baud, FORMAT) / 1000).toFixed(2)} ms; ${polls} polls in ${secs.toFixed(1)} s; ${Math.round(REGISTERS * (polls / secs))} readings/s stored and published; requests the line could not take (sent before the response) ${s1.overlapped}, bad ${s1.bad}`,
    };
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

function limit(baud: number): number {
  const char = modbusCharTimeUs(baud, FORMAT) / 1e6;
  const gap = modbusFrameGapUs(baud, FORMAT) / 1e6;
  return 1 / ((REQUEST_BYTES + RESPONSE_BYTES) * char + 2 * gap);
}

const area: BenchArea = {
  area: 'modbus',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (!hasSocat()) {
      console.error('modbus: socat missing, skipped (apt-get install socat)');
      return [];
    }
    const seconds = options.quick ? 3 : 10;
    const rows: BenchRow[] = [];
    for (const baud of [9600, 115200]) {
      const m = await measure(baud, seconds);
      const name = `modbus:polls/s at ${baud} baud (8E1, ${REGISTERS} registers)`;
      rows.push(rateRow(name, 'polls/s', m.pollsPerS, limit(baud), 'line limit', undefined, m.note));
      rows.push(costRow(`modbus:agent CPU per 1,000 polls at ${baud} baud`, 'ms', m.cpuPer1000, null, '-'));
    }
    return rows;
  },
};
export default area;
