/**
 * End-to-end helpers for the agent: the agent as a child process (JSON log lines parsed, events
 * awaited, SIGKILL and restart), simulated devices on real ptys whose received ACKs are
 * recorded, broker-lite in process, a recording subscriber, and the check of the guarantee.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentStatus } from '@mqtt-edge/agent';
import { Broker } from '@mqtt-edge/broker-lite';
import { connect, type MqttClient } from '@mqtt-edge/client';
import {
  type DevicePortOptions,
  FirmwareSim,
  type FirmwareSimOptions,
  PtyTransport,
  TappedTransport,
  type Transport,
} from '@mqtt-edge/firmware-sim';
import { FrameDecoder } from '@mqtt-edge/serial-protocol';
import { afterEach } from 'vitest';
import { followJsonLog, type LogWaiter as JsonLogWaiter } from './json-log.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const AGENT_BIN = path.join(ROOT, 'packages/agent/bin/mqtt-edge-agent.js');
export const SIM_BIN = path.join(ROOT, 'firmware-sim/bin/firmware-sim.js');

// ---------------------------------------------------------------------------------------- agent

/** One line of the JSON log every mqtt-edge process writes (`@mqtt-edge/log`). */
export interface LogLine {
  time: string;
  level: string;
  /** The event's name. */
  msg: string;
  [k: string]: unknown;
}

type LogWaiter = JsonLogWaiter<LogLine>;

export class AgentProcess {
  readonly lines: LogLine[] = [];
  private child!: ChildProcess;
  private exitedP!: Promise<number | null>;
  /** @internal followJsonLog's */
  waiters: LogWaiter[] = [];
  /** @internal followJsonLog's */
  stderrTail = '';
  starts = 0;

  constructor(
    readonly configFile: string,
    private readonly env: NodeJS.ProcessEnv = {},
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the agent; resolves once it logged `agent-start`. */
  async start(timeoutMs = 15_000): Promise<void> {
    this.starts++;
    const from = this.lines.length;
    this.child = spawn(process.execPath, [AGENT_BIN, '-c', this.configFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...this.env },
    });
    const child = this.child;
    this.exitedP = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    followJsonLog(child, this);
    await this.waitFor((l) => l.msg === 'agent-start', timeoutMs, from);
  }

  /** Resolves with the first line (from index `from`) matching `pred`. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs: number, from = 0): Promise<LogLine> {
    const hit = this.lines.slice(from).find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (l: LogLine) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`agent: no matching log line in ${timeoutMs} ms; stderr tail:\n${this.stderrTail}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.msg === name);
  }

  /** Sends SIGHUP; resolves with the line that says how the reload went (applied or refused). */
  async reload(timeoutMs = 20_000): Promise<LogLine> {
    const from = this.lines.length;
    this.child.kill('SIGHUP');
    return this.waitFor(
      (l) => l.msg === 'config-reloaded' || l.msg === 'config-reload-failed',
      timeoutMs,
      from,
    );
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exitedP;
  }

  async stop(): Promise<number | null> {
    return this.kill('SIGTERM');
  }
}

/** The status file a running agent rewrites in its state dir; undefined before its first write. */
export function agentStatus(stateDir: string): AgentStatus | undefined {
  try {
    return JSON.parse(readFileSync(path.join(stateDir, 'status.json'), 'utf8')) as AgentStatus;
  } catch {
    return undefined;
  }
}

export function writeJson(file: string, value: unknown): string {
  writeFileSync(file, JSON.stringify(value, null, 2));
  return file;
}

// --------------------------------------------------------------------------- firmware-sim CLI

/**
 * The `firmware-sim` CLI as a child process on a pty pair it creates (`--link`), its JSON log
 * lines parsed: what a user runs by hand, flags included.
 */
export class SimProcess {
  readonly lines: LogLine[] = [];
  private readonly child: ChildProcess;
  private readonly exitedP: Promise<number | null>;
  /** @internal followJsonLog's */
  waiters: LogWaiter[] = [];
  /** @internal followJsonLog's */
  stderrTail = '';

  private constructor(args: string[]) {
    this.child = spawn(process.execPath, [SIM_BIN, ...args, '--json-logs'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const child = this.child;
    this.exitedP = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    followJsonLog(child, this);
  }

  /** Starts `firmware-sim --link LINK ...args`; resolves once it printed the path and logged `start`. */
  static async start(link: string, args: string[], timeoutMs = 15_000): Promise<SimProcess> {
    const sim = new SimProcess(['--link', link, ...args]);
    const printed = new Promise<string>((resolve, reject) => {
      let out = '';
      sim.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      sim.child.once('exit', (code) =>
        reject(new Error(`firmware-sim exited (${code}) before printing its path:\n${sim.stderrTail}`)),
      );
    });
    const path = await Promise.race([
      printed,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`firmware-sim: no path in ${timeoutMs} ms`)), timeoutMs).unref(),
      ),
    ]);
    if (path !== link) throw new Error(`firmware-sim printed ${path}, expected ${link}`);
    await sim.waitFor((l) => l.msg === 'start', timeoutMs);
    return sim;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  waitFor(pred: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const hit = this.lines.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (l: LogLine) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(
          new Error(
            `firmware-sim: no matching log line in ${timeoutMs} ms; stderr tail:\n${this.stderrTail}`,
          ),
        );
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.msg === name);
  }

  /** SIGINT (Ctrl-C): resolves with the exit code once it has exited. */
  async stop(signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
    if (this.running) this.child.kill(signal);
    return this.exitedP;
  }

  /**
   * For cleanups: SIGINT, so the CLI ends its socat pair itself (a SIGKILL would leave socat
   * running), then SIGKILL if it has not exited within `graceMs`.
   */
  async dispose(graceMs = 5000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    });
    const r = await Promise.race([this.exitedP, late]);
    clearTimeout(timer);
    if (r === 'late') await this.stop('SIGKILL');
  }
}

// -------------------------------------------------------------------------------------- broker

export interface LiteBroker {
  port: number;
  broker: Broker;
  /** Stops (closing client sockets), optionally waits, starts again on the same port. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function stopBroker(b: Broker): Promise<void> {
  // close() waits for its listeners, which wait for their connections: drop those first.
  const closing = b.close();
  for (const conn of b.connections) conn.socket.destroy();
  await closing;
}

export async function startBrokerLite(persistenceDir?: string, port = 0): Promise<LiteBroker> {
  const make = (p: number) =>
    new Broker({
      listeners: [{ port: p, host: '127.0.0.1', protocol: 'mqtt' }],
      persistenceDir,
      maxQueuedMessages: 100_000,
      maxInflightMessages: 100,
    });
  let broker = make(port);
  await broker.listen();
  const bound = broker.addresses[0].port;
  const lb: LiteBroker = {
    port: bound,
    broker,
    async restart(downMs = 0) {
      await stopBroker(broker);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      broker = make(bound);
      lb.broker = broker;
      await broker.listen();
    },
    async stop() {
      await stopBroker(broker);
    },
  };
  return lb;
}

// ------------------------------------------------------------------------------------- devices

export interface AckRecord {
  bootId: number;
  seq: number;
  /** The device's boot ordinal and next seq when the ACK arrived: frames from there on were made after it. */
  bootOrdinal: number;
  nextSeq: number;
}

/** A simulated device on a socat pty, with every ACK it received recorded. */
export class WatchedDevice {
  readonly acks: AckRecord[] = [];
  /** When each ACK arrived (ms since the epoch). */
  readonly acksAt: number[] = [];
  readonly boots: number[] = [];
  /** When the device's port took bytes (written to its tty, not queued): its voice on the line. */
  readonly writtenAt: number[] = [];
  sim!: FirmwareSim;
  agentPath!: string;
  /** The socat pair (WatchedDevice.create). */
  pty: PtyTransport | undefined;
  private readonly decoder = new FrameDecoder();

  static async create(
    agentPath: string,
    options: FirmwareSimOptions,
    port: DevicePortOptions = {},
  ): Promise<WatchedDevice> {
    const pty = await PtyTransport.create(agentPath, `${agentPath}.device`, port);
    const d = WatchedDevice.over(pty, options);
    d.agentPath = agentPath;
    d.pty = pty;
    return d;
  }

  /** Over any transport (an in-process link for in-process tests). */
  static over(inner: Transport, options: FirmwareSimOptions): WatchedDevice {
    const d = new WatchedDevice();
    const transport = new TappedTransport(
      inner,
      (b) => d.tap(b),
      () => d.writtenAt.push(Date.now()),
    );
    d.sim = new FirmwareSim(transport, {
      ...options,
      log: {
        log: (_level, event, fields) => {
          if (event === 'boot' && typeof fields?.bootId === 'number') d.boots.push(fields.bootId);
        },
      },
    });
    return d;
  }

  get id(): string {
    return this.sim.firmware.deviceId;
  }

  private tap(b: Uint8Array): void {
    const fw = this.sim.firmware;
    for (const f of this.decoder.push(b)) {
      if (f.type !== 'ack') continue;
      if (!this.boots.includes(fw.bootId)) this.boots.push(fw.bootId);
      this.acksAt.push(Date.now());
      this.acks.push({
        bootId: f.bootId,
        seq: f.seq,
        bootOrdinal: this.boots.indexOf(fw.bootId),
        nextSeq: fw.nextSeq,
      });
    }
  }

  ordinalOf(bootId: number): number {
    return this.boots.indexOf(bootId);
  }

  start(): void {
    this.sim.start();
  }

  stop(): Promise<void> {
    return this.sim.stop();
  }
}

// ---------------------------------------------------------------------------------- subscriber

export interface Arrival {
  id: string;
  topic: string;
  payload: string;
  at: number;
  n: number;
}

export class Recorder {
  readonly arrivals: Arrival[] = [];
  readonly byId = new Map<string, Arrival[]>();
  readonly other: Array<{ topic: string; payload: string; retain: boolean }> = [];
  client!: MqttClient;

  static async start(url: string, filter: string, qos: 1 | 2, clientId = 'e2e-recorder'): Promise<Recorder> {
    const r = new Recorder();
    r.client = connect(url, {
      protocolVersion: 5,
      clientId,
      clean: false,
      sessionExpiryInterval: 3600,
      reconnectPeriod: 100,
      reconnectMaxDelay: 500,
      keepalive: 10,
    });
    r.client.on('message', (topic, payload, packet) => {
      const text = Buffer.from(payload).toString('utf8');
      const id = packet.properties?.userProperties?.find(([k]) => k === 'msg-id')?.[1] ?? idFromJson(text);
      if (id === undefined) {
        r.other.push({ topic, payload: text, retain: packet.retain });
        return;
      }
      const a: Arrival = { id, topic, payload: text, at: Date.now(), n: r.arrivals.length };
      r.arrivals.push(a);
      const list = r.byId.get(id);
      if (list) list.push(a);
      else r.byId.set(id, [a]);
    });
    await r.client.subscribe({ filter, qos });
    return r;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  async stop(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

/** MQTT 3.1.1 carries no user property: the id is in the JSON payload. */
function idFromJson(text: string): string | undefined {
  if (!text.startsWith('{"id":')) return undefined;
  try {
    const id = (JSON.parse(text) as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------- verdict

export interface Verdict {
  acked: number;
  expectedReadings: number;
  missing: string[];
  duplicates: string[];
  /** Duplicates whose copies do not straddle an agent SIGKILL. */
  unexplainedDuplicates: string[];
  /**
   * Duplicate copies that are not the same reading: a payload that differs from the first copy's
   * in more than the agent's receive time (`at`), or a later copy stamped earlier.
   */
  inconsistentDuplicates: string[];
  orderViolations: string[];
}

const RECEIVED_AT = /,"at":(\d+)/;

/** `later` is `first` again, stamped by the agent at the same time or later. */
export function sameReading(first: string, later: string): boolean {
  if (first === later) return true;
  const a = RECEIVED_AT.exec(first);
  const b = RECEIVED_AT.exec(later);
  if (a === null || b === null || Number(b[1]) < Number(a[1])) return false;
  return first.replace(RECEIVED_AT, '') === later.replace(RECEIVED_AT, '');
}

/**
 * The guarantee, checked: every reading of every ACKed frame arrived; per topic (device,
 * sensor index), a frame ACKed before another frame was even made arrives first; duplicates only
 * straddle an agent SIGKILL and are copies of the same reading (byte for byte, or with a later
 * `at`: the agent publishes a reading before its commit, so one published by an agent killed
 * before the commit is sent again by the device and stamped again). `killWindows`: each SIGKILL's time and
 * when the restarted agent was connected to the broker again.
 */
export function verify(
  devices: WatchedDevice[],
  rec: Recorder,
  sensors: number,
  killWindows: Array<[killedAt: number, reconnectedAt: number]>,
): Verdict {
  const v: Verdict = {
    acked: 0,
    expectedReadings: 0,
    missing: [],
    duplicates: [],
    unexplainedDuplicates: [],
    inconsistentDuplicates: [],
    orderViolations: [],
  };
  for (const d of devices) {
    const frames = new Map<string, AckRecord>();
    for (const a of d.acks) if (!frames.has(`${a.bootId}:${a.seq}`)) frames.set(`${a.bootId}:${a.seq}`, a);
    v.acked += frames.size;
    for (const a of frames.values()) {
      for (let i = 0; i < sensors; i++) {
        v.expectedReadings++;
        const id = `${d.id}:${a.bootId}:${a.seq}:${i}`;
        if (!rec.has(id)) v.missing.push(id);
      }
    }
    // Order, per sensor index (= per topic).
    for (let i = 0; i < sensors; i++) {
      const made = [...frames.values()]
        .map((a) => ({
          a,
          ord: d.ordinalOf(a.bootId),
          first: rec.byId.get(`${d.id}:${a.bootId}:${a.seq}:${i}`)?.[0]?.n,
        }))
        .filter((x) => x.first !== undefined && x.ord >= 0)
        .sort((x, y) => x.ord - y.ord || x.a.seq - y.a.seq);
      const suffixMin: number[] = new Array(made.length + 1).fill(Number.POSITIVE_INFINITY);
      for (let k = made.length - 1; k >= 0; k--) suffixMin[k] = Math.min(suffixMin[k + 1], made[k].first!);
      for (const x of made) {
        // First frame made at or after the ACK's (ordinal, nextSeq).
        let lo = 0;
        let hi = made.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          const m = made[mid];
          if (m.ord < x.a.bootOrdinal || (m.ord === x.a.bootOrdinal && m.a.seq < x.a.nextSeq)) lo = mid + 1;
          else hi = mid;
        }
        if (suffixMin[lo] < x.first!) v.orderViolations.push(`${d.id}:${x.a.bootId}:${x.a.seq}:${i}`);
      }
    }
  }
  for (const [id, list] of rec.byId) {
    if (list.length < 2) continue;
    v.duplicates.push(id);
    if (list.some((c) => !sameReading(list[0].payload, c.payload))) v.inconsistentDuplicates.push(id);
    // The first copy left the killed agent before the kill; it may arrive later, but before the
    // restarted agent (the only other source) connected.
    const explained = list
      .slice(1)
      .every((c) => killWindows.some(([k, back]) => list[0].at < back && c.at > k));
    if (!explained) v.unexplainedDuplicates.push(id);
  }
  return v;
}

/**
 * A test file's cleanups, run after each test (last added first), and temporary directories
 * (`PREFIX-xxxx` under the system's) removed by them.
 */
export function testScope(prefix: string): {
  cleanups: Array<() => Promise<unknown> | unknown>;
  tmp(): string;
} {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    cleanups,
    tmp() {
      const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
  };
}

/** broker-lite in process and a recording subscriber on `filter`, both stopped by `cleanups`. */
export async function brokerWithRecorder(
  cleanups: Array<() => Promise<unknown> | unknown>,
  filter: string,
  clientId: string,
): Promise<{ broker: LiteBroker; url: string; rec: Recorder }> {
  const broker = await startBrokerLite();
  cleanups.push(() => broker.stop());
  const url = `mqtt://127.0.0.1:${broker.port}`;
  const rec = await Recorder.start(url, filter, 1, clientId);
  cleanups.push(() => rec.stop());
  return { broker, url, rec };
}

/** Waits until `cond` holds, polling every `everyMs`, at most `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}

/** Resolves once 127.0.0.1:port accepts a connection (polled); throws if `child` exits or 20 s pass. */
export async function untilListening(port: number, child: ChildProcess, name: string): Promise<void> {
  const net = await import('node:net');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`${name} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** SIGTERM, SIGKILL after 5 s; resolves when `child` has exited. */
export function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
